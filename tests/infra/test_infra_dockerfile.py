"""worker/Dockerfile and the build context, read as text (no Docker engine needed)."""

from __future__ import annotations

import json
import re

import pytest
from infra_helpers import ROOT, Instruction, dockerfile, stages

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|clang|make|cmake|rustc|cargo|python3-dev)\b")


def _args() -> dict[str, str]:
    return dict(i.arg.split("=", 1) for i in dockerfile() if i.op == "ARG" and "=" in i.arg)


def _final() -> list[Instruction]:
    return stages(dockerfile())[-1]


def _base_images() -> list[str]:
    out = []
    for ins in dockerfile():
        if ins.op == "FROM":
            image = ins.arg.split()[0]
            for name, value in _args().items():
                image = image.replace("${" + name + "}", value)
            out.append(image)
    return out


def test_base_is_python_312_slim_pinned_by_tag() -> None:
    images = _base_images()
    assert images
    for image in images:
        m = re.fullmatch(r"python:(3\.12(?:\.\d+)?-slim(?:-[a-z]+)?)(@sha256:[a-f0-9]{64})?", image)
        assert m, f"base image {image!r} is not a pinned python:3.12-slim tag"
        assert "latest" not in image


def test_runs_as_non_root() -> None:
    users = [i.arg for i in _final() if i.op == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # USER comes after the last COPY/RUN so the app files stay root-owned and read-only.
    ops = [i.op for i in _final()]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op in ("COPY", "RUN"))


def test_dependencies_come_from_the_lock_exactly() -> None:
    text = " ".join(i.arg for i in dockerfile() if i.op in ("RUN", "COPY"))
    assert "requirements.lock" in text
    installs = [i.arg for i in dockerfile() if i.op == "RUN" and "pip install" in i.arg]
    assert installs
    for run in installs:
        for part in run.split("&&"):
            if "pip install" in part:
                assert "--no-deps" in part, f"resolves dependencies instead of taking the pins: {part}"
                assert "-r " in part, part
    assert any("pip check" in i.arg for i in dockerfile() if i.op == "RUN")
    assert any("bundle_functions.py --requirements" in i.arg for i in dockerfile() if i.op == "RUN")


def test_no_build_tools_in_the_image() -> None:
    for ins in dockerfile():
        if ins.op == "RUN":
            assert not BUILD_TOOLS.search(ins.arg), ins.arg
            if "pip install" in ins.arg:
                assert "--only-binary=:all:" in ins.arg, "wheels only: nothing compiles"
    final = _final()
    assert not any(i.op == "RUN" and "apt-get install" in i.arg for i in final)
    copies = [i.arg for i in final if i.op == "COPY" and i.arg.startswith("--from=")]
    assert copies == ["--from=deps /opt/venv /opt/venv"], "only the virtualenv comes from the deps stage"


def test_runs_the_worker_module_from_a_workdir_with_hitl_and_worker() -> None:
    final = _final()
    (cmd,) = [i.arg for i in final if i.op == "CMD"]
    assert json.loads(cmd) == ["python", "-m", "worker.main"]
    assert not [i for i in final if i.op == "ENTRYPOINT"]
    (workdir,) = [i.arg for i in final if i.op == "WORKDIR"]
    copies = [i.arg.split() for i in final if i.op == "COPY" and not i.arg.startswith("--")]
    destinations = {dst.rstrip("/"): src.rstrip("/") for src, dst in copies}
    assert destinations.get("hitl") == "hitl" and destinations.get("worker") == "worker"
    assert workdir == "/app"
    if not (ROOT / "worker" / "main.py").exists():
        pytest.xfail("worker/main.py lands with the worker work")
    assert (ROOT / "worker" / "__init__.py").exists()


def test_build_context_allows_what_is_copied_and_nothing_secret() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for ins in dockerfile():
        if ins.op == "COPY" and not ins.arg.startswith("--from"):
            *sources, _ = ins.arg.split()
            for src in sources:
                assert src.rstrip("/") in allowed, f"COPY {src} is excluded by .dockerignore"
    for forbidden in (".venv", ".git", "state", "infra", "tests", ".env"):
        assert forbidden not in allowed
