"""Benchmark: the local Resonate server and the hitl stack, over real processes and sockets.

    .venv/bin/python -m bench [--quick] [--durable] [--skip SECTIONS] [--py-spy DIR] [--out bench-results.json]

Every component is its own OS process: the local server (``python -m
devstack.localserver``), the worker(s), the SMTP sink, ``start`` and ``unblock``
under ``functions-framework --asgi``, and this script as the driver. Figures
are medians and p99s over repeated runs; the table is printed and (with
``--out``) written as JSON. The load average is printed at start and end: on
a shared 2-core machine every figure moves with it.

Section 1 (``server``), the local server with the real SDK (``bench/sdk_worker.py``'s
``wf``: create a promise, announce its id, wait on it): resolve latency,
start+resolve cycles per second, server CPU per workflow with few and many
waiting, server RSS per waiting workflow.

The hitl stack (``bench/full_stack.py``, which documents each):

- ``latency``: resume latency, one request at a time: the approver's POST to
  ``unblock`` returning until ``start``'s GET reads the result (and from the
  POST being sent);
- ``throughput``: full approval cycles per second (start, email, decide,
  result) with 32 in flight, one worker then two, and the CPU time per cycle of
  every process (``--py-spy DIR``: one more run under py-spy, top functions);
- ``signin``: an IAP assertion's check, and an inbox view with 100 and 10,000 other
  requests pending (``bench/signin.py``);
- ``waiting``: 100 / 1,000 / 10,000 requests waiting at once: server and
  worker RSS, and one more cycle at each level;
- ``mem``: the server under tracemalloc (``bench/server_mem.py``) at
  the largest level: top allocation sites, bytes per Promise / Task object;
- ``cold``: cold start of ``start`` and ``unblock`` beside a bare
  functions-framework hello world (``bench/hello.py``), and
  ``python -X importtime functions/main.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from resonate.connections.sse import resolve_target
from resonate.resonate import Resonate
from resonate.types import TaskData, Value

from bench.driving import RawServer, cpu_ms_per_s, poll_until, settle
from bench.stats import bounded, summary
from devstack.procstats import CLK_TCK, cpu_s, cpu_times, rss_kib
from devstack.stack import LOCALSERVER, PYTHON, LocalServerProc, Proc

GROUP = "bench"


@dataclass(frozen=True)
class Config:
    latency_runs: int
    throughput_runs: int
    throughput_cycles: int
    concurrency: int
    few_waiting: int
    many_waiting: int
    waiting_chunks: int
    cpu_batches: int
    cpu_batch_cycles: int
    stack_runs: int
    settle_s: float
    after_burst_s: float
    tp_runs: int
    tp_cycles: int
    tp_concurrency: int
    waiting_levels: tuple[int, ...]
    waiting_cycles: int
    waiting_settle_s: float
    mem_level: int
    cold_runs: int
    waiters: int
    waiter_window_s: float


FULL = Config(
    latency_runs=200, throughput_runs=5, throughput_cycles=1000, concurrency=32,
    few_waiting=100, many_waiting=10_000, waiting_chunks=5, cpu_batches=5, cpu_batch_cycles=400,
    stack_runs=100, settle_s=90, after_burst_s=70,
    tp_runs=4, tp_cycles=200, tp_concurrency=32, waiting_levels=(100, 1000, 10_000), waiting_cycles=20,
    waiting_settle_s=20, mem_level=10_000, cold_runs=10, waiters=200, waiter_window_s=15,
)  # fmt: skip
QUICK = Config(
    latency_runs=20, throughput_runs=2, throughput_cycles=150, concurrency=32,
    few_waiting=100, many_waiting=600, waiting_chunks=2, cpu_batches=3, cpu_batch_cycles=80,
    stack_runs=15, settle_s=0, after_burst_s=0,
    tp_runs=2, tp_cycles=80, tp_concurrency=32, waiting_levels=(100, 300), waiting_cycles=5,
    waiting_settle_s=2, mem_level=300, cold_runs=2, waiters=30, waiter_window_s=3,
)  # fmt: skip


# -- statistics and /proc ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    return cpu_s([pid])


def rss_kb(pid: int) -> int:
    return rss_kib([pid])


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "loadavg_at_end": None,
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "bench", *sys.argv[1:]]),
    }


_T0 = time.perf_counter()


def progress(msg: str) -> None:
    print(f"  .. [{time.perf_counter() - _T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


# -- section 1: the local server with the real SDK ---------------------------------------------


class Announcements(asyncio.DatagramProtocol):
    """UDP endpoint the workers announce ``wf``'s promise ids to (``root:n``)."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[str]] = {}

    def expect(self, root: str) -> asyncio.Future[str]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[root] = fut
        return fut

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pid = data.decode()
        fut = self.waiting.pop(pid.split(":", 1)[0], None)
        if fut is not None and not fut.done():
            fut.set_result(pid)


class Driver:
    """The driver's clients: a send-only SDK client, a listening one, and raw requests (``server``)."""

    def __init__(self, url: str, announcements: Announcements) -> None:
        self.url = url
        self.ann = announcements
        self.send = Resonate(url=url, sources=[], group="bench-driver")
        self.listen = Resonate(url=url, group="bench-listener")
        self.session = aiohttp.ClientSession()
        self.server = RawServer(self.session, url)

    async def close(self) -> None:
        await self.send.stop()
        await self.listen.stop()
        await self.session.close()

    async def start_wf(self, root: str) -> asyncio.Future[str]:
        """Start ``wf`` as ``root`` (one promise.create, as hitl's start does); the future gets its promise id."""
        fut = self.ann.expect(root)
        await self.send.promises.create(
            root,
            int(time.time() * 1000) + 24 * 3600_000,
            Value(data=TaskData(func="wf", args=(), kwargs={}, version=1)),
            {
                "resonate:origin": root,
                "resonate:branch": root,
                "resonate:parent": root,
                "resonate:scope": "global",
                "resonate:target": resolve_target(GROUP),
            },
        )
        return fut

    async def cycle(self, root: str) -> None:
        """One start+resolve cycle: start, listen on the root, resolve the promise on announce, await the result."""
        announced = await self.start_wf(root)
        handle = await self.listen.get(root)
        pid = await asyncio.wait_for(announced, 60)
        await self.send.promises.resolve(pid, Value(data={"ok": root}))
        await asyncio.wait_for(handle.result(), 60)

    async def park(self, root: str) -> None:
        """Start a workflow that stays waiting on its promise (until its announce)."""
        await asyncio.wait_for(await self.start_wf(root), 60)


def profiled_server(prof: Path) -> tuple[str, ...]:
    """The command that runs the local server under a CPU-time cProfile (``bench/profile_server.py``),
    its stats written to ``prof`` when it stops."""
    return (PYTHON, "-m", "bench.profile_server", str(prof))


class ServerRig:
    """A local server process, one bench worker process and the driver, in a temp folder."""

    def __init__(self, tmp: Path, name: str, durable: bool, profile: Path | None = None) -> None:
        self.profile = profile
        self.tmp = tmp / name
        self.logs = self.tmp / "logs"
        self.logs.mkdir(parents=True)
        self.durable = durable
        self.server: LocalServerProc | None = None
        self.worker: Proc | None = None
        self.driver: Driver | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> ServerRig:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()  # a failed start stops what it started
            raise
        return self

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        db = self.tmp / "resonate.db" if self.durable else None
        command = profiled_server(self.profile) if self.profile is not None else LOCALSERVER
        self.server = LocalServerProc(self.logs, db=db, command=command)
        transport, ann = await loop.create_datagram_endpoint(Announcements, local_addr=("127.0.0.1", 0))
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._transport = transport
        port = transport.get_extra_info("sockname")[1]
        self.worker = Proc(
            "worker",
            [PYTHON, "-m", "bench.sdk_worker", self.server.url, GROUP, str(port)],
            log_dir=self.logs,
        )
        await asyncio.to_thread(self.worker.wait_for_line, "bench worker ready", 30.0)
        driver = self.driver = Driver(self.server.url, ann)
        # Warm up: connections, the listener's stream, the worker's code paths.
        await bounded(20, 4, lambda i: driver.cycle(f"warm{i}-{uuid.uuid4().hex[:8]}"))

    async def __aexit__(self, *exc: object) -> None:
        if self.driver is not None:
            await self.driver.close()
        if self._transport is not None:
            self._transport.close()
        for proc in (self.worker, self.server):
            if proc is not None:
                proc.stop()

    @property
    def server_pid(self) -> int:
        assert self.server is not None
        return self.server.popen.pid

    @property
    def worker_pid(self) -> int:
        assert self.worker is not None
        return self.worker.popen.pid


async def bench_latency(rig: ServerRig, runs: int) -> dict[str, Any]:
    d = rig.driver
    assert d is not None
    bare_rtt, bare_push, rtt, complete = [], [], [], []
    for _ in range(runs):
        # Baseline: a bare promise with a listener (no workflow): resolve -> unblock push.
        pid = f"bare-{uuid.uuid4().hex[:12]}"
        await d.send.promises.create(pid, int(time.time() * 1000) + 3600_000, Value(data=None), {})
        handle = await d.listen.get(pid)
        t0 = time.perf_counter()
        await d.send.promises.resolve(pid, Value(data=1))
        t1 = time.perf_counter()
        await asyncio.wait_for(handle.result(), 30)
        t2 = time.perf_counter()
        bare_rtt.append((t1 - t0) * 1000)
        bare_push.append((t2 - t0) * 1000)
        # The workflow: wait until it is suspended on its promise, listen on the root, resolve.
        root = f"lat-{uuid.uuid4().hex[:12]}"
        pid = await asyncio.wait_for(await d.start_wf(root), 30)
        await d.server.wait_suspended(root, interval=0)  # a tight loop: the resolve follows at once
        handle = await d.listen.get(root)
        t0 = time.perf_counter()
        await d.send.promises.resolve(pid, Value(data={"ok": 1}))
        t1 = time.perf_counter()
        await asyncio.wait_for(handle.result(), 30)
        t2 = time.perf_counter()
        rtt.append((t1 - t0) * 1000)
        complete.append((t2 - t0) * 1000)
    return {
        "resolve_rtt_ms": summary(rtt, "ms"),
        "resolve_to_completion_ms": summary(complete, "ms"),
        "bare_resolve_rtt_ms": summary(bare_rtt, "ms"),
        "bare_resolve_to_push_ms": summary(bare_push, "ms"),
    }


async def bench_throughput(rig: ServerRig, runs: int, cycles: int, concurrency: int) -> dict[str, Any]:
    d = rig.driver
    assert d is not None
    rates, server_cpu, worker_cpu = [], [], []
    for r in range(runs):
        tag = uuid.uuid4().hex[:8]
        s0, w0, t0 = cpu_seconds(rig.server_pid), cpu_seconds(rig.worker_pid), time.perf_counter()
        await bounded(cycles, concurrency, lambda i, tag=tag: d.cycle(f"tp{tag}-{i}"))
        t1, s1, w1 = time.perf_counter(), cpu_seconds(rig.server_pid), cpu_seconds(rig.worker_pid)
        rates.append(cycles / (t1 - t0))
        server_cpu.append((s1 - s0) / cycles * 1000)
        worker_cpu.append((w1 - w0) / cycles * 1000)
        progress(f"throughput run {r + 1}/{runs}: {rates[-1]:.0f} cycles/s")
    return {
        "cycles_per_s": summary(rates, "cycles/s"),
        "server_cpu_ms_per_cycle": summary(server_cpu, "ms"),
        "worker_cpu_ms_per_cycle": summary(worker_cpu, "ms"),
        "cycles_per_run": cycles,
        "concurrency": concurrency,
    }


async def add_waiting(rig: ServerRig, n: int, concurrency: int = 48) -> None:
    """Add ``n`` workflows that wait on their promise; return once every one is suspended."""
    d = rig.driver
    assert d is not None
    tag = uuid.uuid4().hex[:8]
    roots = [f"wait{tag}-{i}" for i in range(n)]
    await bounded(n, concurrency, lambda i: d.park(roots[i]))
    pending = roots

    async def all_suspended() -> bool:
        nonlocal pending
        states = await asyncio.gather(*(d.server.task_state(r) for r in pending))
        pending = [r for r, s in zip(pending, states, strict=True) if s != "suspended"]
        return not pending

    await poll_until(all_suspended, timeout=120, interval=0.1, what=f"{n} waiting workflows to suspend")


async def cpu_batches(rig: ServerRig, batches: int, cycles: int, concurrency: int) -> list[float]:
    d = rig.driver
    assert d is not None
    out, sys_share = [], []
    for _ in range(batches):
        tag = uuid.uuid4().hex[:8]
        await asyncio.sleep(0.2)  # let the server go idle
        u0, s0 = cpu_times(rig.server_pid)
        await bounded(cycles, concurrency, lambda i, tag=tag: d.cycle(f"cpu{tag}-{i}"))
        u1, s1 = cpu_times(rig.server_pid)
        out.append((u1 - u0 + s1 - s0) / cycles * 1000)
        sys_share.append((s1 - s0) / max(u1 - u0 + s1 - s0, 1e-9))
    return out, sys_share


async def idle_cpu(rig: ServerRig, seconds: float = 2.0) -> float:
    """Server CPU (ms per s) over ``seconds`` while the driver asks nothing of it."""
    return await cpu_ms_per_s([rig.server_pid], seconds)


async def settle_server(rig: ServerRig, max_s: float) -> float:
    """Wait until the server is idle (two 1 s windows of at most 1 clock tick); return the seconds waited.

    After a burst of starts the server keeps working for about a minute on its own.
    """
    return await settle([rig.server_pid], max_s, window_s=1.0, below_ms_per_s=2000 / CLK_TCK, windows=2)


async def bench_scaling(rig: ServerRig, cfg: Config) -> dict[str, Any]:
    await add_waiting(rig, cfg.few_waiting)
    settle_few = await settle_server(rig, cfg.settle_s)
    few, sys_few = await cpu_batches(rig, cfg.cpu_batches, cfg.cpu_batch_cycles, cfg.concurrency)
    progress(f"cpu/workflow with {cfg.few_waiting} waiting: {statistics.median(few):.2f} ms")
    await settle_server(rig, cfg.settle_s)
    idle_few = await idle_cpu(rig, 3.0 if cfg.settle_s else 1.0)
    chunk = cfg.many_waiting // cfg.waiting_chunks
    per_wf_kb, created_per_s = [], []
    rss_before = rss_kb(rig.server_pid)
    for c in range(cfg.waiting_chunks):
        r0, t0 = rss_kb(rig.server_pid), time.perf_counter()
        await add_waiting(rig, chunk)
        created_per_s.append(chunk / (time.perf_counter() - t0))
        per_wf_kb.append((rss_kb(rig.server_pid) - r0) / chunk)
        progress(f"waiting: {cfg.few_waiting + (c + 1) * chunk} ({per_wf_kb[-1]:.2f} KiB each)")
    rss_after = rss_kb(rig.server_pid)
    # With no requests at all, watch the server for the leases (60 s) and retries (30 s) of the burst to lapse.
    after = [await idle_cpu(rig, 1.0) for _ in range(int(cfg.after_burst_s))]
    if after:
        progress(
            f"after the burst, no requests: {sum(after):.0f} ms CPU over {len(after)} s, peak {max(after):.0f} ms/s"
        )
    settle_many = await settle_server(rig, cfg.settle_s)
    idle_many = await idle_cpu(rig, 3.0 if cfg.settle_s else 1.0)
    many, sys_many = await cpu_batches(rig, cfg.cpu_batches, cfg.cpu_batch_cycles, cfg.concurrency)
    progress(f"cpu/workflow with {cfg.few_waiting + cfg.many_waiting} waiting: {statistics.median(many):.2f} ms")
    return {
        "waiting_few": cfg.few_waiting,
        "waiting_many": cfg.few_waiting + cfg.many_waiting,
        "cpu_ms_per_wf_few_waiting": summary(few, "ms"),
        "cpu_ms_per_wf_many_waiting": summary(many, "ms"),
        "cpu_ratio_many_over_few": statistics.median(many) / statistics.median(few),
        "cpu_kernel_share_few_many": [statistics.median(sys_few), statistics.median(sys_many)],
        "settle_s_before_few_many": [settle_few, settle_many],
        "idle_cpu_ms_per_s_few": idle_few,
        "idle_cpu_ms_per_s_many": idle_many,
        "after_burst_cpu_ms_per_s": after,
        "after_burst_cpu_ms_per_waiting_wf": sum(after) / cfg.many_waiting if after else None,
        "rss_kib_per_waiting_wf": summary(per_wf_kb, "KiB"),
        "rss_kib_per_waiting_wf_overall": (rss_after - rss_before) / cfg.many_waiting,
        "rss_kib_before_after": [rss_before, rss_after],
        "waiting_wf_created_per_s": summary(created_per_s, "wf/s"),
    }


async def section_server(tmp: Path, cfg: Config, durable: bool, profile: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with ServerRig(tmp, "server-a", durable, profile) as rig:
        progress("latency")
        out["latency"] = await bench_latency(rig, cfg.latency_runs)
        progress("throughput")
        out["throughput"] = await bench_throughput(rig, cfg.throughput_runs, cfg.throughput_cycles, cfg.concurrency)
    async with ServerRig(tmp, "server-b", durable) as rig:
        progress("scaling (cpu and memory with waiting workflows)")
        out["scaling"] = await bench_scaling(rig, cfg)
    return out


# -- section 2: the hitl stack -------------------------------------------------------------------


async def section_stack(tmp: Path, cfg: Config, durable: bool, skip: set[str], spy: Path | None) -> dict[str, Any]:
    """Resume latency (one worker, one request at a time), then throughput with one and two workers."""
    from bench import full_stack as bench_stack

    out: dict[str, Any] = {}
    async with bench_stack.driven_stack(tmp / "stack", durable=durable) as d:
        if "latency" not in skip:
            progress("hitl stack: resume latency")
            out.update(await bench_stack.section_latency(d, cfg.stack_runs, progress))
        if "throughput" not in skip:
            progress("hitl stack: throughput")
            out["throughput"] = await bench_stack.section_throughput(d, cfg, progress, spy)
    return out


# -- report ------------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"hitl benchmark  ({'quick' if results['quick'] else 'full'}; server {'durable --db' if results['durable'] else 'in memory'})",
        f"machine: {m['nproc']} CPU, {m['cpu']}, Python {m['python']}, loadavg start {' '.join(m['loadavg_at_start'])}, end {' '.join(m['loadavg_at_end'])}",
        f"command: {m['command']}",
        "",
        f"{'figure':<66} {'median':>10} {'p99':>10}  {'n':>5}",
        "-" * 92,
    ]

    def row(label: str, s: dict[str, Any], fmt: str = "{:.2f}") -> None:
        unit = s["unit"]
        lines.append(
            f"{label + ' (' + unit + ')':<66} {fmt.format(s['median']):>10} {fmt.format(s['p99']):>10}  {s['n']:>5}"
        )

    srv = results.get("server")
    if srv:
        lat, tp, sc = srv["latency"], srv["throughput"], srv["scaling"]
        lines.append("1. local server, real SDK (server, worker, driver: 3 processes)")
        row("  resolve round trip, workflow's promise", lat["resolve_rtt_ms"])
        row("  resolve -> workflow result pushed to listener", lat["resolve_to_completion_ms"])
        row("  baseline: resolve round trip, bare promise", lat["bare_resolve_rtt_ms"])
        row("  baseline: resolve -> push, bare promise (no workflow)", lat["bare_resolve_to_push_ms"])
        row(f"  start+resolve cycles/s, 1 worker, {tp['concurrency']} in flight", tp["cycles_per_s"], "{:.0f}")
        row("  server CPU per cycle during throughput", tp["server_cpu_ms_per_cycle"])
        row("  worker CPU per cycle during throughput", tp["worker_cpu_ms_per_cycle"])
        row(f"  server CPU per workflow, {sc['waiting_few']} waiting", sc["cpu_ms_per_wf_few_waiting"])
        row(f"  server CPU per workflow, {sc['waiting_many']} waiting", sc["cpu_ms_per_wf_many_waiting"])
        lines.append(
            f"{'  CPU ratio, many / few waiting (median / median)':<66} {sc['cpu_ratio_many_over_few']:>10.2f}"
        )
        ks = sc["cpu_kernel_share_few_many"]
        lines.append(f"{'  kernel (stime) share of that CPU, few / many waiting':<66} {ks[0]:>10.0%} {ks[1]:>10.0%}")
        row("  server RSS per waiting workflow, per chunk", sc["rss_kib_per_waiting_wf"])
        lines.append(
            f"{'  server RSS per waiting workflow, overall (KiB)':<66} {sc['rss_kib_per_waiting_wf_overall']:>10.2f}"
            f"   RSS {sc['rss_kib_before_after'][0] / 1024:.0f} -> {sc['rss_kib_before_after'][1] / 1024:.0f} MiB"
        )
        after = sc["after_burst_cpu_ms_per_s"]
        if after:
            busy = [i for i, v in enumerate(after) if v > 1000 / CLK_TCK]
            lines.append(
                f"{'  server CPU, no requests, 70 s after adding them (ms/wf)':<66} {sc['after_burst_cpu_ms_per_waiting_wf']:>10.3f}"
                f"   peak {max(after):.0f} ms/s, busy until +{(busy[-1] + 1) if busy else 0} s"
            )
        row("  waiting workflows created per s (no listener)", sc["waiting_wf_created_per_s"], "{:.0f}")
    st = results.get("stack")
    if st:
        lines.append("2. hitl stack (server, SMTP sink, worker, start, unblock: 5 processes)")
        if "resume_ms" in st:
            lines.append("  one request at a time, 1 worker; person: email link -> page -> Approve")
            row("  start POST round trip", st["start_post_ms"])
            row("  start POST -> email stored", st["start_to_email_ms"])
            row("  approver's POST to unblock, round trip", st["unblock_post_ms"])
            row("  unblock POST returned -> run settled (listener push)", st["post_returned_to_settled_ms"])
            row("  RESUME: POST returned -> result read via GET [<15/<60]", st["resume_ms"])
            row("  unblock POST sent -> result read via GET", st["post_sent_to_result_ms"])
        tp = st.get("throughput")
        if tp:
            lines.append("  full cycles: start POST, email in inbox, minted token, unblock POST, result GET")
            for key, label in (("one_worker", "1 worker"), ("two_workers", "2 workers")):
                t = tp[key]
                row(f"  cycles/s, {label}, {t['concurrency']} in flight [>=150, 1 worker]", t["cycles_per_s"], "{:.0f}")
                row(f"  cycle duration, {label}", t["cycle_ms"], "{:.0f}")
                cpu = t["cpu_ms_per_cycle"]
                lines.append(
                    f"    CPU ms per cycle, {label} (median over runs; total {t['cpu_ms_per_cycle_total']['median']:.1f}):"
                )
                lines.append("      " + "  ".join(f"{n} {v['median']:.2f}" for n, v in cpu.items()))
                product = sum(v["median"] for n, v in cpu.items() if n not in ("sink", "driver"))
                ncpu = results["machine"]["nproc"]
                lines.append(
                    f"      CPU-bound ceiling on {ncpu} cores: {1000 * ncpu / t['cpu_ms_per_cycle_total']['median']:.0f} cycles/s;"
                    f" product processes alone (no sink, no driver: {product:.1f} ms) {1000 * ncpu / product:.0f} cycles/s"
                )
                for proc, prof in (t.get("py_spy") or {}).items():
                    top = ", ".join(f"{f.split(' (')[0]} {share:.0%}" for f, share in prof["self"][:5])
                    lines.append(f"      py-spy {proc} self: {top}")
    cb = results.get("callers")
    if cb:
        lines.append("2b. getting the decision (on_decision: a caller's promise and a webhook; one request at a time)")
        row("  unblock POST returned -> run settled (the resume, beside)", cb["post_returned_to_settled_ms"])
        row("  unblock POST returned -> caller's promise settled (pushed)", cb["post_returned_to_caller_promise_ms"])
        row("  unblock POST returned -> webhook event received", cb["post_returned_to_webhook_ms"])
        for n, c in (cb.get("start_cost") or {}).items():
            row(f"  POST start with {n} promise target(s), round trip", c["post_ms"])
            lines.append(f"    CPU per start, server + start function: {c['cpu_ms_per_start']:.2f} ms")
        w = cb["waiting"]
        lines.append(
            f"  {w['waiters']} callers waiting on pending requests through start, CPU ms/s (server / start function):"
        )
        for key, label in (
            ("idle_cpu_ms_per_s", "nobody waiting"),
            ("long_poll_cpu_ms_per_s", "long poll (?wait=60, pushed)"),
            ("polling_1s_cpu_ms_per_s", "polling the status once a second"),
        ):
            lines.append(f"    {label:<60} {w[key]['server']:>7.1f} / {w[key]['start']:.1f}")
        lines.append(
            f"    server RSS per long-polling waiter {w['server_rss_kib_per_long_poll']:.1f} KiB;"
            f" {w['long_polls_still_waiting']} of {w['waiters']} still waiting at the end of the window"
        )
    si = results.get("signin")
    if si:
        v = si["verification"]
        lines.append("2c. signed-in approvals (HITL_SIGN_IN=iap)")
        lines.append(
            f"  IAP assertion check, keys cached: {v['verify_cpu_ms'] * 1000:.0f} µs CPU (the verifier);"
            f" {v['gate_cpu_ms'] * 1000:.0f} µs CPU as unblock's gate calls it; target < 1 ms"
        )
        lines.append(
            f"  an inbox view (3 requests of one's own; through the dev sign-in; {si['inbox']['views']} views each):"
        )
        lines.append(
            f"  {'pending on server':>18} {'median ms':>10} {'p99 ms':>8} {'requests':>9} {'server ms':>10} {'unblock ms':>11}"
        )
        for lv in si["inbox"]["levels"]:
            vm = lv["view_ms"]
            lines.append(
                f"  {lv['pending_on_server']:>18} {vm['median']:>10.2f} {vm['p99']:>8.2f} {lv['server_requests']:>9}"
                f" {lv['server_cpu_ms']:>10.2f} {lv['unblock_cpu_ms']:>11.2f}"
            )
    wt = results.get("waiting")
    if wt:
        lines.append(
            "3. cost of waiting (1 worker; created via start POSTs, 64 in flight, until emailed; minimal SMTP sink)"
        )
        b = wt["base_rss_kib"]
        lines.append(f"  before: server RSS {b['server'] / 1024:.1f} MiB, worker RSS {b['worker'] / 1024:.1f} MiB")
        lines.append(
            f"  {'waiting':>8} {'created/s':>9} {'srv MiB':>8} {'KiB/req':>8} {'wrk MiB':>8} {'idle ms/s':>9} {'cycle med':>9} {'p99 ms':>7}"
        )
        for lv in wt["levels"]:
            c = lv["cycle_ms"]
            lines.append(
                f"  {lv['waiting']:>8} {lv['created_per_s']:>9.0f} {lv['server_rss_kib'] / 1024:>8.1f} {lv['server_kib_per_waiting']:>8.2f}"
                f" {lv['worker_rss_kib'] / 1024:>8.1f} {lv['server_idle_cpu_ms_per_s']:>9.0f} {c['median']:>9.0f} {c['p99']:>7.0f}"
            )
        lines.append(
            f"{'  one more cycle, most / fewest waiting (median) [<=1.3]':<66} {wt['cycle_ratio_last_over_first']:>10.2f}"
        )
        lines.append(
            f"{'  worker RSS growth, before -> most waiting (KiB) [flat]':<66} {wt['worker_rss_growth_kib']:>10.0f}"
            f"   {wt['worker_kib_per_waiting_after_first_level']:.2f} KiB per request after the first level"
            + (
                f", {wt['worker_kib_per_waiting_last_levels']:.2f} between the last two"
                if wt.get("worker_kib_per_waiting_last_levels") is not None
                else ""
            )
        )
    mem = results.get("server_mem")
    if mem:
        at = mem["at"]
        lines.append(f"4. local server memory at {mem['waiting']} waiting (tracemalloc, 1 frame)")
        lines.append(
            f"  traced per waiting request {mem['traced_bytes_per_waiting']:.0f} B; per request "
            f"{mem['promises_per_waiting']:.2f} Promise, {mem['tasks_per_waiting']:.2f} Task objects"
        )
        for kind in ("Promise", "Task"):
            o = at["objects"][kind]
            parts = ", ".join(f"{k} {v:.0f}" for k, v in o["bytes_per_object_by_attr"].items() if v >= 8)
            lines.append(f"  {kind}: {o['count']} objects, {o['bytes_per_object']:.0f} B each ({parts})")
            lines.append(
                f"    of which duplicate strings (equal values, separate objects): {o['duplicate_str_bytes_per_object']:.0f} B"
            )
        eng = ", ".join(
            f"{k} {v['bytes'] / max(mem['waiting'], 1):.0f}" for k, v in at["engine"].items() if v["bytes"] > 1024
        )
        lines.append(f"  engine indexes beyond the objects, B per waiting request: {eng}")
        lines.append(f"  {'top 10 allocation sites by growth per waiting request':<70} {'MiB':>6} {'B/req':>6}")
        lines.extend(
            f"  {x['site'][-34:]:<34} {x['code'][:35]:<35} {x['bytes'] / 2**20:>6.2f} {x['bytes_per_waiting']:>6.0f}"
            for x in at["top_growth"]
        )
    cold = results.get("cold")
    if cold:
        lines.append("5. cold start: process start -> first request answered (functions-framework --asgi)")
        for n in ("hello", "start", "unblock"):
            row(f"  {n} (HTTP {','.join(map(str, cold[n]['statuses']))})", cold[n], "{:.0f}")
        lines.append(
            f"{'  ratio to hello, start / unblock (median) [<1.5]':<66} {cold['ratio_start']:>10.2f} {cold['ratio_unblock']:>10.2f}"
        )
        it = cold["importtime_main"]
        lines.append(
            f"  python -X importtime functions/main.py (median of runs): {it['total_ms']:.0f} ms, {it['modules']} modules"
            f" (bench/hello.py: {cold['importtime_hello']['total_ms']:.0f} ms); top 10 cumulative:"
        )
        lines.extend(
            f"    {'  ' * r['depth']}{r['module']:<{46 - 2 * r['depth']}} {r['cumulative_us'] / 1000:>7.1f} ms  (self {r['self_us'] / 1000:.1f})"
            for r in it["top_cumulative"]
        )
    lines.append(f"total wall time {results['wall_s']:.0f} s")
    return "\n".join(lines)


SECTIONS = ("server", "latency", "throughput", "callers", "signin", "waiting", "mem", "cold")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a smoke run (about 90 s)")
    ap.add_argument(
        "--durable", action="store_true", help="run the local server with --db (SQLite) instead of in memory"
    )
    ap.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    ap.add_argument(
        "--no-stack", action="store_true", help="skip every hitl stack section (latency,throughput,waiting,mem,cold)"
    )
    ap.add_argument("--no-server", action="store_true", help="skip section 1 (the local server)")
    ap.add_argument(
        "--profile-server",
        type=Path,
        metavar="PROF",
        help="run section 1's first server under cProfile, write its stats here",
    )
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="after each throughput series, one more run under py-spy (pip install py-spy); profiles here, summary in the table",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (process logs) and print its path")
    ap.add_argument("--out", type=Path, help="write the results as JSON here (e.g. bench-results.json)")
    args = ap.parse_args()
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    if unknown := skip - set(SECTIONS):
        ap.error(f"unknown sections: {sorted(unknown)}")
    if args.no_server:
        skip.add("server")
    if args.no_stack:
        skip.update(SECTIONS[1:])
    cfg = QUICK if args.quick else FULL
    if args.quick:
        progress("quick: no settling before CPU batches, so the many-waiting CPU figure includes the post-burst work")
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "durable": args.durable,
        "config": cfg.__dict__,
    }
    progress(f"load average at start: {' '.join(results['machine']['loadavg_at_start'])}")
    t0 = time.perf_counter()
    from bench import full_stack as bench_stack

    with tempfile.TemporaryDirectory(prefix="hitl-bench-", delete=not args.keep) as tmp:
        if args.keep:
            progress(f"logs under {tmp}")
        if "server" not in skip:
            results["server"] = asyncio.run(section_server(Path(tmp), cfg, args.durable, args.profile_server))
            if args.profile_server:
                import pstats

                progress(f"server profile (latency + throughput phases) in {args.profile_server}")
                pstats.Stats(str(args.profile_server), stream=sys.stderr).sort_stats("tottime").print_stats(30)
        if not {"latency", "throughput"} <= skip:
            results["stack"] = asyncio.run(section_stack(Path(tmp), cfg, args.durable, skip, args.py_spy))
        if "callers" not in skip:
            from bench.callers import section_callers

            results["callers"] = asyncio.run(section_callers(Path(tmp), cfg, progress, args.durable))
        if "signin" not in skip:
            from bench.signin import section_signin

            progress("sign-in: the assertion's check, the inbox")
            results["signin"] = asyncio.run(section_signin(Path(tmp), cfg, progress))
        if "waiting" not in skip:
            progress(f"cost of waiting: {', '.join(map(str, cfg.waiting_levels))} requests")
            results["waiting"] = asyncio.run(bench_stack.section_waiting(Path(tmp), cfg, progress, args.durable))
        if "mem" not in skip:
            progress(f"server memory breakdown (tracemalloc) at {cfg.mem_level} waiting")
            results["server_mem"] = asyncio.run(
                bench_stack.section_server_mem(Path(tmp), cfg.mem_level, progress, args.durable)
            )
        if "cold" not in skip:
            progress("cold start")
            results["cold"] = bench_stack.section_cold(Path(tmp), cfg.cold_runs, progress)
    results["wall_s"] = time.perf_counter() - t0
    results["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
