"""The package's rooms keep to their doors: what each subpackage must never import, checked.

Each rule is the one its package docstring states; the check reads every import
statement (also those inside functions, which a cold-start path defers).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HITL = Path(__file__).resolve().parents[2] / "hitl"

#: package -> modules (or packages) it must never import.
NEVER = {
    "hitl": ("devstack", "bench", "examples", "tests"),
    "hitl.model": ("hitl.client", "hitl.notify", "hitl.edges", "hitl.approval", "hitl.delivery", "hitl.operations"),
    "hitl.security": ("hitl.",),
    "hitl.client": ("hitl.model", "hitl.notify", "hitl.edges", "hitl.approval", "hitl.delivery", "hitl.operations"),
    "hitl.notify": ("hitl.client", "hitl.edges", "hitl.approval", "hitl.delivery", "hitl.operations"),
    "hitl.edges": ("hitl.approval", "hitl.delivery", "hitl.notify.dispatcher", "hitl.notify.email",
                   "hitl.notify.slack", "hitl.notify.webhook", "hitl.notify.post"),
}  # fmt: skip


def modules() -> dict[str, set[str]]:
    """{module: every module it imports}."""
    out = {}
    for path in HITL.rglob("*.py"):
        name = ".".join(path.relative_to(HITL.parent).with_suffix("").parts).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        out[name] = imported
    return out


MODULES = modules()


@pytest.mark.parametrize("package", NEVER)
def test_no_package_imports_what_it_must_not(package: str) -> None:
    broken = [
        (module, imported)
        for module, imports in MODULES.items()
        if module == package or module.startswith(package + ".")
        for imported in sorted(imports)
        if any(
            imported == bad or imported.startswith(bad if bad.endswith(".") else bad + ".") for bad in NEVER[package]
        )
    ]
    assert not broken


def test_no_two_modules_share_a_name() -> None:
    packages = {m for m in MODULES if any(o.startswith(m + ".") for o in MODULES)}
    leaves = [m.rsplit(".", 1)[-1] for m in MODULES if m not in packages]
    assert len(leaves) == len(set(leaves)), sorted({n for n in leaves if leaves.count(n) > 1})


def test_the_check_sees_a_forbidden_import() -> None:
    assert (
        "hitl.notify.dispatcher" in MODULES["hitl.approval"]
        or "hitl.notify.dispatcher.Notifier" in MODULES["hitl.approval"]
    )
