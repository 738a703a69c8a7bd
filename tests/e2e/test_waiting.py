"""Waiting for a decision without a polling loop of one's own: the long-poll GET, and an
operator's ``hitl wait`` and ``hitl start --wait`` over the server, against the local stack.
(A pipeline's, over the start function, and the CI gate: test_pipeline.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.api import Api, unique
from support.stacks import local_stack

from devstack.stack import PYTHON, ROOT, Stack

pytestmark = pytest.mark.usefixtures("local")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from local_stack(tmp_path_factory, "waiting")


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack)


@pytest.fixture
def env(stack: Stack) -> dict[str, str]:
    assert stack.server is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "HITL_"))}
    return {**base, "RESONATE_URL": stack.server.url, "HITL_CLI": str(Path(PYTHON).parent / "hitl")}


def long_poll(api: Api, wf: str, wait: float) -> tuple[requests.Response, float]:
    t0 = time.monotonic()
    r = requests.get(api.start_url, params={"workflow_id": wf, "wait": str(wait)}, timeout=wait + 30)
    return r, time.monotonic() - t0


def decide_after(api: Api, wf: str, act: str, delay: float) -> threading.Thread:
    """Decide from another thread once the email is there and ``delay`` has passed."""

    def go() -> None:
        links = api.wait_email(wf)
        time.sleep(delay)  # pacing: the waiter must be waiting first (not a synchronisation)
        api.decide(links[act], act)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_a_long_poll_answers_as_soon_as_the_request_ends(api: Api) -> None:
    body = api.request_body()
    wf = body["workflow_id"]
    api.start(body)
    decider = decide_after(api, wf, "approve", 1.0)
    r, took = long_poll(api, wf, 30)
    decider.join()
    assert (r.status_code, r.json()["status"], r.json()["result"]["decision"]) == (200, "done", "approved")
    assert took < 10, took  # pushed, not found at the end of the wait


def test_a_long_poll_answers_pending_when_its_time_is_up(api: Api) -> None:
    body = api.request_body()
    api.start(body)
    r, took = long_poll(api, body["workflow_id"], 1.5)
    assert (r.status_code, r.json()["status"]) == (202, "pending")
    assert 1.5 <= took < 8


@pytest.mark.parametrize("wait", ["61", "-1", "soon", "nan"])
def test_a_long_poll_waits_at_most_a_minute(api: Api, wait: str) -> None:
    r = requests.get(api.start_url, params={"workflow_id": "x", "wait": wait}, timeout=10)
    assert (r.status_code, r.json()["field"]) == (400, "wait")


def hitl(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([env["HITL_CLI"], *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize(("act", "code"), [("approve", 0), ("reject", 4)])
def test_hitl_wait_exits_with_the_outcome(api: Api, env: dict[str, str], act: str, code: int) -> None:
    body = api.request_body()
    wf = body["workflow_id"]
    api.start(body)
    decider = decide_after(api, wf, act, 0.5)
    r = hitl(env, "wait", wf, "--json")
    decider.join()
    assert r.returncode == code, r.stderr
    assert json.loads(r.stdout)["result"]["decision"] == {"approve": "approved", "reject": "rejected"}[act]


def test_hitl_wait_codes_for_expired_canceled_timed_out_and_unknown(api: Api, env: dict[str, str]) -> None:
    expiring = api.request_body(deadline=2)
    api.start(expiring)
    assert hitl(env, "wait", expiring["workflow_id"]).returncode == 5

    canceled = api.request_body()
    api.start(canceled)
    api.wait_email(canceled["workflow_id"])
    api.start({"workflow_id": canceled["workflow_id"]}, path="cancel")
    assert hitl(env, "wait", canceled["workflow_id"]).returncode == 6

    pending = api.request_body()
    api.start(pending)
    r = hitl(env, "wait", pending["workflow_id"], "--timeout", "2s")
    assert r.returncode == 7 and "still pending" in r.stderr

    assert hitl(env, "wait", unique("nobody")).returncode == 1
    assert hitl(env, "wait", "x", "--timeout", "soon").returncode == 2
