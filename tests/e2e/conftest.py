"""The e2e fixture: the whole stack as real processes on free ports."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack

from .api import Api, Target, deployed

#: Short leases so a killed worker's task comes back in seconds, not a minute.
FAST_WORKER = {"HITL_TASK_TTL": "3"}


def make_stack(
    state: Path, *, durable: bool = False, workers: int = 1, env: dict[str, str] | None = None, **kwargs
) -> Stack:
    stack = Stack(
        state, signing_key=secrets.token_urlsafe(48), durable=durable, env={**FAST_WORKER, **(env or {})}, **kwargs
    )
    try:
        stack.start(workers=workers)
    except BaseException:
        stack.stop()
        raise
    return stack


def targets(tmp_path_factory: pytest.TempPathFactory, name: str = "stack", **kwargs) -> Iterator[Target]:
    """Where the tests run: a deployment when ``HITL_START_URL`` is set (see infra/README.md),
    else a local stack (``kwargs`` go to :func:`make_stack`) stopped when the generator ends."""
    remote = deployed()
    if remote is not None:
        yield remote
        return
    s = make_stack(tmp_path_factory.mktemp(name), **kwargs)
    yield Target.local(s)
    s.stop()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One target shared by a module's tests (each test uses its own workflow ids)."""
    yield from targets(tmp_path_factory)


@pytest.fixture
def api(target: Target) -> Api:
    return Api(target)


@pytest.fixture
def local(target: Target) -> None:
    """Marks a test that reads the local inbox or logs: skipped against a deployment."""
    if target.inbox is None:
        pytest.skip("needs the local stack (inbox, logs)")
