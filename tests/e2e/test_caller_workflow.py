"""The caller's-workflow example (examples/caller_workflow), run as it ships: its own worker
process in its own group, its own workflow, calling ``start`` over HTTP and awaiting its promise."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api import Api, unique
from support.stacks import local_stack

from devstack.stack import PYTHON, ROOT, Proc, Stack, wait_until

pytestmark = pytest.mark.usefixtures("local")


class Caller:
    """The example's worker (a process) and its trigger (a command), against one stack."""

    def __init__(self, stack: Stack, state: Path) -> None:
        assert stack.server is not None and stack.start_fn is not None
        self.stack = stack
        self.ledger = state / "deploys.jsonl"
        self.env = {
            "RESONATE_URL": stack.server.url,
            "HITL_START_URL": stack.start_fn.url + "/",
            "CALLER_GROUP": "deploys",
            "DEPLOY_LEDGER": str(self.ledger),
            "CALLER_TASK_TTL": "3",
        }
        self.worker = self.start_worker()

    def start_worker(self) -> Proc:
        proc = Proc("caller", [PYTHON, "-m", "examples.caller_workflow.worker"], log_dir=self.stack.logs, env=self.env)
        wait_until(lambda: "listening on group deploys" in proc.output() or not proc.alive(), timeout=20,
                   what="the caller's worker to listen")  # fmt: skip
        assert proc.alive(), proc.output()
        return proc

    def trigger(self, run_id: str, *args: str, wait: float = 0) -> dict[str, Any]:
        out = subprocess.run(
            [PYTHON, "-m", "examples.caller_workflow.trigger", run_id, "api", "v1", "alice@example.com",
             *args, "--wait", str(wait)],
            cwd=ROOT, env={**self.env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def result(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        ended = wait_until(
            lambda: (r := self.trigger(run_id))["state"] != "pending" and r, timeout=timeout, interval=0.3,
            what=f"{run_id} to end",
        )  # fmt: skip
        assert ended["state"] == "resolved", ended
        return ended["value"]

    def shipped(self, run_id: str) -> list[dict[str, Any]]:
        """What the example's deploy step shipped for ``run_id`` (one ledger line each time it ran)."""
        lines = self.ledger.read_text().splitlines() if self.ledger.exists() else []
        return [entry for entry in map(json.loads, lines) if entry["run"] == run_id]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from local_stack(tmp_path_factory, "caller")


@pytest.fixture(scope="module")
def caller(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caller]:
    c = Caller(stack, tmp_path_factory.mktemp("caller-state"))
    yield c
    c.worker.stop()


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack)


@pytest.mark.parametrize(
    ("act", "deployed", "decision"), [("approve", True, "approved"), ("reject", False, "rejected")]
)
def test_the_decision_reaches_the_callers_workflow(
    caller: Caller, api: Api, act: str, deployed: bool, decision: str
) -> None:
    run_id = unique("deploy")
    caller.trigger(run_id)
    links = api.wait_email(f"{run_id}-approval", timeout=20)
    api.decide(links[act], act, comment="from the test")
    result = caller.result(run_id)
    assert (result["deployed"], result["decision"], result["by"]) == (deployed, decision, "alice@example.com")
    assert result["comment"] == "from the test"
    assert len(caller.shipped(run_id)) == (1 if deployed else 0)


def test_an_expired_request_reaches_the_callers_workflow(caller: Caller) -> None:
    run_id = unique("deploy")
    caller.trigger(run_id, "--deadline", "2s")
    result = caller.result(run_id, timeout=40)
    assert (result["deployed"], result["decision"], result["by"]) == (False, "expired", None)
    assert caller.shipped(run_id) == []


def test_the_callers_worker_killed_while_it_waits_completes_once_after_a_restart(caller: Caller, api: Api) -> None:
    run_id = unique("deploy")
    caller.trigger(run_id)
    links = api.wait_email(f"{run_id}-approval", timeout=20)
    caller.worker.kill()  # kill -9 while the workflow waits on its promise
    caller.worker = caller.start_worker()
    api.decide(links["approve"])
    result = caller.result(run_id, timeout=60)
    assert (result["deployed"], result["decision"]) == (True, "approved")
    assert len(caller.shipped(run_id)) == 1
