"""The stacks the process suites run against: a local stack made for a test, or a deployment.

Every process suite (e2e, browser, resilience) starts its stack here, with
short task leases (:data:`FAST_WORKER`) so a killed worker's task comes back
in seconds, not a minute.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from support.api import Target, deployed

#: Short leases so a killed worker's task comes back in seconds, not a minute.
FAST_WORKER = {"HITL_TASK_TTL": "3"}

#: What resonate-sdk logs when a workflow returned while promises it awaits were still open:
#: the return became a suspension, and the run executed again (issue 15: what it had already
#: sent could differ from what it then stored). No process suite may see it.
RETURNED_WITH_OPEN_PROMISES = "workflow returned done with pending remote todos"

#: Every stack the process suites made (see :func:`track`), for :func:`workers_complained`.
_TRACKED: list[Stack] = []


def track(stack: Stack) -> Stack:
    """Remember ``stack`` so the suites' log check reads its workers' logs; returns it."""
    _TRACKED.append(stack)
    return stack


def worker_log_sizes() -> dict[Path, int]:
    """The size of every tracked worker's log now (where the log check starts reading)."""
    return {w.log_path: w.log_path.stat().st_size for s in _TRACKED for w in s.workers if w.log_path.exists()}


def workers_complained(since: dict[Path, int]) -> list[str]:
    """The lines of :data:`RETURNED_WITH_OPEN_PROMISES` the tracked workers logged after ``since``."""
    found = []
    for path in {w.log_path for s in _TRACKED for w in s.workers}:
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(since.get(path, 0))
            found += [
                line for line in f.read().decode(errors="replace").splitlines() if RETURNED_WITH_OPEN_PROMISES in line
            ]
    return found


def make_stack(
    state: Path, *, durable: bool = False, workers: int = 1, env: dict[str, str] | None = None, **kwargs: Any
) -> Stack:
    """A started local stack in ``state`` with :data:`FAST_WORKER` leases (``kwargs`` go to :class:`Stack`)."""
    stack = Stack(
        state, signing_key=secrets.token_urlsafe(48), durable=durable, env={**FAST_WORKER, **(env or {})}, **kwargs
    )
    return track(stack).start(workers=workers)


def local_stack(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[Stack]:
    """A local stack for a module's tests (``kwargs`` go to :func:`make_stack`), stopped when the generator ends."""
    s = make_stack(tmp_path_factory.mktemp(name), **kwargs)
    try:
        yield s
    finally:
        s.stop()


def targets(tmp_path_factory: pytest.TempPathFactory, name: str = "stack", **kwargs: Any) -> Iterator[Target]:
    """Where the tests run: a deployment when ``HITL_START_URL`` is set (see infra/README.md),
    else a local stack (``kwargs`` go to :func:`make_stack`) stopped when the generator ends."""
    remote = deployed()
    if remote is not None:
        yield remote
        return
    for s in local_stack(tmp_path_factory, name, **kwargs):
        yield Target.local(s)
