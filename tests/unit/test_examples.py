"""The CI examples gate the deploy on the gate script (the e2e suite runs that script itself)."""

from __future__ import annotations

from pathlib import Path

import yaml

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"


def test_cloud_builds_deploy_waits_for_the_gate() -> None:
    steps = {s["id"]: s for s in yaml.safe_load((CI / "cloudbuild.yaml").read_text())["steps"]}
    assert "examples/ci/gate.sh" in steps["approval"]["args"][-1]
    assert steps["deploy"]["waitFor"] == ["approval"]


def test_github_actions_deploy_needs_the_gate() -> None:
    jobs = yaml.safe_load((CI / "github-actions.yml").read_text())["jobs"]
    assert any("examples/ci/gate.sh" in step.get("run", "") for step in jobs["approval"]["steps"])
    assert jobs["deploy"]["needs"] == "approval"


def test_the_gate_script_is_executable() -> None:
    assert (CI / "gate.sh").stat().st_mode & 0o111


def test_no_ci_example_holds_the_servers_token() -> None:
    """A pipeline holds only a start caller's credentials: with the server's token, it (or anyone
    who can change it) could decide its own request (issue 15)."""
    for example in ("cloudbuild.yaml", "github-actions.yml"):
        text = (CI / example).read_text()
        assert "HITL_START_URL" in text
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # not the comments
        assert "RESONATE_TOKEN" not in code and "RESONATE_URL" not in code, example
