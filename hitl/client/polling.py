"""The worker's Resonate client: it long-polls its group and runs what arrives.

- :func:`polling` builds it: requests over the SDK's aiohttp connection, plus
  :class:`PollSource`, a long-poll listener that never gives up (the SDK's own
  ``SSEConnection`` ends for good when aiohttp's 300 s session timeout fires),
  and :class:`OriginHeartbeat`.

It always names the server explicitly: with no URL the SDK would silently run
everything in-process, which must never happen here. The edges (functions,
CLI) use :mod:`hitl.client.sendonly` instead, which keeps aiohttp off their path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import aiohttp
from resonate.connections.http import HttpConnection
from resonate.connections.sse import SseFramer, resolve_target, unicast
from resonate.ids import origin_of
from resonate.resonate import Resonate
from resonate.retry import ExponentialBackoff
from resonate.send import Sender, TaskRef
from resonate.transport import Transport

from hitl.settings import ResonateSettings

logger = logging.getLogger("hitl.client.polling")


def polling(
    settings: ResonateSettings, *, ttl: timedelta, sse_timeout: float, pid: str | None = None
) -> tuple[Resonate, PollSource]:
    """The worker's client, which long-polls ``settings.group`` and runs what arrives, and
    its poll source (whose ``connected`` the worker's readiness check reads).

    Must be called inside a running event loop (it starts at once).
    """
    pid = pid or uuid.uuid4().hex
    source = PollSource(settings.url, group=settings.group, pid=pid, token=settings.token, session_timeout=sse_timeout)
    network = HttpConnection(url=settings.url, auth=settings.token)
    heartbeat = OriginHeartbeat(
        pid, interval=ttl.total_seconds() / 2, sender=Sender(Transport(network), settings.token)
    )
    resonate = Resonate(
        network=network,
        sources=[source],
        group=settings.group,
        pid=pid,
        ttl=ttl,
        token=settings.token,
        heartbeat=heartbeat,
    )
    return resonate, source


class OriginHeartbeat:
    """Keeps the leases of the tasks a worker runs alive: one ``task.heartbeat`` per origin.

    The SDK's own heartbeat sends every task in one request, but the server
    refuses a batch whose tasks belong to different workflows (400 "All tasks
    must belong to the same origin") and extends none of them: with two
    workflows running at once on a worker, every lease would lapse and its
    step (an email) run again. Implements :class:`resonate.heartbeat.Heartbeat`.
    """

    def __init__(
        self,
        pid: str,
        *,
        interval: float,
        sender: Sender,
        sleeper: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._pid = pid
        self._interval = interval
        self._sender = sender
        self._sleeper = sleeper
        self.active: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, task_id: str, task_version: int) -> None:
        self.active[task_id] = task_version
        if self._task is None:
            self._task = asyncio.create_task(self._beat())

    def stop(self, task_id: str) -> None:
        self.active.pop(task_id, None)
        if not self.active:
            self.shutdown()

    def shutdown(self) -> None:
        self.active.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _beat(self) -> None:
        # Sleep first: the acquire that started a task set its lease, so a beat now would
        # only cost a request per execution (two per approval cycle, measured).
        while True:
            await self._sleeper(self._interval)
            by_origin: dict[str, list[TaskRef]] = {}
            for id, version in list(self.active.items()):
                by_origin.setdefault(origin_of(id), []).append(TaskRef(id=id, version=version))
            results = await asyncio.gather(
                *(self._sender.task_heartbeat(self._pid, refs) for refs in by_origin.values()), return_exceptions=True
            )
            for failed in (r for r in results if isinstance(r, Exception)):
                logger.warning("heartbeat failed", extra={"fields": {"error": str(failed)}})


class PollSource:
    """A ``poll://`` :class:`~resonate_base.connections.Source` that keeps listening forever.

    Each connection lives at most ``session_timeout`` seconds and is then
    reopened at once; any error, clean end or timeout reconnects (with
    backoff only after failures). This is what lets a worker idle for hours
    still pick up new work, and reconnect by itself when the server restarts.
    """

    def __init__(
        self,
        url: str,
        *,
        group: str,
        pid: str,
        token: str | None = None,
        session_timeout: float = 240.0,
        backoff: ExponentialBackoff | None = None,
        sleeper: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._url = f"{url.rstrip('/')}/poll/{group}/{pid}"
        self._group = group
        self._unicast = unicast(group, pid)
        self._headers = {"Accept": "text/event-stream"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session_timeout = session_timeout
        self._backoff = backoff or ExponentialBackoff(initial=0.5, max_delay=10.0)
        self._sleeper = sleeper
        self._callbacks: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        #: Set while a stream is open (the worker's health check reads it).
        self.connected = asyncio.Event()
        #: How many times a stream was opened (tests read it).
        self.connections = 0

    def unicast(self) -> str:
        return self._unicast

    def resolve_target(self, target: str) -> str:
        return resolve_target(target)

    def recv(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._callbacks.clear()

    async def _listen(self) -> None:
        failures = 0
        timeout = aiohttp.ClientTimeout(total=self._session_timeout, sock_connect=10)
        while True:
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(self._url, headers=self._headers) as resp,
                ):
                    if resp.status != 200:
                        raise ConnectionError(f"poll answered {resp.status}")
                    failures = 0
                    self.connections += 1
                    self.connected.set()
                    framer = SseFramer()
                    async for chunk in resp.content.iter_any():
                        for data in framer.feed(chunk):
                            for callback in list(self._callbacks):
                                callback(data)
                logger.debug("poll stream ended; reconnecting")
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                logger.debug("poll stream reached its session timeout; reconnecting")
            except Exception as exc:  # any failure: reconnect after a backoff
                self.connected.clear()
                delay = self._backoff.delay(failures)
                failures += 1
                logger.warning("poll stream failed; reconnecting", extra={"error": str(exc), "backoff_s": delay})
                await self._sleeper(delay)
            finally:
                self.connected.clear()
