"""scripts/bundle_functions.py: what the functions are deployed from."""

from __future__ import annotations

import ast
import re
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from infra_helpers import ROOT

DEV_TOOLS = ("pytest", "pytest-timeout", "python-hcl2", "pyyaml", "iniconfig", "pluggy", "lark", "aiosmtpd", "pyjwt")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(zf: zipfile.ZipFile) -> list[str]:
    return [i.filename for i in zf.infolist()]


def test_bundle_holds_main_the_package_and_requirements(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        names = _names(zf)
        assert zf.read("main.py") == (ROOT / "functions" / "main.py").read_bytes()
        assert "hitl/__init__.py" in names and "hitl/settings.py" in names
        # the runtime package whole: every source, template and marker file, nothing left out
        package = sorted(
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / "hitl").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
        assert [n for n in names if n.startswith("hitl/")] == package
        assert "hitl/edges/templates/page_decision.html" in names and "hitl/py.typed" in names
        for name in names:
            assert "__pycache__" not in name and not name.endswith(".pyc")
            assert name == "main.py" or name == "requirements.txt" or name.startswith("hitl/"), name


def test_requirements_are_the_runtime_pins_of_the_lock(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        lines = [
            line for line in zf.read("requirements.txt").decode().splitlines() if line and not line.startswith("#")
        ]
    lock = {line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    assert set(lines) <= lock, sorted(set(lines) - lock)
    pinned = {_canonical(line.split("==")[0]) for line in lines}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        name = _canonical(re.match(r"[A-Za-z0-9._-]+", spec).group(0))
        assert name in pinned, f"runtime dependency {name} is missing"
    for tool in DEV_TOOLS:
        assert tool not in pinned, f"dev tool {tool} is in the functions' requirements"


def test_bundle_is_reproducible(bundle: Path, tmp_path: Path, bundle_functions: Callable[..., None]) -> None:
    again = tmp_path / "again.zip"
    bundle_functions("--out", str(again))
    assert again.read_bytes() == bundle.read_bytes()
    with zipfile.ZipFile(bundle) as zf:
        names = _names(zf)
        assert names == sorted(names)
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) == 0o100644


def _imports(source: str, module: str) -> set[str]:
    """Modules of the hitl package a file imports (any depth: lazy imports count)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{a.name}" for a in node.names)
    return {m for m in found if m == "hitl" or m.startswith("hitl.")}


def test_everything_main_imports_from_hitl_is_bundled(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        files = {n: zf.read(n) for n in _names(zf)}

    def module_file(mod: str) -> str | None:
        path = mod.replace(".", "/")
        for candidate in (f"{path}.py", f"{path}/__init__.py"):
            if candidate in files:
                return candidate
        return None

    todo = [("main", files["main.py"].decode())]
    seen: set[str] = set()
    while todo:
        module, source = todo.pop()
        for imported in _imports(source, module):
            if imported in seen:
                continue
            seen.add(imported)
            target = module_file(imported)
            if target is None:
                # `from hitl import x` names x, which may be an attribute rather than a module.
                parent = imported.rsplit(".", 1)[0]
                assert module_file(parent), f"{module} imports {imported}, which is not in the bundle"
                continue
            todo.append(
                (imported if not target.endswith("__init__.py") else imported + ".__init__", files[target].decode())
            )


def test_entry_points_are_top_level_functions(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        tree = ast.parse(zf.read("main.py"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    if not {"start", "unblock"} <= defined:
        pytest.xfail("entry points land with the approvals work")
    assert {"start", "unblock"} <= defined


def test_requirements_option_writes_the_same_pins(
    bundle: Path, tmp_path: Path, bundle_functions: Callable[..., None]
) -> None:
    out = tmp_path / "req.txt"
    bundle_functions("--requirements", str(out))
    with zipfile.ZipFile(bundle) as zf:
        assert zf.read("requirements.txt") == out.read_bytes()
