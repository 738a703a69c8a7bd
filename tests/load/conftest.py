"""Load tests: helpers to drive many requests at once and to see where the time goes.

Measurements (durations, CPU seconds per process) are collected with the
``measure`` fixture and printed in pytest's terminal summary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.procstats import cpu_s, tree
from devstack.stack import Stack

#: Lines for the terminal summary, in the order they were measured.
MEASUREMENTS: list[str] = []


@pytest.fixture(scope="session")
def measure() -> Callable[[str], None]:
    return MEASUREMENTS.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("load measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


# -- HTTP: one keep-alive session per client thread ---------------------------------------

_local = threading.local()


def session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


# -- CPU per process (the process and its children: functions-framework forks) -------------


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each live process of the stack."""
    return {p.name: cpu_s(tree(p.popen.pid)) for p in stack.processes() if p.alive()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> str:
    parts = [f"{name} {after[name] - before.get(name, 0.0):.1f}" for name in after]
    return "cpu s: " + ", ".join(parts)


# -- the inbox and the sink's log -------------------------------------------------------------

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
