"""The e2e fixtures: one target per module (a local stack as real processes, or a deployment)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.api import Api, Target
from support.stacks import targets


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
