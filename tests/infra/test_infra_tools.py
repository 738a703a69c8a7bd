"""terraform fmt, checkov, and the Resonate token tool."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from infra_helpers import ROOT, Terraform, expr, hcl_string


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed here (Cloud Build's tf-init step runs `terraform fmt -check` too)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "infra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra`:\n{result.stdout}"


@pytest.mark.checkov
@pytest.mark.timeout(900)
def test_checkov_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "checkov.sh"), "--compact"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert re.search(r"Failed checks: 0\b", result.stdout), result.stdout[-3000:]


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "infra" / "tools" / "resonate_token.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_tool_mints_tokens_the_public_key_verifies(tmp_path: Path, tf: Terraform) -> None:
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    assert _tool("keygen", "--private", str(private), "--public", str(public)).returncode == 0
    assert private.stat().st_mode & 0o077 == 0, "the private key must be readable by its owner only"
    assert _tool("keygen", "--private", str(private), "--public", str(public)).returncode != 0, "overwrote a key"

    minted = _tool("mint", "--private", str(private), "--subject", "worker", "--days", "30")
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout, public.read_bytes(), algorithms=["EdDSA"])
    assert claims["sub"] == "worker" and claims["prefix"] == ""
    assert 29 * 86400 < claims["exp"] - time.time() <= 30 * 86400

    admin = _tool("mint", "--private", str(private), "--subject", "ops", "--admin")
    assert jwt.decode(admin.stdout, public.read_bytes(), algorithms=["EdDSA"])["role"] == "admin"

    # The public key passes the Terraform variable's validation.
    (validation,) = tf.variables["resonate_jwt_public_key"]["validation"]
    m = re.fullmatch(
        r'can\(regex\("((?:[^"\\]|\\.)*)", var\.resonate_jwt_public_key\)\)', expr(validation["condition"])
    )
    assert m
    assert re.search(hcl_string(m.group(1)), public.read_text())
