"""Load tests: helpers to drive many requests at once and to see where the time goes.

Measurements (durations, CPU seconds per process) go to the ``measure``
fixture (tests/support/measurements.py): pytest's terminal summary prints them.
"""

from __future__ import annotations

import threading

import requests

from devstack.procstats import cpu_s, tree
from devstack.stack import Stack

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
