"""The callers' section of ``make bench``: how fast a decision reaches whoever asked, and what waiting costs.

- :func:`delivery_latency`: one request at a time, each naming a caller's promise
  and a webhook (a receiver in this process) in ``on_decision``: from the
  approver's POST returned to the run's result settled (the resume, as in the
  latency section), to the caller's promise settled (pushed to a listener), and
  to the webhook's event received.
- :func:`start_cost`: what ``start`` costs with 0, 1 and 2 promise targets (each read and
  claimed before the run exists): the POST's round trip, the server's and the function's CPU;
- :func:`waiting_cost`: N callers waiting on N pending requests through ``start``,
  first with the long poll (``GET ?workflow_id=&wait=60``: the server pushes the
  end), then polling the status once a second, as a caller without it would: the
  CPU the server and the ``start`` function spend per second while they wait,
  and the server's memory per long-polling waiter.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from resonate.types import Value

from bench.driving import WARM_UPS, cpu_ms_per_s, measured_runs
from bench.full_stack import StackDriver, driven_stack, email_name, idle, request_body
from bench.stats import summary
from devstack.procstats import cpu_s, rss_kib, tree

Progress = Callable[[str], None]


class Receiver:
    """An ``approval.decided`` webhook in this process: when each workflow's event arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, asyncio.Future[float]] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    def expect(self, workflow_id: str) -> asyncio.Future[float]:
        return self.arrived.setdefault(workflow_id, asyncio.get_running_loop().create_future())

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            at = time.perf_counter()
            event = await request.json()
            future = self.expect(event["workflow_id"])
            if not future.done():
                future.set_result(at)
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def delivery_latency(d: StackDriver, receiver: Receiver, runs: int, progress: Progress) -> dict[str, Any]:
    async def one(wid: str) -> tuple[float, float, float]:
        caller = await caller_promise(d)
        body = {
            **request_body(wid),
            "on_decision": [{"type": "promise", "id": caller}, {"type": "webhook", "url": receiver.url}],
        }
        await d.start(body)
        await d.inbox.wait(email_name(body))
        await d.server.wait_suspended(wid)
        run = await d.listen.get(wid)
        promise = await d.listen.get(caller)
        hook = receiver.expect(wid)
        await d.decide(d.token(body))
        t1 = time.perf_counter()
        await asyncio.wait_for(run.result(), 30)
        t_run = time.perf_counter()
        await asyncio.wait_for(promise.result(), 30)
        t_promise = time.perf_counter()
        t_hook = await asyncio.wait_for(hook, 30)
        return (t_run - t1) * 1000, (t_promise - t1) * 1000, (t_hook - t1) * 1000

    rows = await measured_runs(one, runs, "delivery", progress)
    run_ms, promise_ms, hook_ms = ([r[i] for r in rows] for i in range(3))
    return {
        "post_returned_to_settled_ms": summary(run_ms, "ms"),
        "post_returned_to_caller_promise_ms": summary(promise_ms, "ms"),
        "post_returned_to_webhook_ms": summary(hook_ms, "ms"),
    }


#: A caller's promise outlives the request it is given to (7 days by default): a month.
CALLER_PROMISE_MS = 30 * 86_400_000


async def caller_promise(d: StackDriver) -> str:
    """A pending promise of a caller's own workflow (another origin), as its ``ctx.promise()`` makes it."""
    caller = f"caller-{uuid.uuid4().hex[:12]}:1"
    await d.listen.promises.create(caller, int(time.time() * 1000) + CALLER_PROMISE_MS, Value(), {})
    return caller


async def start_cost(d: StackDriver, runs: int, progress: Progress) -> dict[str, Any]:
    """What ``start`` costs with promise targets in ``on_decision``: the POST's round trip, and the
    CPU the server and the ``start`` function spend per start, with 0, 1 and 2 promise targets
    (each target is read and claimed before the run is created: hitl.bindings)."""
    assert d.stack.server is not None
    assert d.stack.start_fn is not None
    server, start = [d.stack.server.popen.pid], tree(d.stack.start_fn.popen.pid)
    out: dict[str, Any] = {}
    for targets in (0, 1, 2):
        # the callers' promises first, so their creation is not measured
        ids = [[await caller_promise(d) for _ in range(targets)] for _ in range(runs + WARM_UPS)]

        async def one(wid: str, ids: list[list[str]] = ids) -> float:
            body = request_body(wid)
            if mine := ids.pop():
                body["on_decision"] = [{"type": "promise", "id": id} for id in mine]
            t0 = time.perf_counter()
            await d.start(body)
            return (time.perf_counter() - t0) * 1000

        await idle(server + start, 30)
        cpu0 = cpu_s(server + start)
        times = await measured_runs(one, runs, f"start{targets}", progress)
        cpu = 1000 * (cpu_s(server + start) - cpu0) / (runs + WARM_UPS)
        progress(f"start with {targets} promise target(s): median {sorted(times)[len(times) // 2]:.2f} ms")
        out[str(targets)] = {"post_ms": summary(times, "ms"), "cpu_ms_per_start": cpu}
    return out


async def waiting_cost(d: StackDriver, waiters: int, window_s: float, progress: Progress) -> dict[str, Any]:
    assert d.stack.server is not None
    assert d.stack.start_fn is not None
    server, start = [d.stack.server.popen.pid], tree(d.stack.start_fn.popen.pid)
    ids = [f"wait-{uuid.uuid4().hex[:12]}" for _ in range(waiters)]
    sem = asyncio.Semaphore(32)

    async def park(wid: str) -> None:
        async with sem:
            await d.park(wid)

    await asyncio.gather(*(park(w) for w in ids))
    await idle(server + start, 30)
    idle_server, idle_start = await cpu_ms_per_s(server, 3), await cpu_ms_per_s(start, 3)
    rss_before = rss_kib(server)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=waiters + 10)) as http:

        async def long_poll(wid: str) -> int:
            async with http.get(
                d.start_url, params={"workflow_id": wid, "wait": "60"}, timeout=aiohttp.ClientTimeout(total=90)
            ) as r:
                return r.status

        polls = [asyncio.create_task(long_poll(w)) for w in ids]
        await asyncio.sleep(5)  # pacing: every waiter's stream and listener in place
        rss_waiting = rss_kib(server)
        lp_server, lp_start = await asyncio.gather(cpu_ms_per_s(server, window_s), cpu_ms_per_s(start, window_s))
        progress(f"{waiters} long polls: server {lp_server:.1f} ms/s, start {lp_start:.1f} ms/s")
        still_waiting = sum(not p.done() for p in polls)
        for p in polls:
            p.cancel()
        await asyncio.gather(*polls, return_exceptions=True)

    await idle(server + start, 30)
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=waiters + 10)) as http:

        async def poller(wid: str) -> None:
            while not stop.is_set():
                async with http.get(d.start_url, params={"workflow_id": wid}) as r:
                    await r.read()
                await asyncio.sleep(1.0)

        pollers = [asyncio.create_task(poller(w)) for w in ids]
        await asyncio.sleep(2)
        p_server, p_start = await asyncio.gather(cpu_ms_per_s(server, window_s), cpu_ms_per_s(start, window_s))
        progress(f"{waiters} pollers at 1/s: server {p_server:.1f} ms/s, start {p_start:.1f} ms/s")
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
    return {
        "waiters": waiters,
        "window_s": window_s,
        "long_polls_still_waiting": still_waiting,
        "idle_cpu_ms_per_s": {"server": idle_server, "start": idle_start},
        "long_poll_cpu_ms_per_s": {"server": lp_server, "start": lp_start},
        "polling_1s_cpu_ms_per_s": {"server": p_server, "start": p_start},
        "server_rss_kib_per_long_poll": (rss_waiting - rss_before) / waiters,
    }


async def section_callers(tmp: Path, cfg: Any, progress: Progress, durable: bool = False) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    env = {"HITL_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "HITL_NOTIFY_WEBHOOK_SECRET": secrets.token_urlsafe(32)}
    try:
        async with driven_stack(tmp / "callers", durable=durable, env=env) as d:
            progress("callers: delivery latency")
            out = await delivery_latency(d, receiver, cfg.stack_runs, progress)
            progress("callers: what start costs with promise targets")
            out["start_cost"] = await start_cost(d, cfg.stack_runs, progress)
            progress(f"callers: the cost of {cfg.waiters} waiters")
            out["waiting"] = await waiting_cost(d, cfg.waiters, cfg.waiter_window_s, progress)
            return out
    finally:
        await receiver.stop()
