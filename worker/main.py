"""The worker: long-polls the Resonate server for group ``worker`` and runs approvals.

    python -m worker.main

Configured only from the environment (see README). A missing or malformed
variable stops it at once with exit code 2: with no server URL the SDK would
quietly run everything in-process, which must never happen.

It answers ``GET /health`` (alive) and ``GET /ready`` (listening to the
server) on ``$PORT`` for Cloud Run. On SIGTERM it stops taking work, lets the
executions in flight finish (up to ``DRAIN_SECONDS``), then disconnects: the
SDK's own ``stop()`` cuts the network first, which would lose the result of
a step in flight and leave its lease hanging until it expires.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import IO

from aiohttp import web
from resonate.resonate import Resonate

from hitl import approval, logs
from hitl.client import runs
from hitl.client.polling import PollSource, polling
from hitl.delivery import Deliverer
from hitl.inboxes import Inboxes
from hitl.notify.dispatcher import Notifier
from hitl.settings import ConfigError, LogFormat, WorkerSettings

logger = logging.getLogger("hitl.worker")

#: Cloud Run gives a container 10 s between SIGTERM and SIGKILL.
DRAIN_SECONDS = 8.0

#: The SDK logs every promise create and settle, request and response, at INFO here (a trace
#: for its validation harness): a dozen lines per approval, 11% of the worker's CPU per cycle
#: in the throughput benchmark, and nothing an operator acts on. Its warnings still show.
SDK_TRACE_LOGGER = "resonate.validation"


def setup_logging(fmt: LogFormat, secrets: Iterable[str | bytes | None], stream: IO[str] | None = None) -> None:
    """The worker's logging: :func:`hitl.logs.setup` through google-cloud-logging's handler,
    without the SDK's per-promise trace."""
    logs.setup("worker", fmt, stream, secrets=secrets, library=True)
    logging.getLogger(SDK_TRACE_LOGGER).setLevel(logging.WARNING)


def build(settings: WorkerSettings) -> tuple[Resonate, PollSource]:
    """The worker's client with the approval workflow and its dependencies registered, and its poll source."""
    resonate, source = polling(settings.resonate, ttl=settings.task_ttl, sse_timeout=settings.sse_timeout)
    resonate.with_dependency(
        Notifier(
            settings.signing_key,
            settings.unblock_url,
            settings.smtp,
            hosts=settings.hosts,
            notify_timeout=settings.notify_timeout,
            webhook_secret=settings.notify_webhook_secret,
        )
    )
    resonate.with_dependency(
        Deliverer(
            retry_for=settings.delivery_retry_for,
            webhook_hosts=settings.hosts.webhook,
            webhook_secret=settings.notify_webhook_secret,
            timeout=settings.notify_timeout,
        )
    )
    resonate.with_dependency(resonate.promises)
    resonate.with_dependency(runs.Group(settings.resonate.group))
    resonate.with_dependency(Inboxes(enabled=settings.sign_in == "iap"))
    approval.register(resonate)
    return resonate, source


async def _drain(resonate: Resonate, timeout: float) -> int:
    """Wait for the executions in flight; return how many were still running at the timeout."""
    running = resonate._runtime.bg_tasks  # noqa: SLF001 - the SDK exposes no public drain
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    while running and loop.time() < ends:
        await asyncio.wait(set(running), timeout=ends - loop.time())
    return len(running)


async def serve(settings: WorkerSettings) -> None:
    resonate, source = build(settings)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "connected": source.connected.is_set()})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response(
            {"connected": source.connected.is_set()}, status=200 if source.connected.is_set() else 503
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", settings.port).start()  # noqa: S104 - Cloud Run probes the container port

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("worker started", extra={"fields": {"group": settings.resonate.group, "port": settings.port}})

    await stop.wait()
    logger.info("stopping: no new work; draining executions in flight")
    await source.stop()
    left = await _drain(resonate, DRAIN_SECONDS)
    if left:
        logger.warning(
            "executions still running at shutdown; their leases will lapse", extra={"fields": {"count": left}}
        )
    await resonate.stop()
    await runner.cleanup()
    logger.info("worker stopped")


def main() -> None:
    try:
        settings = WorkerSettings.from_env()
    except ConfigError as exc:
        print(f"worker: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(settings.log_format, logs.secrets_from_env(os.environ))
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
