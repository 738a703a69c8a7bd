"""CPU time and memory of local processes, read from ``/proc`` (Linux).

The benchmark (``bench/``) and the load tests (``tests/load``) both charge CPU
seconds and resident memory to the stack's processes; this is the one reader
of ``/proc`` they share (here, because tests must not import the benchmark
nor the benchmark the tests, and both already import ``devstack``).
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = proc_stat(pid)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_s(pids: list[int]) -> float:
    """utime + stime of ``pids`` together in seconds (a process gone meanwhile counts 0)."""
    total = 0.0
    for p in pids:
        try:
            total += sum(cpu_times(p))
        except OSError:
            continue
    return total


def rss_kib(pids: list[int]) -> int:
    """Resident memory of ``pids`` together, in KiB."""
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (functions-framework forks a gunicorn worker)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(int(proc_stat(int(d))[1]), []).append(int(d))
            except (OSError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out
