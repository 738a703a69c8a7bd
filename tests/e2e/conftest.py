"""The e2e fixture: the whole stack as real processes on free ports."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl.stack import Stack

from .api import Api

#: Short leases so a killed worker's task comes back in seconds, not a minute.
FAST_WORKER = {"HITL_TASK_TTL": "3"}


def make_stack(state: Path, *, durable: bool = False, workers: int = 1, **kwargs) -> Stack:
    stack = Stack(state, signing_key=secrets.token_urlsafe(48), durable=durable, env=FAST_WORKER, **kwargs)
    try:
        stack.start(workers=workers)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One shared stack for a module's tests (each test uses its own workflow ids)."""
    s = make_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack)
