"""hitl.client.polling.OriginHeartbeat: one task.heartbeat per origin, every interval, none on start.

No sockets and no real time: the sender records, the sleeper is a gate the test opens.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hitl.client.polling import OriginHeartbeat


class Sender:
    def __init__(self) -> None:
        self.beats: list[tuple[str, list[tuple[str, int]]]] = []

    async def task_heartbeat(self, pid: str, refs: list[Any]) -> None:
        self.beats.append((pid, [(r.id, r.version) for r in refs]))


class Gate:
    """A sleeper that returns when the test lets one nap end."""

    def __init__(self) -> None:
        self.naps: list[float] = []
        self._open = asyncio.Semaphore(0)

    async def __call__(self, seconds: float) -> None:
        self.naps.append(seconds)
        await self._open.acquire()

    async def end_nap(self) -> None:
        self._open.release()
        for _ in range(5):
            await asyncio.sleep(0)


async def run() -> tuple[Sender, Gate, OriginHeartbeat]:
    sender, gate = Sender(), Gate()
    hb = OriginHeartbeat("pid", interval=30.0, sender=sender, sleeper=gate)  # type: ignore[arg-type]
    return sender, gate, hb


def test_no_beat_when_a_task_starts_then_one_per_origin_each_interval() -> None:
    async def scenario() -> None:
        sender, gate, hb = await run()
        hb.start("a", 1)
        hb.start("a:r0.expiry", 1)  # same origin as "a": one request for both
        hb.start("b", 3)
        for _ in range(5):
            await asyncio.sleep(0)
        assert sender.beats == []  # the acquire just set these leases
        assert gate.naps == [30.0]
        await gate.end_nap()
        assert sorted(sender.beats) == [("pid", [("a", 1), ("a:r0.expiry", 1)]), ("pid", [("b", 3)])]
        hb.stop("a")
        hb.stop("a:r0.expiry")
        await gate.end_nap()
        assert sender.beats[-1] == ("pid", [("b", 3)]) and len(sender.beats) == 3
        hb.stop("b")  # nothing left: the loop ends
        await gate.end_nap()
        assert len(sender.beats) == 3

    asyncio.run(scenario())
