"""SMTP relays that misbehave on purpose, for the tests of the worker's email step.

- :class:`HungRelay` accepts connections and never says a word (a hung relay);
- :class:`DownRelay` answers every connection ``421`` and hangs up (a relay down for maintenance);
- :class:`SlowRelay` works, but takes ``delay`` seconds to accept each message.

The working relay is the stack's own sink (``devstack.smtpsink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from email import policy
from email.parser import BytesParser
from typing import Any

from devstack.stack import free_port
from hitl.notify.email import IDEMPOTENCY_HEADER
from support.listener import Listener


class HungRelay(Listener):
    """An SMTP port that accepts connections and then says nothing; ``accepted`` is set at the first."""

    def __init__(self) -> None:
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        super().__init__()

    def on_accept(self, conn: socket.socket) -> None:
        self._conns.append(conn)
        self.accepted.set()

    def close(self) -> None:
        super().close()
        for c in self._conns:
            c.close()


class DownRelay(Listener):
    """An SMTP relay that is down: it accepts each connection, answers ``421`` and hangs up.

    ``attempts`` holds the time of each connection (each delivery attempt)."""

    def __init__(self) -> None:
        self.attempts: list[float] = []
        super().__init__()

    def on_accept(self, conn: socket.socket) -> None:
        self.attempts.append(time.monotonic())
        with contextlib.suppress(OSError):
            conn.sendall(b"421 4.3.2 relay down for maintenance\r\n")
        conn.close()


class SlowRelay:
    """A working SMTP relay that takes ``delay`` seconds to accept each message.

    Counts, per idempotency key, the deliveries started (``started``) and accepted (``accepted``)."""

    def __init__(self, delay: float) -> None:
        from aiosmtpd.controller import Controller

        self.delay = delay
        self.started: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.subjects: dict[str, str] = {}
        self._parser = BytesParser(policy=policy.default)
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = self._parser.parsebytes(envelope.original_content or b"")
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
