"""Fixtures of the infra checks: the parsed Terraform, the functions bundler and one bundle per session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from infra_helpers import ROOT, Terraform, terraform


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "checkov: runs checkov over infra/ (installs it on first use; deselect with -m 'not checkov')"
    )


@pytest.fixture(scope="session")
def tf() -> Terraform:
    return terraform()


def _bundle_functions(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bundle_functions.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def bundle_functions() -> Callable[..., None]:
    """Runs ``scripts/bundle_functions.py`` with the arguments given; a failure fails the test with its stderr."""
    return _bundle_functions


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, bundle_functions: Callable[..., None]) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "functions.zip"
    bundle_functions("--out", str(out))
    return out
