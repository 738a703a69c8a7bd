"""devstack.stack, the stack as processes: a process that exited fails the wait at once, a failed start
leaves nothing running, and a restarted server comes back where the other processes expect it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from devstack.stack import PYTHON, Proc, ProcessExited, Stack, WorkerProc, free_port, wait_until

#: The waits below are given this long; failing "at once" means well within it.
PATIENCE = 20.0


def test_wait_until_retries_a_check_that_raises_until_it_holds() -> None:
    calls: list[int] = []

    def check() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not up yet")
        return "up"

    assert wait_until(check, timeout=PATIENCE, interval=0.001) == "up"
    assert len(calls) == 3


def test_wait_until_reports_the_last_error_at_the_timeout() -> None:
    def check() -> bool:
        raise ConnectionRefusedError("still down")

    with pytest.raises(TimeoutError, match="still down"):
        wait_until(check, timeout=0.05, interval=0.001, what="the thing")


def test_wait_until_fails_at_once_when_the_process_exited() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        raise ProcessExited("worker exited with 2")

    t0 = time.monotonic()
    with pytest.raises(ProcessExited, match="exited with 2"):
        wait_until(check, timeout=PATIENCE, interval=0.001)
    assert time.monotonic() - t0 < PATIENCE / 2
    assert len(calls) == 1


def test_waiting_for_a_line_from_a_process_that_exited_fails_at_once(tmp_path: Path) -> None:
    proc = Proc("gone", [PYTHON, "-c", "print('bye'); raise SystemExit(3)"], log_dir=tmp_path)
    try:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="gone exited with 3") as raised:
            proc.wait_for_line("never printed", timeout=PATIENCE)
        assert time.monotonic() - t0 < PATIENCE / 2
        assert "bye" in str(raised.value)  # the end of its output, to tell why
    finally:
        proc.stop()


def test_a_worker_that_exits_fails_its_start_at_once_and_is_not_left_running(tmp_path: Path) -> None:
    """Not configured: the worker exits 2 at once (see worker.main); its start says so without waiting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "HITL_", "SMTP_"))}
    env["PORT"] = str(free_port())
    started: list[WorkerProc] = []

    class Recorded(WorkerProc):
        def wait_ready(self, timeout: float = PATIENCE) -> None:
            started.append(self)
            super().wait_ready(timeout)

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with 2") as raised:
        Recorded(tmp_path, env, name="no-url")
    assert time.monotonic() - t0 < PATIENCE / 2
    assert "configuration error" in str(raised.value)  # the end of its output, to tell why
    [worker] = started
    assert not worker.alive()


def test_a_stack_whose_sink_fails_to_start_stops_its_server(tmp_path: Path) -> None:
    stack = Stack(tmp_path, signing_key="k" * 48, sink_command=[PYTHON, "-c", "raise SystemExit(4)"])
    with pytest.raises(ProcessExited, match="smtpsink exited with 4"):
        stack.start()
    assert stack.server is not None
    assert not stack.server.alive()


def test_a_restarted_server_comes_back_on_its_port(tmp_path: Path) -> None:
    """The fault tests restart the server under running workers, which know only its first URL."""
    stack = Stack(tmp_path, signing_key="k" * 48, durable=True)
    try:
        first = stack.start_server()
        first.kill()
        second = stack.start_server()
        assert second is not first and second.alive()
        assert second.url == first.url
    finally:
        stack.stop()
