"""Run the local server under tracemalloc, for the memory breakdown of ``bench/run.py``.

    python bench/server_mem.py OUT.json [devstack.localserver arguments...]

tracemalloc starts before anything is imported (one frame per allocation, so
the sites are the lines that allocated). On SIGUSR1 the server writes
``OUT.json`` (atomically, via a temp file) and goes on serving:

- ``top_lines``: the 200 allocation sites holding the most memory, by line;
- ``top_files``: the same grouped by file;
- ``traced_bytes``: everything traced, and tracemalloc's own overhead;
- ``objects``: how many ``engine.Promise`` / ``engine.Task`` objects the engine
  holds, and their deep size in bytes (each object with what only it
  references: its dicts, sets and strings; an object shared with an earlier
  one is counted once), split by attribute, averaged over a sample of them;
- ``engine``: the engine's own containers (``promises``, ``tasks``,
  ``_branches``, ``_timers``, ...) with their length and deep size beyond the
  Promise and Task objects.

The dump itself blocks the server for a few seconds at 10,000 waiting requests.
"""

from __future__ import annotations

import tracemalloc

tracemalloc.start(1)

import gc
import json
import linecache
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from devstack.localserver import engine as engine_mod
from devstack.localserver.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
_SKIP = (tracemalloc.__file__, linecache.__file__, __file__)


def _short(path: str) -> str:
    for prefix in (
        str(ROOT) + "/",
        sys.prefix + "/lib/python3.12/site-packages/",
        sys.base_prefix + "/lib/python3.12/",
    ):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


#: str value -> id of the first object seen with it; bytes of later equal strings (other objects).
_first_str: dict[str, int] = {}
_dup = [0]


def deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes of ``obj`` and what it references that ``seen`` does not hold yet (then added to it).

    Strings equal to one seen before but another object are added to ``_dup``:
    memory that interning would save.
    """
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or o is None or isinstance(o, (bool, type)):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if type(o) is str:
            if _first_str.setdefault(o, id(o)) != id(o):
                _dup[0] += sys.getsizeof(o)
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif hasattr(type(o), "__slots__") and not isinstance(o, (str, bytes, int, float)):
            stack.extend(getattr(o, s) for s in type(o).__slots__ if hasattr(o, s))
    return total


#: Deep sizes are averaged over a sample of about this many objects (every k-th): walking
#: all 70,000 under tracemalloc takes longer than the rest of the dump.
SAMPLE = 3000


def _objects(found: list[Any], kind: type, seen: set[int]) -> dict[str, Any]:
    slots = list(kind.__slots__)
    sample = found[:: max(1, len(found) // SAMPLE)]
    dup0 = _dup[0]
    by_attr = dict.fromkeys(["<object>", *slots], 0)
    for o in sample:
        seen.add(id(o))
        by_attr["<object>"] += sys.getsizeof(o)
        for s in slots:
            by_attr[s] += deep_size(getattr(o, s), seen)
    n = max(len(sample), 1)
    states: dict[str, int] = {}
    for o in found:
        states[o.state] = states.get(o.state, 0) + 1
    return {
        "count": len(found),
        "sampled": len(sample),
        "states": states,
        "bytes_per_object": sum(by_attr.values()) / n,
        "bytes_per_object_by_attr": {k: v / n for k, v in by_attr.items()},
        "duplicate_str_bytes_per_object": (_dup[0] - dup0) / n,
    }


def _container(value: Any, seen: set[int]) -> int:
    """Deep size of an engine container beyond what ``seen`` holds, from a sample of its items."""
    items = list(value.items()) if isinstance(value, dict) else [(x,) for x in value]
    sample = items[:: max(1, len(items) // SAMPLE)]
    seen.add(id(value))
    part = sum(deep_size(x, seen) for pair in sample for x in pair)
    return sys.getsizeof(value) + int(part * len(items) / max(len(sample), 1))


def summary() -> dict[str, Any]:
    t0 = time.perf_counter()
    snap = tracemalloc.take_snapshot()  # no filter_traces: a Python loop over every trace, a minute at 10,000 waiting
    traced, peak = tracemalloc.get_traced_memory()
    lines = []
    by_file: dict[str, list[int]] = {}
    stats = [st for st in snap.statistics("lineno") if st.traceback[0].filename not in _SKIP]
    for st in stats:
        acc = by_file.setdefault(_short(st.traceback[0].filename), [0, 0])
        acc[0] += st.size
        acc[1] += st.count
    for st in stats[:200]:
        fr = st.traceback[0]
        lines.append(
            {
                "site": f"{_short(fr.filename)}:{fr.lineno}",
                "code": linecache.getline(fr.filename, fr.lineno).strip()[:100],
                "bytes": st.size,
                "blocks": st.count,
            }
        )
    files = [{"file": f, "bytes": b, "blocks": c} for f, (b, c) in sorted(by_file.items(), key=lambda x: -x[1][0])[:10]]
    del snap, stats
    t_snap = time.perf_counter() - t0
    engines = [o for o in gc.get_objects() if type(o) is engine_mod.Engine]
    seen: set[int] = set()
    _first_str.clear()
    _dup[0] = 0
    objects: dict[str, Any] = {}
    containers: dict[str, Any] = {}
    if engines:
        eng = engines[0]
        objects["Promise"] = _objects(list(eng.promises.values()), engine_mod.Promise, seen)
        objects["Task"] = _objects(list(eng.tasks.values()), engine_mod.Task, seen)
        # The Promise and Task objects themselves are not sampled into ``seen`` beyond the sample:
        # mark them all so the containers count only their own structure (keys, sets, tuples).
        # So are their ids and tag values, which the indexes share (promises' keys, _branches, _timers).
        for p in eng.promises.values():
            seen.add(id(p))
            seen.add(id(p.id))
            seen.update(map(id, p._tags[1:]))  # noqa: SLF001 - the memory breakdown reads the engine's own fields
        for t in eng.tasks.values():
            seen.add(id(t))
            seen.add(id(t.id))
        for name, value in vars(eng).items():
            if isinstance(value, (dict, list, set)):
                containers[name] = {"len": len(value), "bytes": _container(value, seen)}
    return {
        "traced_bytes": traced,
        "traced_peak_bytes": peak,
        "tracemalloc_overhead_bytes": tracemalloc.get_tracemalloc_memory(),
        "top_lines": lines,
        "top_files": files,
        "objects": objects,
        "engine": containers,
        "dump_seconds": time.perf_counter() - t0,
        "snapshot_seconds": t_snap,
    }


def _on_usr1(out: Path) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary(), indent=1))
    os.replace(tmp, out)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    signal.signal(signal.SIGUSR1, lambda signum, frame: _on_usr1(out))
    main(sys.argv[2:])
