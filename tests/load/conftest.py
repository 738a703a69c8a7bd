"""Load tests: helpers to drive many requests at once and to see where the time goes.

Measurements (durations, CPU seconds per process) are collected with the
``measure`` fixture and printed in pytest's terminal summary.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.stack import Proc, Stack

#: Lines for the terminal summary, in the order they were measured.
MEASUREMENTS: list[str] = []

_CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return pids


def _cpu_of(proc: Proc) -> float:
    total = 0.0
    for pid in _tree(proc.popen.pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime
    return total


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each live process of the stack."""
    return {p.name: _cpu_of(p) for p in stack.processes() if p.alive()}


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
