"""Open SMTP sessions, kept for the next message to the same relay.

Opening a session costs a TCP connection and EHLO and, against a real relay,
a TLS handshake and a login: more than sending one approval email (in the
throughput benchmark a new session per message cost the worker 0.6 ms and the
development sink 1.3 ms more than a reused one). A session is kept only after
a transaction that completed, for at most :attr:`Sessions.idle_seconds`, and is
reused only if it still answers NOOP, so a relay that closed it meanwhile costs
one round trip and a new session, never a message.

Thread-safe: :func:`hitl.notify.email.send` delivers from worker threads.
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["Sessions", "close"]


class Sessions:
    """Idle sessions by relay key, newest reused first; at most ``max_idle`` per key."""

    def __init__(
        self,
        *,
        max_idle: int = 4,
        idle_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._idle: dict[Hashable, list[tuple[float, smtplib.SMTP]]] = {}
        self._lock = threading.Lock()

    def take(self, key: Hashable, timeout: float) -> smtplib.SMTP | None:
        """An idle session to the relay ``key`` that still answers, with ``timeout`` set; else ``None``."""
        now = self._clock()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, client = idle.pop()
            if now - since <= self.idle_seconds and _answers(client, timeout):
                return client
            close(client)

    def give(self, key: Hashable, client: smtplib.SMTP) -> None:
        """Keep ``client`` (after a completed transaction) for the next message to ``key``."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append((self._clock(), client))
                return
        close(client)

    def close_all(self) -> None:
        """Close every idle session (at shutdown: a server may wait for its clients to leave)."""
        with self._lock:
            idle = [client for sessions in self._idle.values() for _, client in sessions]
            self._idle.clear()
        for client in idle:
            close(client)


def close(client: smtplib.SMTP | None) -> None:
    """Drop a session without a word to the relay (after an error, or one too many idle)."""
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()


def _answers(client: smtplib.SMTP, timeout: float) -> bool:
    try:
        if client.sock is None:
            return False
        client.sock.settimeout(timeout)
        client.timeout = timeout
        return client.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False
