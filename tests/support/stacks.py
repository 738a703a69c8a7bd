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


def make_stack(
    state: Path, *, durable: bool = False, workers: int = 1, env: dict[str, str] | None = None, **kwargs: Any
) -> Stack:
    """A started local stack in ``state`` with :data:`FAST_WORKER` leases (``kwargs`` go to :class:`Stack`)."""
    stack = Stack(
        state, signing_key=secrets.token_urlsafe(48), durable=durable, env={**FAST_WORKER, **(env or {})}, **kwargs
    )
    return stack.start(workers=workers)


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
