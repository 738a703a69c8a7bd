"""The ``measure`` fixture: figures a suite measures (durations, CPU seconds), printed after the run.

A pytest plugin (``tests/conftest.py`` loads it). A test or a module fixture
calls ``measure(line)``; pytest's terminal summary then shows the lines under
"<suite> measurements", the suite being the folder of the test module
(``load measurements``, ``resilience measurements``), in the order measured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

#: The lines measured so far, by suite.
_MEASURED: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def measure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a line to the summary of the suite this test module is in."""
    return _MEASURED.setdefault(request.path.parent.name, []).append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for suite, lines in _MEASURED.items():
        if lines:
            terminalreporter.section(f"{suite} measurements")
            for line in lines:
                terminalreporter.write_line(line)
