"""Resilience tests: helpers that watch the relay and stand in for a broken one.

Durations measured with the ``measure`` fixture are printed in pytest's
terminal summary ("resilience measurements").
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from support.listener import Listener

from devstack.stack import Stack
from hitl.notify.email import IDEMPOTENCY_HEADER

MEASUREMENTS: list[str] = []


@pytest.fixture(scope="session")
def measure() -> Callable[[str], None]:
    return MEASUREMENTS.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("resilience measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


_parser = BytesParser(policy=policy.default)


def inbox_messages(inbox: Path) -> dict[str, EmailMessage]:
    """Every stored message by its stored name (the sink's idempotency key)."""
    return {p.stem: _parser.parsebytes(p.read_bytes()) for p in inbox.glob("*.eml")}


def inbox_count(inbox: Path) -> int:
    return sum(1 for _ in inbox.glob("*.eml"))


class SinkWatch:
    """Timestamps every line the SMTP sink logs, as it appears (one line per message
    received: ``mail to=...`` for a new one, ``duplicate ignored: <name> ...`` for a copy)."""

    def __init__(self, stack: Stack, interval: float = 0.05) -> None:
        assert stack.sink is not None
        self._path = stack.sink.log_path
        self._interval = interval
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        offset, rest = 0, b""
        while not self._stop.is_set():
            with open(self._path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            now = time.monotonic()
            *complete, rest = (rest + chunk).split(b"\n")
            self.lines += [(now, ln.decode(errors="replace")) for ln in complete]
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def arrivals(self, workflow_of_name: dict[str, str], ids: re.Pattern[str]) -> dict[str, list[float]]:
        """When each workflow's email copies reached the sink: the first copy (logged with
        its subject) and every later one (logged with its stored name)."""
        out: dict[str, list[float]] = defaultdict(list)
        for t, line in self.lines:
            wf = None
            if line.startswith("duplicate ignored: "):
                wf = workflow_of_name.get(line.split()[2])
            elif line.startswith("mail to="):
                subject = re.search(r'subject="([^"]*)"', line)
                found = ids.search(subject.group(1)) if subject else None
                wf = found.group() if found else None
            if wf is not None:
                out[wf].append(t)
        return dict(out)


class FakeRelay(Listener):
    """An SMTP relay that is down: it accepts each connection, answers ``421`` and hangs up.

    ``attempts`` holds the time of each connection (each delivery attempt)."""

    def __init__(self) -> None:
        self.attempts: list[float] = []
        super().__init__()

    def on_accept(self, conn: socket.socket) -> None:
        self.attempts.append(time.monotonic())
        try:
            conn.sendall(b"421 4.3.2 relay down for maintenance\r\n")
        except OSError:
            pass
        conn.close()


class SlowRelay:
    """A working SMTP relay that takes ``delay`` seconds to accept each message.

    Counts, per idempotency key, the deliveries started (``started``) and accepted (``accepted``)."""

    def __init__(self, delay: float) -> None:
        from aiosmtpd.controller import Controller

        from devstack.stack import free_port

        self.delay = delay
        self.started: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.subjects: dict[str, str] = {}
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = _parser.parsebytes(envelope.original_content or b"")
        key = str(message.get(IDEMPOTENCY_HEADER, ""))
        self.subjects[key] = str(message["Subject"])
        self.started[key] += 1
        await asyncio.sleep(self.delay)
        self.accepted[key] += 1
        return "250 OK"

    def key_of(self, workflow_id: str) -> str | None:
        return next((k for k, s in self.subjects.items() if workflow_id in s), None)

    def close(self) -> None:
        self._controller.stop()
