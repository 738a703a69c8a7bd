#!/usr/bin/env python3
"""Build the source zip Cloud Run functions deploys ``start`` and ``unblock`` from.

    .venv/bin/python scripts/bundle_functions.py --out build/functions.zip

The zip holds:

* ``main.py``: a copy of ``functions/main.py`` (the runtime looks for main.py);
* ``hitl/``: the runtime package, whole (development tools live in ``devstack/``);
* ``requirements.txt``: the runtime dependencies of ``pyproject.toml`` and
  everything they pull in, pinned as in ``requirements.lock`` (no test tools).

The bundle is reproducible: sorted entries, fixed timestamps and modes, and
stored (not deflated) so no zlib version changes its bytes. Its hash changes
only when its content does, and Terraform names the uploaded object after it.

``--requirements PATH`` writes only the runtime requirements (worker/Dockerfile
uses it). Run it with the project's virtualenv: the dependency tree is read
from the installed packages' metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: 1980-01-01, the earliest time a zip entry can carry.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


class BundleError(Exception):
    pass


def canonical(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``requirements.lock`` as {canonical name: pinned line}."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if not match:
            raise BundleError(f"{path.name}: not an exact pin: {raw!r}")
        pins[canonical(match.group(1))] = f"{match.group(1)}=={match.group(2)}"
    return pins


def runtime_requirements(pyproject: Path, lock: Path) -> list[str]:
    """Pinned lines for the runtime dependencies and their transitive closure."""
    from packaging.requirements import Requirement

    project = tomllib.loads(pyproject.read_text())["project"]
    pins = read_lock(lock)
    seen: set[str] = set()
    # (requirement, extras requested by whoever required it)
    todo: list[tuple[Requirement, frozenset[str]]] = [
        (Requirement(spec), frozenset()) for spec in project.get("dependencies", [])
    ]
    closure: set[str] = set()
    while todo:
        req, parent_extras = todo.pop()
        if req.marker is not None:
            envs = [{"extra": e} for e in parent_extras] or [{"extra": ""}]
            if not any(req.marker.evaluate(env) for env in envs):
                continue
        name = canonical(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        closure.add(name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise BundleError(
                f"{req.name} is not installed: run this script with the project's "
                "virtualenv (.venv/bin/python, after `make bootstrap`)"
            ) from None
        todo.extend((Requirement(spec), frozenset(req.extras)) for spec in dist.requires or [])
    missing = sorted(closure - pins.keys())
    if missing:
        raise BundleError(f"not pinned in {lock.name}: {', '.join(missing)} (run `make lock`)")
    return [pins[name] for name in sorted(closure)]


def bundle_files(root: Path) -> dict[str, bytes]:
    """{archive name: content} of everything that goes into the zip, but requirements.txt."""
    files = {"main.py": (root / "functions" / "main.py").read_bytes()}
    package = root / "hitl"
    for path in sorted(package.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(package).as_posix()
        parts = rel.split("/")
        if "__pycache__" in parts or any(p.startswith(".") for p in parts):
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        files[f"hitl/{rel}"] = path.read_bytes()
    return files


def write_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, entries[name])
    return buffer.getvalue()


def build(root: Path = ROOT) -> tuple[bytes, list[str]]:
    """The zip's bytes and its requirements lines."""
    requirements = runtime_requirements(root / "pyproject.toml", root / "requirements.lock")
    entries = bundle_files(root)
    entries["requirements.txt"] = requirements_text(requirements).encode()
    return write_zip(entries), requirements


def requirements_text(lines: Iterable[str]) -> str:
    header = "# Generated by scripts/bundle_functions.py from pyproject.toml and requirements.lock.\n"
    return header + "".join(f"{line}\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the functions zip here")
    parser.add_argument("--requirements", type=Path, help="write the runtime requirements here")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None and args.requirements is None:
        parser.error("give --out and/or --requirements")
    try:
        if args.out is not None:
            data, requirements = build(args.root)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            print(f"{args.out}: {len(data)} bytes, sha256 {digest}")
        else:
            requirements = runtime_requirements(args.root / "pyproject.toml", args.root / "requirements.lock")
        if args.requirements is not None:
            args.requirements.parent.mkdir(parents=True, exist_ok=True)
            args.requirements.write_text(requirements_text(requirements))
            print(f"{args.requirements}: {len(requirements)} pins")
    except (BundleError, OSError) as exc:
        print(f"bundle_functions: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
