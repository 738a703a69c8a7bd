from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack.stack import LocalServerProc

#: The ``measure`` fixture and its terminal summary (tests/support/measurements.py).
pytest_plugins = ["support.measurements"]


@pytest.fixture
def localserver(tmp_path: Path) -> Iterator[LocalServerProc]:
    """An in-memory local Resonate server on a free port, as its own process."""
    server = LocalServerProc(tmp_path)
    yield server
    server.stop()
