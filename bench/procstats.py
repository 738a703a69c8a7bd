"""Statistics, /proc readers and concurrency helpers shared by the benchmark scripts."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(math.ceil(q / 100 * len(s)) - 1, 0)]


def summary(values: list[float], unit: str) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "p99": pct(values, 99),
        "min": min(values),
        "n": len(values),
        "unit": unit,
    }


async def bounded(n: int, concurrency: int, make: Callable[[int], Awaitable[None]]) -> None:
    """Run ``make(0) .. make(n-1)`` with at most ``concurrency`` in flight."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))


# -- /proc ----------------------------------------------------------------------------------------


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
