"""The operator CLI (``python -m hitl.edges.cli``) as a subprocess, against the local stack as processes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api import unique
from support.ports import refused_port
from support.stacks import local_stack

from devstack.stack import PYTHON, ROOT, Stack, wait_until

CLI_TIMEOUT = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from local_stack(tmp_path_factory, "cli")


@pytest.fixture
def env(stack: Stack) -> dict[str, str]:
    """The process environment minus any hitl/Resonate settings, plus the stack's."""
    assert stack.server is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "HITL_"))}
    return {**base, "RESONATE_URL": stack.server.url, "USER": "ops-jane"}


def hitl(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "hitl.edges.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def hitl_json(env: dict[str, str], *args: str, code: int = 0, stdin: bytes | None = None) -> Any:
    r = hitl(env, *args, "--json", stdin=stdin)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def body(workflow_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "approvers": ["alice@example.com", "bob@example.com"],
        "subject": f"Deploy {workflow_id}",
        "details": {"service": "api"},
        **fields,
    }


def start_file(tmp_path: Path, env: dict[str, str], request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{request['workflow_id']}.json"
    path.write_text(json.dumps(request))
    return hitl(env, "start", str(path))


def decide(env: dict[str, str], workflow_id: str, *args: str) -> dict[str, Any]:
    """``hitl decide --json``, retried while the run has not created its votes yet."""

    def attempt() -> dict[str, Any] | None:
        r = hitl(env, "decide", workflow_id, *args, "--json")
        doc = json.loads(r.stdout)
        if doc.get("outcome") == "unknown":
            return None
        return {"code": r.returncode, "stderr": r.stderr, **doc}

    return wait_until(attempt, timeout=15, interval=0.2, what=f"the votes of {workflow_id}")


def wait_done(env: dict[str, str], workflow_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = hitl_json(env, "status", workflow_id)
        return doc if doc["status"] != "pending" else None

    return wait_until(done, timeout=20, interval=0.2, what=f"{workflow_id} to finish")


def test_start_status_list_decide(stack: Stack, env: dict[str, str], tmp_path: Path) -> None:
    wf = unique("cli")
    r = start_file(tmp_path, env, body(wf))
    assert r.returncode == 0, r.stderr
    assert wf in r.stdout and "pending" in r.stdout and not r.stderr

    assert hitl_json(env, "status", wf) == {"workflow_id": wf, "status": "pending"}
    status = hitl(env, "status", wf)
    assert status.returncode == 0 and status.stdout.split() == ["workflow_id", wf, "status", "pending"]

    # The same body again is the same run; a different one under the same id is a conflict.
    assert start_file(tmp_path, env, body(wf)).returncode == 0
    clash = start_file(tmp_path, env, body(wf, subject="Something else"))
    assert clash.returncode == 1 and "already used" in clash.stderr

    listed = hitl(env, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["WORKFLOW_ID", "ROUND", "REQUIRED", "APPROVED", "REJECTED", "WAITING", "SUBJECT"]
    [row] = [line for line in rows if line.startswith(wf + " ")]
    assert "alice@example.com, bob@example.com" in row and f"Deploy {wf}" in row
    [item] = [d for d in hitl_json(env, "list") if d["workflow_id"] == wf]
    assert item == {
        "workflow_id": wf,
        "subject": f"Deploy {wf}",
        "round": 0,
        "required": 1,
        "approved": 0,
        "rejected": 0,
        "waiting": ["alice@example.com", "bob@example.com"],
    }

    voted = decide(env, wf, "--approver", "Alice@Example.com", "--approve", "--comment", "ship it")
    assert voted["code"] == 0, voted
    assert voted["outcome"] == "recorded" and voted["approver"] == "alice@example.com"
    assert voted["vote"]["decision"] == "approved" and voted["vote"]["comment"] == "ship it"

    done = wait_done(env, wf)
    result = done["result"]
    assert (done["status"], result["decision"], result["by"], result["comment"]) == (
        "done",
        "approved",
        "alice@example.com",
        "ship it",
    )
    [audit] = result["decisions"]
    assert audit["ip"] == "cli" and audit["user_agent"].startswith("hitl-cli/")
    assert audit["identity"]["method"] == "cli" and audit["identity"]["principal"]
    text = hitl(env, "status", wf).stdout
    assert "approved" in text and "DECIDED_AT" in text and "alice@example.com" in text

    # Decided: no longer listed, and a second vote is a conflict.
    assert wf not in [d["workflow_id"] for d in hitl_json(env, "list")]
    again = hitl(env, "decide", wf, "--approver", "alice@example.com", "--reject")
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "already decided" in again.stderr
    late = hitl_json(env, "decide", wf, "--approver", "bob@example.com", "--reject", code=1)
    assert late["outcome"] == "closed" and late["result"]["decision"] == "approved"


def test_cancel(env: dict[str, str]) -> None:
    wf = unique("cli")
    started = hitl_json(env, "start", "-", stdin=json.dumps(body(wf)).encode())
    assert started == {"workflow_id": wf, "status": "pending"}

    assert hitl_json(env, "cancel", wf, "--reason", "release frozen") == {"workflow_id": wf, "status": "canceling"}
    result = wait_done(env, wf)["result"]
    assert (result["decision"], result["by"], result["comment"]) == ("canceled", "cli:ops-jane", "release frozen")

    again = hitl(env, "cancel", wf)
    assert again.returncode == 1 and "already ended" in again.stderr
    closed = hitl_json(env, "decide", wf, "--approver", "alice@example.com", "--approve", code=1)
    assert closed["outcome"] == "closed" and closed["result"]["decision"] == "canceled"


def test_not_found_and_wrong_approver(env: dict[str, str], tmp_path: Path) -> None:
    missing = unique("nope")
    for args in (
        ["status", missing],
        ["cancel", missing],
        ["decide", missing, "--approver", "a@example.com", "--approve"],
    ):
        r = hitl(env, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stdout == "" and r.stderr.count("\n") == 1 and "no approval" in r.stderr
    assert hitl_json(env, "status", missing, code=1) == {
        "error": f"no approval with workflow_id {missing!r}",
        "workflow_id": missing,
    }

    wf = unique("cli")
    assert start_file(tmp_path, env, body(wf)).returncode == 0
    stranger = hitl(env, "decide", wf, "--approver", "mallory@example.com", "--approve")
    assert stranger.returncode == 1 and "not asked" in stranger.stderr
    assert hitl(env, "cancel", wf).returncode == 0


def test_usage_configuration_and_server_errors(env: dict[str, str], tmp_path: Path) -> None:
    no_url = {k: v for k, v in env.items() if k != "RESONATE_URL"}
    r = hitl(no_url, "list")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "hitl: RESONATE_URL is required\n")

    # decide writes through the server, as the click would: it needs no signing key
    wf = unique("cli")
    assert "HITL_SIGNING_KEY" not in env
    assert start_file(tmp_path, env, body(wf)).returncode == 0
    r = hitl(env, "decide", wf, "--approver", "alice@example.com", "--approve")
    assert r.returncode == 0, r.stderr

    r = hitl(env, "decide", "wf", "--approver", "alice@example.com")  # neither --approve nor --reject
    assert r.returncode == 2 and r.stderr.count("\n") == 1

    invalid = hitl_json(
        env, "start", "-", code=2, stdin=json.dumps({**body("x"), "approvers": ["not an email"]}).encode()
    )
    assert invalid["field"] == "approvers[0]"
    assert hitl(env, "start", str(tmp_path / "absent.json")).returncode == 2
    assert hitl(env, "status", "a:b").returncode == 2  # not a workflow id

    with refused_port() as port:
        down = {**env, "RESONATE_URL": f"http://127.0.0.1:{port}", "HITL_SERVER_TIMEOUT": "2"}
        r = hitl(down, "status", "anything")
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "unavailable" in r.stderr and "Traceback" not in r.stderr
