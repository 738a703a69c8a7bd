"""Fixtures of the infra checks: the parsed Terraform and one functions bundle per session."""

from __future__ import annotations

import subprocess
import sys
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


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "functions.zip"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bundle_functions.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return out
