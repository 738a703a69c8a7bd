"""The hitl-stack sections of ``bench/run.py`` (every component its own process).

- :func:`section_latency`: resume latency, one request at a time (one worker);
- :func:`section_throughput`: full approval cycles per second with N in flight,
  one worker then two, and the CPU time per cycle of every process;
- :func:`section_waiting`: 100 / 1,000 / 10,000 requests waiting at once:
  worker and server RSS, and the time of one more cycle at each level;
- :func:`section_server_mem`: the same waiting requests with the server under
  tracemalloc (``bench/server_mem.py``): where its memory goes;
- :func:`section_cold`: cold start of ``start`` and ``unblock`` beside a bare
  functions-framework hello world, and ``python -X importtime`` of
  ``functions/main.py``.

The waiting and memory sections use a minimal SMTP sink (``bench/light_sink.py``)
instead of the dev sink, whose SMTP server (aiosmtpd) and per-message parse cost
about three times its CPU per message and would slow the creation of 10,000
requests on 2 cores; the others use the real stack.

A cycle in the throughput and waiting sections is: ``start`` POST; the driver
registers a listener on the run's root promise; the email arrives in the SMTP
sink's inbox (the driver watches the folder for the file name the worker will
use, derived from the vote id); the driver mints the approve token with the
signing key (the same claims as the emailed link, without parsing the email
or GETting the decision page, which changes nothing); POST to ``unblock``;
the listener is pushed the run's result; one GET to ``start`` reads it.
"""

from __future__ import annotations

import asyncio
import compileall
import dataclasses
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from resonate.resonate import Resonate

from bench.driving import RawServer, cpu_ms_per_s, measured_runs, settle
from bench.stats import bounded, summary
from devstack.procstats import cpu_s, rss_kib, tree
from devstack.stack import FUNCTIONS_FRAMEWORK, PYTHON, ROOT, LocalServerProc, Proc, Stack, free_port, wait_until
from hitl.model import policy
from hitl.model.request import ApprovalRequest
from hitl.notify.email import message_id_for
from hitl.security import tokens

APPROVER = "alice@example.com"
#: The minimal SMTP sink of the waiting and memory sections (it takes the dev sink's ``--port`` and ``--inbox``).
LIGHT_SINK = (PYTHON, "-m", "bench.light_sink")

Progress = Callable[[str], None]


# -- the driver ----------------------------------------------------------------------------------


class InboxWatch:
    """Watches the sink's folder: futures for expected messages; every file seen is removed.

    Removing keeps the folder (and each scan) small; the sink only uses the
    file to drop a duplicate delivery, which a benchmark run does not make.
    """

    def __init__(self, inbox: Path, interval: float = 0.002) -> None:
        self.inbox = inbox
        self.interval = interval
        self.waiting: dict[str, asyncio.Future[bytes | None]] = {}
        self.read: set[str] = set()
        self.seen: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            with os.scandir(self.inbox) as it:
                names = [e.name for e in it if e.name.endswith(".eml")]
            for name in names:
                stem = name[:-4]
                path = self.inbox / name
                raw = path.read_bytes() if stem in self.read else None
                os.unlink(path)
                fut = self.waiting.pop(stem, None)
                if fut is None:
                    self.seen.add(stem)
                elif not fut.done():
                    fut.set_result(raw)
            await asyncio.sleep(self.interval)

    async def wait(self, stem: str, timeout: float = 60.0, *, read: bool = False) -> bytes | None:
        """Until ``stem``.eml arrived; its bytes when ``read`` (call it before the message can arrive)."""
        if stem in self.seen:
            self.seen.discard(stem)
            return None
        fut = asyncio.get_running_loop().create_future()
        self.waiting[stem] = fut
        if read:
            self.read.add(stem)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.read.discard(stem)


def request_body(wid: str) -> dict[str, Any]:
    return {
        "workflow_id": wid,
        "approvers": [APPROVER],
        "subject": f"Approve {wid}",
        "details": {"service": "api", "version": "v42"},
    }


#: :func:`request_body` validated once: bodies differ only in the workflow id (and the subject,
#: which the layout ignores), and validating the approver's address every cycle cost the driver,
#: which shares the 2 cores with the stack, about 1 ms per cycle.
_REQUEST = ApprovalRequest.from_json(request_body("template"))


def vote_id(body: dict[str, Any]) -> str:
    """The id of :data:`APPROVER`'s vote, as the workflow lays it out (:func:`hitl.model.policy.layout`)."""
    req = dataclasses.replace(_REQUEST, workflow_id=body["workflow_id"], subject=body["subject"])
    return policy.layout(req).rounds[0].vote_of(APPROVER)


def email_name(body: dict[str, Any]) -> str:
    """The inbox file (without ``.eml``) the approval email to :data:`APPROVER` is stored as."""
    return message_id_for(vote_id(body), APPROVER, "approval")


class StackDriver:
    """A running :class:`Stack` plus the driver's clients (``server``: raw requests to the local server)."""

    def __init__(self, stack: Stack) -> None:
        assert stack.start_fn is not None
        assert stack.server is not None
        self.stack = stack
        self.start_url = stack.start_fn.url + "/"
        self.unblock_url = stack.unblock_url
        self.server_url = stack.server.url
        self.key = stack.signing_key.encode()
        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them (else a reuse can race the close).
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=3.0))
        self.listen = Resonate(url=self.server_url, group="bench-listener")
        self.server = RawServer(self.http, self.server_url)
        self.inbox = InboxWatch(stack.inbox)
        self.inbox.start()

    async def close(self) -> None:
        await self.inbox.stop()
        await self.listen.stop()
        await self.http.close()

    def pids(self) -> dict[str, list[int]]:
        s = self.stack
        assert s.server
        assert s.sink
        assert s.start_fn
        assert s.unblock_fn
        out = {"server": [s.server.popen.pid]}
        for i, w in enumerate(s.workers):
            out[f"worker{i + 1}"] = [w.popen.pid]
        out["start"] = tree(s.start_fn.popen.pid)
        out["unblock"] = tree(s.unblock_fn.popen.pid)
        out["sink"] = [s.sink.popen.pid]
        out["driver"] = [os.getpid()]
        return out

    def token(self, body: dict[str, Any]) -> str:
        """The approve link's token, as the email carries it."""
        claims = tokens.Claims(vote_id(body), APPROVER, "approve", int(time.time()) + 3600)
        return tokens.sign(self.key, claims)

    async def start(self, body: dict[str, Any]) -> None:
        async with self.http.post(self.start_url, json=body) as r:
            if r.status != 202:
                raise RuntimeError(f"start answered {r.status}: {(await r.text())[:300]}")

    async def decide(self, token: str) -> None:
        async with self.http.post(self.unblock_url, data={"token": token, "comment": "bench"}) as r:
            if r.status != 200:
                raise RuntimeError(f"unblock answered {r.status}: {(await r.text())[:300]}")

    async def read_done(self, wid: str) -> None:
        async with self.http.get(self.start_url, params={"workflow_id": wid}) as r:
            status = await r.json()
        if status.get("status") != "done" or status["result"]["decision"] != "approved":
            raise RuntimeError(f"{wid}: {status}")

    async def cycle(self, wid: str) -> float:
        """One full approval cycle (see the module doc); its duration in ms."""
        body = request_body(wid)
        t0 = time.perf_counter()
        await self.start(body)
        handle = await self.listen.get(wid)
        await self.inbox.wait(email_name(body))
        await self.decide(self.token(body))
        await asyncio.wait_for(handle.result(), 60)
        await self.read_done(wid)
        return (time.perf_counter() - t0) * 1000

    async def park(self, wid: str) -> None:
        """Start a request and return once its email arrived (its vote exists): it then waits."""
        body = request_body(wid)
        await self.start(body)
        await self.inbox.wait(email_name(body), timeout=600)


async def idle(pids: list[int], max_s: float) -> float:
    """Wait until ``pids`` use under 20 ms of CPU a second over 0.5 s (at most ``max_s``); the seconds waited."""
    return await settle(pids, max_s, window_s=0.5, below_ms_per_s=20.0)


@asynccontextmanager
async def driven_stack(state: Path, **kw: Any) -> AsyncIterator[StackDriver]:
    """A stack started in ``state`` (``kw`` go to :class:`Stack`) and a driver on it, both closed however the block ends."""
    stack = Stack(state, signing_key=secrets.token_urlsafe(48), **kw)
    await asyncio.to_thread(stack.start)  # a failed start stops what it started
    try:
        d = StackDriver(stack)
        try:
            yield d
        finally:
            await d.close()
    finally:
        await asyncio.to_thread(stack.stop)


# -- resume latency --------------------------------------------------------------------------------


async def section_latency(d: StackDriver, runs: int, progress: Progress) -> dict[str, Any]:
    """One request at a time: the approver's POST to ``unblock`` until ``start``'s GET reads the result."""
    from email import policy as email_policy
    from email.parser import BytesParser

    from devstack.smtpsink import links_in

    async def one(wid: str) -> tuple[float, ...]:
        body = request_body(wid)
        name = email_name(body)
        t_s = time.perf_counter()
        await d.start(body)
        start_ms = (time.perf_counter() - t_s) * 1000
        raw = await d.inbox.wait(name, read=True)
        email_ms = (time.perf_counter() - t_s) * 1000
        assert raw is not None
        # As a person does: the email's Approve link opens the page; its Approve button's token.
        link = links_in(BytesParser(policy=email_policy.default).parsebytes(raw))["approve"]  # type: ignore[arg-type]
        async with d.http.get(link) as r:  # changes nothing
            page = await r.text()
        found = {
            tokens.verify(d.key, t, now=time.time()).decision: t
            for t in re.findall(r'name="token"\s+value="([^"]+)"', page)
        }
        await d.server.wait_suspended(wid)
        handle = await d.listen.get(wid)  # pushed when the run's root promise settles
        t0 = time.perf_counter()
        await d.decide(found["approve"])
        t1 = time.perf_counter()
        await asyncio.wait_for(handle.result(), 30)
        t2 = time.perf_counter()
        await d.read_done(wid)
        t3 = time.perf_counter()

        def ms(a: float, b: float) -> float:
            return (b - a) * 1000

        return start_ms, email_ms, ms(t0, t1), ms(t1, t2), ms(t1, t3), ms(t0, t3)

    rows = await measured_runs(one, runs, "lat", progress)
    cols = [list(c) for c in zip(*rows, strict=True)]
    return {
        "start_post_ms": summary(cols[0], "ms"),
        "start_to_email_ms": summary(cols[1], "ms"),
        "unblock_post_ms": summary(cols[2], "ms"),
        "post_returned_to_settled_ms": summary(cols[3], "ms"),
        "resume_ms": summary(cols[4], "ms"),
        "post_sent_to_result_ms": summary(cols[5], "ms"),
    }


# -- throughput ------------------------------------------------------------------------------------


async def throughput(
    d: StackDriver,
    runs: int,
    cycles: int,
    concurrency: int,
    label: str,
    progress: Progress,
    spy_dir: Path | None = None,
) -> dict[str, Any]:
    warm = uuid.uuid4().hex[:6]

    async def warm_one(i: int) -> None:
        await d.cycle(f"tpw{label}{warm}-{i}")

    await bounded(20, 8, warm_one)
    pids = d.pids()
    rates: list[float] = []
    durations: list[float] = []
    cpu: dict[str, list[float]] = {name: [] for name in pids}
    for r in range(runs):
        await idle(pids["server"], 5.0)
        tag = uuid.uuid4().hex[:8]
        c0 = {name: cpu_s(p) for name, p in pids.items()}
        t0 = time.perf_counter()

        async def one(i: int, tag: str = tag) -> None:
            durations.append(await d.cycle(f"tp{tag}-{i}"))

        await bounded(cycles, concurrency, one)
        t1 = time.perf_counter()
        c1 = {name: cpu_s(p) for name, p in pids.items()}
        rates.append(cycles / (t1 - t0))
        for name in pids:
            cpu[name].append((c1[name] - c0[name]) / cycles * 1000)
        progress(f"throughput {label}, run {r + 1}/{runs}: {rates[-1]:.0f} cycles/s")
    profiles = None
    if spy_dir is not None:  # one more run, not counted, under py-spy
        spy = Spy(spy_dir / label, pids)
        tag = uuid.uuid4().hex[:8]
        await bounded(cycles, concurrency, lambda i: d.cycle(f"spy{tag}-{i}"))  # type: ignore[arg-type,return-value]
        profiles = await asyncio.to_thread(spy.stop)
        progress(f"py-spy profiles in {spy_dir / label}")
    return {
        **({"py_spy": profiles} if profiles is not None else {}),
        "workers": len(d.stack.workers),
        "concurrency": concurrency,
        "cycles_per_run": cycles,
        "cycles_per_s": summary(rates, "cycles/s"),
        "cycle_ms": summary(durations, "ms"),
        "cpu_ms_per_cycle": {name: summary(v, "ms") for name, v in cpu.items()},
        "cpu_ms_per_cycle_total": summary([sum(v[i] for v in cpu.values()) for i in range(runs)], "ms"),
    }


async def section_throughput(d: StackDriver, cfg: Any, progress: Progress, spy: Path | None = None) -> dict[str, Any]:
    out = {"one_worker": await throughput(d, cfg.tp_runs, cfg.tp_cycles, cfg.tp_concurrency, "1w", progress, spy)}
    await asyncio.to_thread(d.stack.add_worker)
    out["two_workers"] = await throughput(d, cfg.tp_runs, cfg.tp_cycles, cfg.tp_concurrency, "2w", progress, spy)
    return out


# -- cost of waiting -------------------------------------------------------------------------------


async def waiting_levels(
    d: StackDriver, levels: list[int], cycles: int, concurrency: int, settle_s: float, progress: Progress
) -> dict[str, Any]:
    """Raise the number of waiting requests level by level; at each: RSS, idle CPU, one more cycle."""
    pids = d.pids()
    watched = pids["server"] + pids["worker1"]
    for i in range(5):
        await d.cycle(f"wwarm-{i}-{uuid.uuid4().hex[:6]}")
    await idle(watched, 10.0)
    base = {"server": rss_kib(pids["server"]), "worker": rss_kib(pids["worker1"])}
    tag = uuid.uuid4().hex[:8]
    have = 0
    rows = []
    for level in levels:
        first = have
        t0 = time.perf_counter()

        async def park(i: int, first: int = first) -> None:
            await d.park(f"wait{tag}-{first + i}")

        await bounded(level - have, concurrency, park)
        created_s = time.perf_counter() - t0
        have = level
        settled = await idle(watched, settle_s)
        idle_ms_per_s = await cpu_ms_per_s(pids["server"], 1.0)
        rss_s, rss_w = rss_kib(pids["server"]), rss_kib(pids["worker1"])
        times = [await d.cycle(f"one{tag}-{level}-{j}") for j in range(cycles)]
        rows.append(
            {
                "waiting": level,
                "created_per_s": (level - first) / created_s,
                "settle_s": settled,
                "server_rss_kib": rss_s,
                "worker_rss_kib": rss_w,
                "server_kib_per_waiting": (rss_s - base["server"]) / level,
                "server_idle_cpu_ms_per_s": idle_ms_per_s,
                "cycle_ms": summary(times, "ms"),
            }
        )
        progress(
            f"waiting {level}: created {rows[-1]['created_per_s']:.0f}/s, server {rss_s / 1024:.0f} MiB "
            f"({rows[-1]['server_kib_per_waiting']:.2f} KiB each), worker {rss_w / 1024:.0f} MiB, "
            f"one more cycle {statistics.median(times):.0f} ms"
        )
    return {
        "base_rss_kib": base,
        "levels": rows,
        "cycle_ratio_last_over_first": rows[-1]["cycle_ms"]["median"] / rows[0]["cycle_ms"]["median"],
        "worker_rss_growth_kib": rows[-1]["worker_rss_kib"] - base["worker"],
        "worker_kib_per_waiting_after_first_level": (rows[-1]["worker_rss_kib"] - rows[0]["worker_rss_kib"])
        / max(rows[-1]["waiting"] - rows[0]["waiting"], 1),
        # Between the two largest levels: past the warm-up (arenas, caches, 64 in flight), what a
        # waiting request itself costs the worker, which is what "flat" is about.
        "worker_kib_per_waiting_last_levels": (rows[-1]["worker_rss_kib"] - rows[-2]["worker_rss_kib"])
        / max(rows[-1]["waiting"] - rows[-2]["waiting"], 1)
        if len(rows) > 1
        else None,
    }


async def section_waiting(tmp: Path, cfg: Any, progress: Progress, durable: bool = False) -> dict[str, Any]:
    async with driven_stack(tmp / "stack-waiting", sink_command=LIGHT_SINK, durable=durable) as d:
        return await waiting_levels(d, cfg.waiting_levels, cfg.waiting_cycles, 64, cfg.waiting_settle_s, progress)


# -- memory breakdown of the server (tracemalloc) -------------------------------------------------


def memory_server(out: Path) -> tuple[str, ...]:
    """The command that runs the local server under ``bench/server_mem.py``: SIGUSR1 writes its memory summary to ``out``."""
    return (PYTHON, "-m", "bench.server_mem", str(out))


def dump_memory(server: LocalServerProc, out: Path, timeout: float = 300.0) -> dict[str, Any]:
    """The memory summary of ``server`` (run with :func:`memory_server`), once it has written it."""
    out.unlink(missing_ok=True)
    os.kill(server.popen.pid, signal.SIGUSR1)

    def written() -> bool:
        server.check_alive()
        return out.exists()

    wait_until(written, timeout=timeout, interval=0.05, what="the server's memory dump")
    return json.loads(out.read_text())


async def section_server_mem(tmp: Path, level: int, progress: Progress, durable: bool = False) -> dict[str, Any]:
    state = tmp / "stack-mem"
    out = state / "mem.json"
    # tracemalloc slows the server's start: 30 s for it to listen.
    mem_stack = driven_stack(
        state, server_command=memory_server(out), server_timeout=30.0, sink_command=LIGHT_SINK, durable=durable
    )
    async with mem_stack as d:
        server = d.stack.server
        assert server is not None
        for i in range(5):
            await d.cycle(f"mwarm-{i}-{uuid.uuid4().hex[:6]}")
        base = await asyncio.to_thread(dump_memory, server, out)
        tag = uuid.uuid4().hex[:8]
        t0 = time.perf_counter()
        await bounded(level, 64, lambda i: d.park(f"mem{tag}-{i}"))
        progress(f"tracemalloc server: {level} waiting in {time.perf_counter() - t0:.0f} s; dumping")
        await idle([server.popen.pid], 10.0)
        at = await asyncio.to_thread(dump_memory, server, out)
        base_lines = {x["site"]: x["bytes"] for x in base["top_lines"]}
        for x in at["top_lines"]:
            x["bytes_per_waiting"] = (x["bytes"] - base_lines.get(x["site"], 0)) / level
        at["top_growth"] = sorted(at["top_lines"], key=lambda x: -x["bytes_per_waiting"])[:10]
        at["top_lines"] = at["top_lines"][:25]
        return {
            "waiting": level,
            "traced_bytes_per_waiting": (at["traced_bytes"] - base["traced_bytes"]) / level,
            "base": {k: base[k] for k in ("traced_bytes", "objects")},
            "at": at,
            "promises_per_waiting": (at["objects"]["Promise"]["count"] - base["objects"]["Promise"]["count"]) / level,
            "tasks_per_waiting": (at["objects"]["Task"]["count"] - base["objects"]["Task"]["count"]) / level,
        }


# -- cold start ------------------------------------------------------------------------------------

COLD_TARGETS = {
    "hello": (ROOT / "bench" / "hello.py", "hello", "/"),
    "start": (ROOT / "functions" / "main.py", "start", "/?workflow_id=x"),
    "unblock": (ROOT / "functions" / "main.py", "unblock", "/?token=bad"),
}


def cold_once(name: str, env: dict[str, str], log_dir: Path) -> tuple[float, int]:
    """Process start until the first request is answered (ms), and its status."""
    source, target, path = COLD_TARGETS[name]
    port = free_port()
    args = [FUNCTIONS_FRAMEWORK, "--source", str(source), "--target", target]
    args += ["--host", "127.0.0.1", "--port", str(port), "--asgi"]
    t0 = time.perf_counter()
    proc = Proc(f"cold-{name}", args, log_dir=log_dir, env=env)

    def answered() -> tuple[float, int]:
        proc.check_alive()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return (time.perf_counter() - t0) * 1000, resp.status
        finally:
            conn.close()

    try:
        return wait_until(answered, timeout=30, interval=0.002, what=f"{name} to answer")
    finally:
        proc.stop()


def importtime(script: Path, runs: int = 3) -> dict[str, Any]:
    """``python -X importtime SCRIPT``, ``runs`` times: the total and the modules costing most
    (per module the median over the runs, so one descheduled import does not top the list)."""
    per: dict[tuple[int, str], list[tuple[int, int]]] = {}
    totals = []
    for _ in range(runs):
        res = subprocess.run(  # noqa: S603 - an argv list, no shell
            [PYTHON, "-X", "importtime", str(script)], cwd=ROOT, capture_output=True, text=True, check=True
        )
        total = 0
        for line in res.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                depth = len(m[3]) // 2
                per.setdefault((depth, m[4]), []).append((int(m[1]), int(m[2])))
                total += int(m[2]) if depth == 0 else 0
        totals.append(total)
    rows = [
        {
            "self_us": statistics.median(v[0] for v in vals),
            "cumulative_us": statistics.median(v[1] for v in vals),
            "depth": depth,
            "module": module,
        }
        for (depth, module), vals in per.items()
    ]
    return {
        "total_ms": statistics.median(totals) / 1000,
        "modules": len(rows),
        "top_cumulative": sorted(rows, key=lambda r: -r["cumulative_us"])[:10],
        "top_self": sorted(rows, key=lambda r: -r["self_us"])[:10],
        "top_level": sorted((r for r in rows if r["depth"] == 0), key=lambda r: -r["cumulative_us"])[:10],
    }


def section_cold(tmp: Path, runs: int, progress: Progress) -> dict[str, Any]:
    logs = tmp / "cold"
    logs.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {n: [] for n in COLD_TARGETS}
    statuses: dict[str, set[int]] = {n: set() for n in COLD_TARGETS}
    # Byte-compile the sources first, as any machine that has run them once has them: with
    # PYTHONDONTWRITEBYTECODE set, as on this project's machines, every cold start would compile
    # hitl's modules again (~30 ms), which the one-file hello world barely pays. (Whether a
    # deployed function finds .pyc files depends on the platform's build: not measured here.)
    compileall.compile_dir(ROOT / "hitl", quiet=1)
    compileall.compile_dir(ROOT / "functions", quiet=1)
    compileall.compile_file(ROOT / "bench" / "hello.py", quiet=1)
    server = LocalServerProc(logs)
    env = {"RESONATE_URL": server.url, "HITL_SIGNING_KEY": secrets.token_urlsafe(48), "HITL_LOG_FORMAT": "text"}
    try:
        for name in COLD_TARGETS:  # once each, unmeasured: the page cache
            cold_once(name, env, logs)
        for r in range(runs):
            for name in COLD_TARGETS:  # interleaved, so noise hits all three alike
                ms, status = cold_once(name, env, logs)
                times[name].append(ms)
                statuses[name].add(status)
            progress(f"cold start run {r + 1}/{runs}: " + ", ".join(f"{n} {v[-1]:.0f} ms" for n, v in times.items()))
    finally:
        server.stop()
    out: dict[str, Any] = {n: {**summary(v, "ms"), "statuses": sorted(statuses[n])} for n, v in times.items()}
    hello = out["hello"]["median"]
    out["ratio_start"] = out["start"]["median"] / hello
    out["ratio_unblock"] = out["unblock"]["median"] / hello
    it_runs = 3 if runs >= 5 else 1
    out["importtime_main"] = importtime(ROOT / "functions" / "main.py", it_runs)
    out["importtime_hello"] = importtime(ROOT / "bench" / "hello.py", it_runs)
    return out


# -- py-spy profiles -------------------------------------------------------------------------------


class Spy:
    """``py-spy record`` of named processes while a block runs: non-blocking, only samples holding the GIL
    (so about CPU time, not waits), raw collapsed stacks."""

    def __init__(self, out_dir: Path, pids: dict[str, list[int]], rate: int = 250) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        exe = str(Path(PYTHON).parent / "py-spy")
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        for name, ps in pids.items():
            if name == "driver":
                continue
            pid = ps[-1]  # the gunicorn worker for a function, else the process itself
            path = out_dir / f"{name}.txt"
            cmd = [
                exe,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--nonblocking",
                "--gil",
                "--output",
                str(path),
            ]
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 - an argv list, no shell
            self.procs.append((name, path, spy))
        time.sleep(0.5)

    def stop(self) -> dict[str, Any]:
        for _, _, p in self.procs:
            p.send_signal(signal.SIGINT)
        out = {}
        for name, path, p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
            if path.exists():
                out[name] = summarize_collapsed(path)
        return out


def _frame(f: str) -> str:
    """``func (path/file.py:123)`` -> ``func (file.py)``."""
    m = re.match(r"(.*) \((.*?):?\d*\)$", f)
    if not m:
        return f
    return f"{m[1]} ({m[2].rsplit('/', 1)[-1]})"


def summarize_collapsed(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions by self and by inclusive samples, as shares of all samples."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    t = max(total, 1)
    return {
        "samples": total,
        "self": [(f, c / t) for f, c in sorted(self_c.items(), key=lambda x: -x[1])[:top]],
        "inclusive": [(f, c / t) for f, c in sorted(incl.items(), key=lambda x: -x[1])[: top * 3]],
    }
