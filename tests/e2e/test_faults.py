"""Faults, end to end: workers and the server killed, stopped, frozen or restarted mid-run.

Every test builds its own stack (real processes on free ports, FAST_WORKER:
3 s task leases) and stops it whatever happens. Waits poll something real —
the inbox, a log line, a health endpoint, the server's own answer — and are
all bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from support.api import Api, Target, unique
from support.relays import HungRelay
from support.server_records import task_state, wait_suspended
from support.stacks import make_stack

from devstack.stack import PYTHON, ROOT, Stack, WorkerProc, free_port, http_ok, wait_until

EMAIL_SENT = "email sent"


# -- helpers ------------------------------------------------------------------------


def log_of(stack: Stack, name: str) -> str:
    path = stack.logs / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def ready(worker: WorkerProc) -> bool:
    return http_ok(f"http://127.0.0.1:{worker.port}/ready")


def runner_of(stack: Stack) -> WorkerProc:
    """The one worker that sent an email (for a stack that ran one workflow)."""
    senders = wait_until(
        lambda: [w for w in stack.workers if EMAIL_SENT in w.output()],
        timeout=10,
        what="the worker that sent the email",
    )
    assert len(senders) == 1, [w.name for w in senders]
    return senders[0]


def restart_server(stack: Stack) -> None:
    """Start the server again (same port, same db: see tests/unit/test_stack.py) and wait until it answers."""
    stack.start_server()
    assert stack.server is not None
    wait_until(lambda: http_ok(stack.server.url + "/ready"), timeout=15, what="the restarted server to answer")


def timed(call: Any) -> tuple[requests.Response, float]:
    t0 = time.monotonic()
    resp = call()
    return resp, time.monotonic() - t0


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    """Stacks a test makes (``stacks.append(make_stack(...))``), stopped at the end."""
    made: list[Stack] = []
    try:
        yield made
    finally:
        for s in made:
            s.stop()


# -- workers dying ----------------------------------------------------------------------


def test_worker_killed_while_waiting_other_worker_finishes_one_email(stacks: list[Stack], tmp_path: Path) -> None:
    stack = make_stack(tmp_path, workers=2)
    stacks.append(stack)
    api = Api(Target.local(stack))
    wf = unique("kill-wait")
    assert api.start(api.request_body(wf)).status_code == 202
    links = api.wait_email(wf)
    wait_suspended(stack.server.url, wf)

    victim = runner_of(stack)
    closed = log_of(stack, "localserver").count("stream closed")
    victim.kill()
    # Once the server dropped the dead stream, the resumption can only go to the live worker.
    wait_until(
        lambda: log_of(stack, "localserver").count("stream closed") > closed, what="the server to drop the dead stream"
    )

    assert api.decide(links["approve"], comment="after the crash").status_code == 200
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["comment"]) == ("approved", "after the crash")
    assert len(api.emails(wf)) == 1


def test_worker_killed_while_sending_email_other_worker_sends_it(stacks: list[Stack], tmp_path: Path) -> None:
    stack = make_stack(tmp_path, workers=0)
    stacks.append(stack)
    hole = HungRelay()
    try:
        stuck = stack.add_worker("worker1", SMTP_PORT=str(hole.port))
        api = Api(Target.local(stack))
        wf = unique("kill-send")
        assert api.start(api.request_body(wf)).status_code == 202
        assert hole.accepted.wait(15), "worker1 never connected to the SMTP relay"
        rescuer = stack.add_worker("worker2")  # the real sink
        assert task_state(stack.server.url, wf) == "acquired"  # worker1 holds the lease, stuck in the send
        stuck.kill()

        # The lease (3 s) lapses, worker2 runs the step again and the email goes out, once.
        links = api.wait_email(wf, timeout=25)
        assert api.decide(links["reject"], "reject", comment="no").status_code == 200
        result = api.wait_done(wf)["result"]
        assert (result["decision"], result["comment"]) == ("rejected", "no")
        assert len(api.emails(wf)) == 1
        # The sink stores a copy under the same name, so the inbox cannot tell one send from two: the sender's log can.
        assert rescuer.output().count(EMAIL_SENT) == 1, rescuer.output()[-3000:]
    finally:
        hole.close()


def test_worker_idle_past_its_sse_timeout_still_takes_work(stacks: list[Stack], tmp_path: Path) -> None:
    stack = make_stack(tmp_path, workers=0)
    stacks.append(stack)
    worker = stack.add_worker("worker1", HITL_SSE_TIMEOUT="1")
    # The only worker reopens its stream every second: wait for two reconnects (> 2 s idle).
    wait_until(lambda: log_of(stack, "localserver").count("stream opened") >= 3, timeout=15, what="two reconnects")
    assert worker.alive()

    api = Api(Target.local(stack))
    wf = unique("idle")
    assert api.start(api.request_body(wf)).status_code == 202
    links = api.wait_email(wf)
    assert api.decide(links["approve"]).status_code == 200
    assert api.wait_done(wf)["result"]["decision"] == "approved"


def test_several_workers_share_the_load(stacks: list[Stack], tmp_path: Path) -> None:
    stack = make_stack(tmp_path, workers=3)
    stacks.append(stack)
    api = Api(Target.local(stack))
    ids = [unique(f"load{i}") for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        assert [r.status_code for r in pool.map(lambda wf: api.start(api.request_body(wf)), ids)] == [202] * 12
        links = list(pool.map(lambda wf: api.wait_email(wf, timeout=25), ids))
        assert [r.status_code for r in pool.map(lambda ln: api.decide(ln["approve"]), links)] == [200] * 12
        results = list(pool.map(lambda wf: api.wait_done(wf, timeout=25), ids))
    assert {r["result"]["decision"] for r in results} == {"approved"}
    assert all(len(api.emails(wf)) == 1 for wf in ids)
    sent = {w.name: w.output().count(EMAIL_SENT) for w in stack.workers}
    assert sum(sent.values()) == 12, sent
    assert sum(1 for n in sent.values() if n) > 1, sent


def test_worker_stops_cleanly_on_sigterm(stacks: list[Stack], tmp_path: Path) -> None:
    stack = make_stack(tmp_path, workers=1)
    stacks.append(stack)
    worker = stack.workers[0]
    t0 = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    code = worker.popen.wait(30)  # only a bound on a hang: how long it took is the assertion below
    took = time.monotonic() - t0
    assert code == 0
    assert took < 10, f"stopped {took:.1f} s after SIGTERM; Cloud Run kills it at 10 s"
    assert "worker stopped" in worker.output()


def test_worker_without_resonate_url_exits_2_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "HITL_", "SMTP_"))}
    env.update(
        HITL_SIGNING_KEY="k" * 48,
        HITL_UNBLOCK_URL="http://127.0.0.1:9/",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT="2525",
        SMTP_SECURITY="none",
        HITL_LOG_FORMAT="text",
        PORT=str(free_port()),
    )
    done = subprocess.run([PYTHON, "-m", "worker.main"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "RESONATE_URL" in done.stderr
    assert "Traceback" not in done.stderr


# -- the server dying ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_worker_reconnects_when_the_server_restarts(stacks: list[Stack], tmp_path: Path, how: str) -> None:
    stack = make_stack(tmp_path, durable=True, workers=1)
    stacks.append(stack)
    api = Api(Target.local(stack))
    worker = stack.workers[0]
    wf = unique("restart")
    assert api.start(api.request_body(wf)).status_code == 202
    links = api.wait_email(wf)
    wait_suspended(stack.server.url, wf)

    assert stack.server is not None
    if how == "sigterm":
        assert stack.server.stop() == 0
    else:
        stack.server.kill()
    wait_until(lambda: not ready(worker), timeout=10, what="the worker to notice the server is gone")
    restart_server(stack)  # at the URL the worker knows
    worker.wait_ready(timeout=20)  # reconnected by itself

    assert api.decide(links["approve"], comment=how).status_code == 200
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["comment"]) == ("approved", how)
    assert len(api.emails(wf)) == 1


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_functions_answer_503_while_the_server_is_down(stacks: list[Stack], tmp_path: Path, how: str) -> None:
    """Stopped: connections refused. Frozen (SIGSTOP): connections hang until the functions give up."""
    stack = make_stack(tmp_path, durable=True, workers=1)
    stacks.append(stack)
    api = Api(Target.local(stack))
    wf = unique("down")
    assert api.start(api.request_body(wf)).status_code == 202
    links = api.wait_email(wf)
    tokens = api.page_tokens(links["approve"])
    wait_suspended(stack.server.url, wf)

    server = stack.server
    assert server is not None
    if how == "stopped":
        server.stop()
    else:
        server.popen.send_signal(signal.SIGSTOP)
    try:
        later = unique("later")
        attempts = {
            "start POST": lambda: api.start(api.request_body(later)),
            "status GET": lambda: api.status(wf),
            "unblock GET": lambda: api.open(links["approve"]),
            "unblock POST": lambda: api.submit(tokens["approve"], "while down"),
        }
        with ThreadPoolExecutor(len(attempts)) as pool:  # at once: a frozen server makes each one wait ~5 s
            answers = dict(zip(attempts, pool.map(timed, attempts.values()), strict=True))
        for what, (resp, took) in answers.items():
            assert resp.status_code == 503, (what, resp.status_code, resp.text[:300])
            assert resp.headers.get("Retry-After"), (what, dict(resp.headers))
            assert took < 5.5, (what, took)
    finally:
        if how == "stopped":
            restart_server(stack)
        else:
            server.popen.send_signal(signal.SIGCONT)
    # A decision made before the worker is back on its stream would wait for the server's 30 s task retry.
    stack.workers[0].wait_ready(timeout=20)

    # Back: the same functions process work again (they were not restarted).
    assert api.start(api.request_body(later)).status_code in (200, 202)
    assert api.open(links["approve"]).status_code in (200, 409)
    decided = api.submit(tokens["approve"], "while down")
    if decided.status_code == 409:
        # Only possible when the frozen server applied the click it got before the function gave up.
        assert how == "frozen", decided.text[:300]
    else:
        assert decided.status_code == 200, decided.text[:300]
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["comment"]) == ("approved", "while down")
    assert api.wait_email(later)
