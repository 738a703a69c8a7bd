"""terraform fmt, checkov, and the Resonate token tool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from infra_helpers import ROOT, Terraform, expr, hcl_string


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed here (Cloud Build's tf-init step runs `terraform fmt -check` too)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "infra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra`:\n{result.stdout}"


@pytest.mark.checkov
@pytest.mark.timeout(900)
def test_checkov_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "checkov.sh"), "--compact"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert re.search(r"Failed checks: 0\b", result.stdout), result.stdout[-3000:]


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "infra" / "tools" / "resonate_token.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_tool_mints_tokens_the_public_key_verifies(tmp_path: Path, tf: Terraform) -> None:
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    assert _tool("keygen", "--private", str(private), "--public", str(public)).returncode == 0
    assert private.stat().st_mode & 0o077 == 0, "the private key must be readable by its owner only"
    assert _tool("keygen", "--private", str(private), "--public", str(public)).returncode != 0, "overwrote a key"

    minted = _tool("mint", "--private", str(private), "--subject", "worker", "--days", "30")
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout, public.read_bytes(), algorithms=["EdDSA"])
    assert claims["sub"] == "worker" and claims["prefix"] == ""
    assert 29 * 86400 < claims["exp"] - time.time() <= 30 * 86400

    admin = _tool("mint", "--private", str(private), "--subject", "ops", "--admin")
    assert jwt.decode(admin.stdout, public.read_bytes(), algorithms=["EdDSA"])["role"] == "admin"

    # The public key passes the Terraform variable's validation.
    (validation,) = tf.variables["resonate_jwt_public_key"]["validation"]
    m = re.fullmatch(
        r'can\(regex\("((?:[^"\\]|\\.)*)", var\.resonate_jwt_public_key\)\)', expr(validation["condition"])
    )
    assert m
    assert re.search(hcl_string(m.group(1)), public.read_text())


# --- the smoke test's judge --------------------------------------------------------------------

#: start's own answer for an unknown workflow (functions/main.py, _status).
START_404 = {"error": "no approval with this workflow_id", "field": "workflow_id"}

GOOGLE_FRONTEND_404 = (
    b"<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)!!1</title>"
    b"<p>The requested URL <code>/?workflow_id=cloudbuild-smoke</code> was not found on this server.</p></html>"
)


def _judge(status: int, body: bytes | dict) -> int:
    sys.path.insert(0, str(ROOT / "infra" / "tools"))
    try:
        import smoke_check
    finally:
        sys.path.pop(0)
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return smoke_check.judge(status, raw, "cloudbuild-smoke")[0]


def test_the_smoke_judge_expects_starts_real_404() -> None:
    """The judge accepts what start really answers for an unknown id (the edge in-process)."""
    from starlette.testclient import TestClient
    from support.inprocess import asgi, client

    from devstack.localserver.engine import Engine
    from hitl.clock import now_ms
    from hitl.edges.start import Start
    from hitl.settings import ResonateSettings, StartSettings

    edge = Start(StartSettings(ResonateSettings("http://resonate.test")), client(Engine(), now_ms)[0])
    answer = TestClient(asgi(edge.router())).get("/", params={"workflow_id": "cloudbuild-smoke"})
    assert (answer.status_code, answer.json()) == (404, START_404), "start's 404 changed: update smoke_check.py"
    assert _judge(answer.status_code, answer.content) == 0


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (404, START_404, 0),
        (202, {"workflow_id": "cloudbuild-smoke", "status": "pending"}, 0),
        (200, {"workflow_id": "cloudbuild-smoke", "status": "done", "result": {}}, 0),
        # A routing or front-end 404 says nothing about the function, the server or the database.
        (404, GOOGLE_FRONTEND_404, 75),
        (404, b"", 75),
        (404, b"Page not found", 75),
        (404, {"error": "Not Found"}, 75),
        (404, {"error": "no approval with this workflow_id", "field": "id"}, 75),
        (200, b"<html>ok</html>", 75),
        (200, {"workflow_id": "another", "status": "done"}, 75),
        (503, {"error": "the workflow server is unavailable, try again later"}, 75),
        (0, b"", 75),
        (401, b"", 1),
        (403, GOOGLE_FRONTEND_404, 1),
        (400, {"error": "workflow_id is required", "field": "workflow_id"}, 1),
    ],
)
def test_the_smoke_judge(status: int, body: bytes | dict, verdict: int) -> None:
    assert _judge(status, body) == verdict


def test_the_smoke_judge_runs_as_a_script(tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_text(json.dumps(START_404))
    args = ["--status", "404", "--body", str(body), "--workflow-id", "cloudbuild-smoke"]
    ok = subprocess.run([sys.executable, str(ROOT / "infra" / "tools" / "smoke_check.py"), *args], capture_output=True)
    assert ok.returncode == 0, ok.stdout
    body.write_bytes(GOOGLE_FRONTEND_404)
    bad = subprocess.run([sys.executable, str(ROOT / "infra" / "tools" / "smoke_check.py"), *args], capture_output=True)
    assert bad.returncode == 75
