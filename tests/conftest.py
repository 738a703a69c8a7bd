from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack.stack import LocalServerProc

#: The ``measure`` fixture and its terminal summary (tests/support/measurements.py).
pytest_plugins = ["support.measurements"]


@pytest.fixture(autouse=True)
def no_workflow_returns_with_open_promises() -> Iterator[None]:
    """Fails a test after which a worker of a stack it used logged that a workflow returned
    while promises it awaits were open (support.stacks.RETURNED_WITH_OPEN_PROMISES)."""
    from support.stacks import worker_log_sizes, workers_complained

    since = worker_log_sizes()
    yield
    complaints = workers_complained(since)
    assert not complaints, "a workflow returned with awaited promises open:\n" + "\n".join(complaints[:5])


@pytest.fixture
def localserver(tmp_path: Path) -> Iterator[LocalServerProc]:
    """An in-memory local Resonate server on a free port, as its own process."""
    server = LocalServerProc(tmp_path)
    yield server
    server.stop()
