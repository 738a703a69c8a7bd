"""Run the local server under cProfile timed in CPU time (not wall time), for ``bench/run.py``.

    python bench/profile_server.py PROF [devstack.localserver arguments...]

The stats are written to PROF when the server stops (SIGTERM), and the time
spent in the cyclic garbage collector (which cProfile does not see) is
printed to stderr, per generation. CPU time of the main thread is what the
figures mean: a wall-clock profile on a busy 2-core machine charges the time
the process was descheduled to whatever call happened to be running
(typically ``socket.send``, which wakes the peer).
"""

from __future__ import annotations

import cProfile
import gc
import sys
import time
from typing import Any

from devstack.localserver.__main__ import main

_gc = {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "collected": [0, 0, 0]}
_gc_start = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start[0] = time.thread_time()
    else:
        g = info["generation"]
        _gc["count"][g] += 1
        _gc["seconds"][g] += time.thread_time() - _gc_start[0]
        _gc["collected"][g] += info["collected"]


if __name__ == "__main__":
    gc.callbacks.append(_on_gc)
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    try:
        main(sys.argv[2:])
    finally:
        prof.disable()
        prof.dump_stats(sys.argv[1])
        total = time.thread_time()
        print(f"gc: {_gc} of {total:.3f} s thread CPU", file=sys.stderr, flush=True)
