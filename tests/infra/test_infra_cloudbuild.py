"""cloudbuild.yaml: test, build, push, bundle, apply, smoke; and it agrees with Terraform."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from infra_helpers import Terraform, cloudbuild, step_commands

from hitl.security import signatures

ROOT = Path(__file__).resolve().parents[2]

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
        '${google_artifact_registry_repository.images["worker"].repository_id}', "${var.artifact_repository}"
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
    smoke = _step("smoke")
    script = smoke["args"][1]
    assert "print-identity-token" in script
    assert "-H @" in script, "the token goes to curl in a file, not on its command line"
    outputs = _step("outputs")
    assert "start_url" in str(outputs["args"])
    assert "workflow_id=${_SMOKE_WORKFLOW_ID}" in script
    assert cloudbuild()["substitutions"]["_SMOKE_WORKFLOW_ID"]


def test_smoke_signs_its_status_read_when_start_is_public(tmp_path: Path) -> None:
    """With start_auth = "webhook" start answers no unsigned status: the smoke test reads the
    secret (a file, never a command line) and signs the query with hitl's own signer."""
    script = _step("smoke")["args"][1]
    assert "webhook_secret_name" in str(_step("outputs")["args"])
    assert 'gcloud secrets versions access latest --secret="$$secret_name"' in script
    assert '"$$url?$$query"' in script and 'query="workflow_id=${_SMOKE_WORKFLOW_ID}"' in script
    (line,) = [x for x in script.splitlines() if "python3 -c" in x]
    code = line.split("python3 -c '", 1)[1].rsplit("' ", 1)[0]
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cret-of-the-webhook")
    done = subprocess.run(
        [sys.executable, "-c", code.replace("/tmp/webhook-secret", str(secret)), "workflow_id=cloudbuild-smoke"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    name, value = done.stdout.strip().split(": ", 1)
    assert name == signatures.HEADER
    signatures.verify(b"s3cret-of-the-webhook", b"workflow_id=cloudbuild-smoke", value, now=time.time())


def test_smoke_accepts_only_starts_own_answer() -> None:
    """A routing 404 (wrong URL, service not there) must not pass as "the chain answered"."""
    script = _step("smoke")["args"][1]
    (check,) = [c for c in step_commands(_step("smoke")) if "infra/tools/smoke_check.py" in c]
    assert check[check.index("--workflow-id") + 1] == "${_SMOKE_WORKFLOW_ID}"
    assert check[check.index("--body") + 1] == "/tmp/body"
    # No shortcut that takes a status code alone as success.
    assert not re.search(r"^\s*[0-9|]*404[0-9|]*\)", script, re.M), "a case branch accepts any 404"
    assert not re.search(r'"\$\$code"\s*(=|==|-eq)\s*"?404', script), "a test accepts any 404"
    assert re.search(r'if \[ "\$\$verdict" -eq 0 \]; then exit 0; fi', script)


def _step(step_id: str) -> dict[str, Any]:
    return next(s for s in _steps() if s["id"] == step_id)


def _depends(step: str, on: str) -> bool:
    ids = [s["id"] for s in _steps()]
    by_id = {s["id"]: s for s in _steps()}

    def walk(current: str, seen: frozenset[str]) -> bool:
        wait = by_id[current].get("waitFor")
        before = ids[: ids.index(current)] if wait is None else [w for w in wait if w != "-"]
        return on in before or any(walk(b, seen | {current}) for b in before if b not in seen)

    return walk(step, frozenset())


def _image() -> str:
    (built,) = [c for _, c in _find(lambda c: c[:2] == ["docker", "build"])]
    return built[built.index("-t") + 1]


def test_build_and_push_are_skipped_when_the_tag_exists() -> None:
    """Tags are immutable: a second build of the same commit failed at the push."""
    image = _image()
    build_step = next(s for s in _steps() if any(c[:2] == ["docker", "build"] for c in step_commands(s)))
    push_step = next(s for s in _steps() if any(c[:2] == ["docker", "push"] for c in step_commands(s)))
    build_script = build_step["args"][1]
    # The registry is asked about exactly the image that would be built, before it is built...
    probe = f"docker manifest inspect {image}"
    assert probe in build_script
    assert build_script.index(probe) < build_script.index("docker build")
    between = build_script[build_script.index(probe) : build_script.index("docker build")]
    assert "exit 0" in between and "touch build/worker-image-exists" in between
    # ... and the push is skipped on the same finding, in a step that runs after that probe.
    push_script = push_step["args"][1]
    marker = "[ -e build/worker-image-exists ]"
    assert marker in push_script
    guard = push_script[push_script.index(marker) : push_script.index("docker push")]
    assert "exit 0" in guard
    assert _depends(push_step["id"], build_step["id"])


def _downloads() -> list[tuple[str, str]]:
    """(step id, destination) of every `gcloud storage cp gs://... DEST`."""
    subs = cloudbuild()["substitutions"]
    out = []
    for sid, cmd in _commands():
        joined = " ".join(cmd)
        for m in re.finditer(r"gcloud storage cp gs://\S+ (\S+)", joined):
            dest = m.group(1)
            for name, value in subs.items():
                dest = dest.replace("${" + name + "}", str(value))
            out.append((sid, dest))
    return out


def test_fmt_check_never_races_the_tfvars_download() -> None:
    """`terraform fmt -check -recursive` failed whenever the downloaded tfvars landed in infra/ first."""
    downloads = _downloads()
    assert downloads, "the stack's variables come from the state bucket"
    for step in _steps():
        for cmd in step_commands(step):
            if cmd[:2] != ["terraform", "fmt"]:
                continue
            checked = "/workspace/" + step.get("dir", "").strip("/")
            for sid, dest in downloads:
                path = dest if dest.startswith("/") else f"/workspace/{dest}"
                inside = path.startswith(checked.rstrip("/") + "/")
                ordered = _depends(sid, step["id"])
                assert not inside or ordered, f"{sid} writes {dest} into what {step['id']} checks, in parallel"


def test_applies_read_the_downloaded_tfvars() -> None:
    ((_, dest),) = _downloads()
    for cmd in _applies():
        files = [a[len("-var-file=") :] for a in cmd if a.startswith("-var-file=")]
        resolved = [f.replace("${_TFVARS}", cloudbuild()["substitutions"]["_TFVARS"]) for f in files]
        assert resolved == [dest], cmd


def test_init_uses_the_committed_lock_file() -> None:
    script = _step("tf-init")["args"][1]
    assert "if [ -f .terraform.lock.hcl ]; then" in script
    readonly = [
        c for c in step_commands(_step("tf-init")) if c[:2] == ["terraform", "init"] and "-lockfile=readonly" in c
    ]
    assert readonly, "with a committed lock file, init must not change it"


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
    assert _depends("apply", "image-push") and _depends("apply", "bundle") and _depends("apply", "test")
    assert _depends("image-push", "registry") and _depends("smoke", "apply")
    assert _depends("apply", "tfvars") and _depends("registry", "tfvars")
