"""Figures from samples (nearest-rank percentiles, summaries) and a bounded gather, for the benchmark scripts.

The ``/proc`` readers are :mod:`devstack.procstats` (the load tests use them too).
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Awaitable, Callable
from typing import Any


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
