"""What both benchmark drivers do the same way: read the server's records, poll, let the CPU settle.

- :class:`RawServer`: the local server's own protocol spoken directly (a run's
  task state; the SDK clients do not show it), and waiting for a run to suspend;
- :func:`poll_until`: an async poll with a deadline (``devstack.stack.wait_until``
  is the synchronous one); an exception from the check is not retried;
- :func:`cpu_ms_per_s` and :func:`settle`: CPU use of processes over a window,
  and waiting until it is quiet before a measurement.

Section 1 (``bench/run.py``) and the hitl-stack sections (``bench/full_stack.py``) use them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from devstack.localserver.engine import PROTOCOL_VERSION
from devstack.procstats import cpu_s


async def poll_until[T](check: Callable[[], Awaitable[T]], *, timeout: float, interval: float, what: str) -> T:
    """Await ``check`` until it returns something truthy (``interval`` seconds apart); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class RawServer:
    """Requests to the local server at ``url`` in its own protocol, over the driver's ``http`` session."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def raw(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        body = {"kind": kind, "head": {"corrId": uuid.uuid4().hex, "version": PROTOCOL_VERSION}, "data": data}
        async with self.http.post(self.url + "/", json=body) as resp:
            out = await resp.json()
            return resp.status, out["data"]

    async def task_state(self, id: str) -> str | None:
        status, data = await self.raw("task.get", {"id": id})
        return data["task"]["state"] if status == 200 else None

    async def wait_suspended(self, id: str, timeout: float = 30.0, interval: float = 0.001) -> None:
        """Until ``id``'s task is suspended (the run waits, no worker holds it); ``interval`` 0: a tight loop."""

        async def suspended() -> bool:
            return await self.task_state(id) == "suspended"

        await poll_until(suspended, timeout=timeout, interval=interval, what=f"{id} to suspend")


async def cpu_ms_per_s(pids: list[int], seconds: float) -> float:
    """CPU (ms per s) ``pids`` use together over the next ``seconds``."""
    c0 = cpu_s(pids)
    await asyncio.sleep(seconds)
    return (cpu_s(pids) - c0) / seconds * 1000


async def settle(pids: list[int], max_s: float, *, window_s: float, below_ms_per_s: float, windows: int = 1) -> float:
    """Wait until ``pids`` use under ``below_ms_per_s`` CPU in ``windows`` windows of ``window_s`` in a row,
    ``max_s`` at the most; return the seconds waited.

    Before a CPU measurement: after a burst the server goes on working on its
    own for a while, which would be charged to whatever is measured next.
    """
    t0, quiet = time.perf_counter(), 0
    while quiet < windows and time.perf_counter() - t0 < max_s:
        quiet = quiet + 1 if await cpu_ms_per_s(pids, window_s) < below_ms_per_s else 0
    return time.perf_counter() - t0


#: Calls :func:`measured_runs` makes before it measures (CPU read around it counts them too).
WARM_UPS = 3


async def measured_runs[T](
    one: Callable[[str], Awaitable[T]], runs: int, name: str, progress: Callable[[str], None]
) -> list[T]:
    """``one(workflow_id)`` :data:`WARM_UPS` times to warm up, then ``runs`` times measured; a line every 25."""
    for i in range(WARM_UPS):
        await one(f"warm-{name}-{i}-{uuid.uuid4().hex[:8]}")
    rows = []
    for i in range(runs):
        rows.append(await one(f"{name}-{uuid.uuid4().hex[:12]}"))
        if (i + 1) % 25 == 0:
            progress(f"{name} run {i + 1}/{runs}")
    return rows
