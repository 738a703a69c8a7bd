"""cloudbuild.yaml: test, build, push, bundle, apply, smoke; and it agrees with Terraform."""

from __future__ import annotations

import re
from typing import Any

import pytest
from infra_helpers import Terraform, cloudbuild, step_commands

#: Cloud Build substitution -> the Terraform variable it must be passed as.
VAR_FOR = {
    "${_PROJECT_ID}": "project_id",
    "${_REGION}": "region",
    "${_REPOSITORY}": "artifact_repository",
    "${COMMIT_SHA}": "worker_image_tag",
}


def _steps() -> list[dict[str, Any]]:
    return cloudbuild()["steps"]


def _commands() -> list[tuple[str, list[str]]]:
    return [(s.get("id", "?"), cmd) for s in _steps() for cmd in step_commands(s)]


def _find(predicate) -> list[tuple[str, list[str]]]:
    return [(sid, cmd) for sid, cmd in _commands() if predicate(cmd)]


def _tf_vars(cmd: list[str]) -> dict[str, str]:
    return dict(a[len("-var=") :].split("=", 1) for a in cmd if a.startswith("-var="))


def test_substitutions_are_declared_and_used() -> None:
    doc = cloudbuild()
    subs = doc["substitutions"]
    for name in ("_PROJECT_ID", "_REGION", "_STATE_BUCKET"):
        assert name in subs
    text = str(doc["steps"])
    for name in subs:
        assert "${" + name + "}" in text, f"{name} is never used"
    for used in set(re.findall(r"\$\{(_[A-Z_]+)\}", text)):
        assert used in subs, f"{used} is used but not declared"


def test_runs_the_test_suite_first() -> None:
    first = _steps()[0]
    assert ["make", "test"] in step_commands(first)


def test_bundles_the_functions() -> None:
    (found,) = _find(lambda c: "scripts/bundle_functions.py" in c)
    cmd = found[1]
    assert cmd[cmd.index("--out") + 1] == "build/functions.zip"


def test_terraform_init_uses_the_state_bucket() -> None:
    inits = _find(lambda c: c[:2] == ["terraform", "init"])
    assert inits
    for _, cmd in inits:
        assert "-backend-config=bucket=${_STATE_BUCKET}" in cmd


def _pushed_images() -> set[str]:
    images = set()
    for _, cmd in _find(lambda c: c[:2] == ["docker", "push"]):
        images.update(a for a in cmd[2:] if not a.startswith("-"))
    for image in cloudbuild().get("images", []):
        images.add(image)
    return images


def _applies() -> list[list[str]]:
    return [c for _, c in _find(lambda c: c[:2] == ["terraform", "apply"])]


def test_the_pushed_image_is_the_one_terraform_deploys(tf: Terraform) -> None:
    (built,) = [c for _, c in _find(lambda c: c[:2] == ["docker", "build"])]
    assert built[built.index("-f") + 1] == "worker/Dockerfile"
    assert built[-1] == "."
    tag = built[built.index("-t") + 1]
    assert _pushed_images() == {tag}

    # Same reference, written with substitutions on one side and variables on the other.
    translated = tag
    for sub, var in VAR_FOR.items():
        translated = translated.replace(sub, "${var." + var + "}")
    tf_image = tf.local("worker_image").replace(
        "${google_artifact_registry_repository.worker.repository_id}", "${var.artifact_repository}"
    )
    assert translated == tf_image

    (final,) = [c for c in _applies() if not any(a.startswith("-target") for a in c)]
    passed = _tf_vars(final)
    for sub, var in VAR_FOR.items():
        assert passed.get(var) == sub, f"apply must pass -var={var}={sub}"


def test_applies_pass_the_bundle_that_was_built() -> None:
    applies = _applies()
    assert applies
    for cmd in applies:
        assert "-auto-approve" in cmd
        assert _tf_vars(cmd)["functions_bundle"] == "/workspace/build/functions.zip"
    # The registry bootstrap and the real apply see the same variables.
    assert len({tuple(sorted(_tf_vars(c).items())) for c in applies}) == 1


def test_smoke_tests_start_with_an_identity_token() -> None:
    smoke = next(s for s in _steps() if s["id"] == "smoke")
    script = smoke["args"][1]
    assert "print-identity-token" in script
    assert "-H @" in script, "the token goes to curl in a file, not on its command line"
    outputs = next(s for s in _steps() if s["id"] == "outputs")
    assert "start_url" in str(outputs["args"])
    assert "workflow_id=" in cloudbuild()["substitutions"]["_SMOKE_QUERY"]


@pytest.mark.parametrize("word", ["password", "secret", "signing_key", "token="])
def test_no_secret_on_a_command_line(word: str) -> None:
    for sid, cmd in _commands():
        for arg in cmd:
            if arg.startswith("-var="):
                assert word.rstrip("=") not in arg.lower(), f"{sid}: {arg}"
    doc = cloudbuild()
    if "availableSecrets" in doc:
        for step in doc["steps"]:
            for env in step.get("env", []):
                assert word.rstrip("=") not in env.lower(), f"{step['id']}: pass secrets with secretEnv"


def test_step_order() -> None:
    ids = [s["id"] for s in _steps()]
    assert len(ids) == len(set(ids))
    for earlier, later in [("test", "image-build"), ("image-push", "apply"), ("bundle", "apply"), ("apply", "smoke")]:
        assert ids.index(earlier) < ids.index(later)
    by_id = {s["id"]: s for s in _steps()}

    def depends(step: str, on: str, seen: frozenset[str] = frozenset()) -> bool:
        wait = by_id[step].get("waitFor")
        before = ids[: ids.index(step)] if wait is None else [w for w in wait if w != "-"]
        return on in before or any(depends(b, on, seen | {step}) for b in before if b not in seen)

    assert depends("apply", "image-push") and depends("apply", "bundle") and depends("apply", "test")
    assert depends("image-push", "registry") and depends("smoke", "apply")
