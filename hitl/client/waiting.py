"""Waiting for a promise to settle: the server tells the waiter, which does not ask over and over.

A waiter opens a poll stream of its own (``GET /poll/hitl-waiters/<random id>``,
a :class:`~hitl.client.polling.PollSource`), registers a listener on the
promise for that stream's address (``poll://uni@hitl-waiters/<id>``), and wakes
when the server pushes the promise's ``unblock``. While it waits the server
holds one open stream and one listener address on the promise, both gone when
the promise settles or the waiter leaves: no request per second per waiter.

A push is not guaranteed: the server never sends an ``unblock`` twice, so a
server restart, or a second server instance during a deploy, can lose it. The
waiter therefore also reads the promise every :data:`RECHECK_SECONDS`, so a lost
push costs at most that much delay; when the stream cannot open at all (the
real server refuses streams past 1,000), those reads are all it does.

The edges import this module only when a caller asks to wait: it loads aiohttp
(~200 ms), which no other function request needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable

from resonate.promises import Promises
from resonate.types import PromiseRecord

from hitl.client.polling import PollSource
from hitl.settings import ResonateSettings

#: The group waiters' streams join (no worker polls it; each waiter is addressed alone).
WAITERS_GROUP = "hitl-waiters"
#: How often a waiter reads the promise itself, in case a push was lost.
RECHECK_SECONDS = 10.0
#: Longest life of one stream (a longer wait reopens it, as the worker's does).
SESSION_SECONDS = 240.0
#: How long a waiter gives its stream to open before it relies on reads alone.
STREAM_OPENS_WITHIN = 3.0

Get = Callable[[str], Awaitable[PromiseRecord]]


async def until_settled(
    promises: Promises,
    settings: ResonateSettings,
    promise_id: str,
    *,
    seconds: float,
    get: Get | None = None,
    recheck: float = RECHECK_SECONDS,
    listening: asyncio.Event | None = None,
) -> PromiseRecord:
    """The promise once it settled, or as it stands after ``seconds``.

    ``get`` reads the promise (default ``promises.get``; the edges pass one bounded by
    their server timeout). ``listening`` is set once the server will push the settle
    (the listener is registered on an open stream). Errors of the reads propagate; the
    stream's are absorbed.
    """
    read = get or promises.get
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    pushed = asyncio.Event()
    source = PollSource(
        settings.url, group=WAITERS_GROUP, pid=uuid.uuid4().hex, token=settings.token,
        session_timeout=min(seconds + STREAM_OPENS_WITHIN + 5, SESSION_SECONDS),
    )  # fmt: skip
    source.recv(lambda data: pushed.set() if _unblocks(data, promise_id) else None)
    await source.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(source.connected.wait(), min(STREAM_OPENS_WITHIN, seconds))
        record = await read(promise_id)
        if record.state != "pending":
            return record
        if source.connected.is_set():
            try:
                registered = await promises.sender.promise_register_listener(promise_id, source.unicast())
            except Exception:  # no listener: the reads below still see the settle
                registered = record
            if registered.state != "pending":  # it settled between the read and the registration
                return await read(promise_id)
            if listening is not None:
                listening.set()
        while (left := ends - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pushed.wait(), min(left, recheck))
            record = await read(promise_id)
            if record.state != "pending":
                return record
        return record
    finally:
        await source.stop()


def _unblocks(data: str, promise_id: str) -> bool:
    """Whether a pushed frame says ``promise_id`` settled."""
    try:
        message = json.loads(data)
        return bool(message.get("kind") == "unblock" and message["data"]["promise"]["id"] == promise_id)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
