"""Waiting for a promise (hitl.client.waiting) against the local server over real sockets:
woken by the pushed unblock, not by its own re-reads; still right when no push can come."""

from __future__ import annotations

import asyncio
import time

from resonate.types import PromiseRecord, Value

from devstack.stack import LocalServerProc
from hitl.client.sendonly import send_only
from hitl.client.waiting import until_settled
from hitl.settings import ResonateSettings

from .conftest import HOUR_MS, now_ms, uid


def test_the_pushed_unblock_wakes_the_waiter(localserver: LocalServerProc) -> None:
    async def scenario() -> tuple[str, float]:
        settings = ResonateSettings(url=localserver.url)
        client, settler = send_only(settings), send_only(settings)
        id = uid("wait")
        try:
            await client.promises.create(id, now_ms() + HOUR_MS, Value(), {})
            # re-reads every 60 s: only the push can end this wait within the test
            listening = asyncio.Event()
            waiter = asyncio.create_task(
                until_settled(client.promises, settings, id, seconds=30, recheck=60, listening=listening)
            )
            await asyncio.wait_for(listening.wait(), 10)
            t0 = time.monotonic()
            await settler.promises.resolve(id, Value(data={"ok": True}))
            record = await asyncio.wait_for(waiter, 10)
            return record.state, time.monotonic() - t0
        finally:
            await client.close()
            await settler.close()

    state, took = asyncio.run(scenario())
    assert state == "resolved" and took < 5


def test_a_waiter_without_a_stream_still_sees_the_settle(localserver: LocalServerProc) -> None:
    """A group name no stream can take (the server refuses it): the re-reads alone end the wait."""

    async def scenario() -> tuple[str, int]:
        settings = ResonateSettings(url=localserver.url)
        client = send_only(settings)
        id = uid("wait")
        reads: list[str] = []
        first_read = asyncio.Event()

        async def read(promise_id: str) -> PromiseRecord:
            record = await client.promises.get(promise_id)
            reads.append(record.state)
            first_read.set()
            return record

        try:
            await client.promises.create(id, now_ms() + HOUR_MS, Value(), {})
            waiter = asyncio.create_task(
                until_settled(client.promises, ResonateSettings(url=localserver.url + "/nowhere"), id, seconds=20,
                              get=read, recheck=0.5)
            )  # fmt: skip
            await asyncio.wait_for(first_read.wait(), 10)  # it has found the promise pending
            await client.promises.resolve(id, Value(data=1))
            return (await asyncio.wait_for(waiter, 10)).state, len(reads)
        finally:
            await client.close()

    state, reads = asyncio.run(scenario())
    assert state == "resolved" and reads >= 2  # a later read, not a push, ended the wait


def test_an_already_settled_promise_returns_at_once(localserver: LocalServerProc) -> None:
    async def scenario() -> float:
        settings = ResonateSettings(url=localserver.url)
        client = send_only(settings)
        id = uid("wait")
        try:
            await client.promises.create(id, now_ms() + HOUR_MS, Value(), {})
            await client.promises.resolve(id, Value(data=1))
            t0 = time.monotonic()
            await until_settled(client.promises, settings, id, seconds=30, recheck=60)
            return time.monotonic() - t0
        finally:
            await client.close()

    assert asyncio.run(scenario()) < 5
