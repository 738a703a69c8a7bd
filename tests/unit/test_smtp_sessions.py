"""hitl.notify.smtp_sessions: which idle SMTP sessions are reused, which are dropped."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Sequence

from hitl.notify.smtp_sessions import Sessions


class Session(smtplib.SMTP):
    """A session that is never connected: answers NOOP with ``answer``, records being closed."""

    def __init__(self, answer: int = 250) -> None:
        super().__init__()  # no host: nothing is connected
        self.answer = answer
        self.closed = False
        self.sock = socket.socket()  # "connected" (never used for I/O)

    def noop(self) -> tuple[int, bytes]:
        return self.answer, b"OK"

    def close(self) -> None:
        self.closed = True
        if self.sock is not None:
            self.sock.close()
        self.sock = None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def closed(sessions: Sequence[Session]) -> list[bool]:
    return [s.closed for s in sessions]


def test_the_newest_idle_session_of_the_same_relay_is_reused() -> None:
    pool = Sessions()
    a, b = Session(), Session()
    pool.give("relay-1", a)
    pool.give("relay-1", b)
    assert pool.take("relay-2", timeout=1) is None
    assert pool.take("relay-1", timeout=1) is b
    assert pool.take("relay-1", timeout=1) is a
    assert pool.take("relay-1", timeout=1) is None
    assert closed([a, b]) == [False, False]


def test_sessions_idle_too_long_or_not_answering_are_closed_not_reused() -> None:
    clock = Clock()
    pool = Sessions(idle_seconds=30, clock=clock)
    old, silent, fresh = Session(), Session(answer=421), Session()
    pool.give("relay", old)
    clock.now = 20
    pool.give("relay", fresh)
    pool.give("relay", silent)
    clock.now = 40  # old has been idle 40 s, the others 20 s
    assert pool.take("relay", timeout=1) is fresh
    assert closed([old, silent, fresh]) == [False, True, False]
    assert pool.take("relay", timeout=1) is None
    assert closed([old, silent, fresh]) == [True, True, False]


def test_at_most_max_idle_sessions_are_kept_and_close_all_closes_them() -> None:
    pool = Sessions(max_idle=2)
    sessions = [Session() for _ in range(3)]
    for s in sessions:
        pool.give("relay", s)
    assert closed(sessions) == [False, False, True]
    pool.close_all()
    assert closed(sessions) == [True, True, True]
    assert pool.take("relay", timeout=1) is None
