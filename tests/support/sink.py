"""What the stack's SMTP sink received, read as a test needs it: its inbox folder and its log.

The sink (``devstack.smtpsink``) stores each message as ``<stored name>.eml``
(the name comes from the message's idempotency key, so a copy is stored once)
and logs one line per message received: ``mail to=...`` for a new one,
``duplicate ignored: <name> ...`` for a copy.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from devstack.stack import Stack

_parser = BytesParser(policy=policy.default)


def inbox_count(inbox: Path) -> int:
    return sum(1 for _ in inbox.glob("*.eml"))


def inbox_messages(inbox: Path) -> dict[str, EmailMessage]:
    """Every stored message by its stored name (the sink's idempotency key)."""
    return {p.stem: _parser.parsebytes(p.read_bytes()) for p in inbox.glob("*.eml")}


def sink_deliveries(stack: Stack) -> tuple[int, int]:
    """(messages stored, duplicates the sink ignored): every DATA the relay accepted."""
    assert stack.sink is not None
    lines = stack.sink.output().splitlines()
    return sum(ln.startswith("mail to=") for ln in lines), sum(ln.startswith("duplicate ignored: ") for ln in lines)


class SinkWatch:
    """Timestamps every line the SMTP sink logs, as it appears (one line per message received)."""

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
