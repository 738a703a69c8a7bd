"""The caller's worker: long-polls its own group and runs :mod:`examples.caller_workflow.workflow`.

    RESONATE_URL=http://127.0.0.1:8001 HITL_START_URL=http://127.0.0.1:8080/ \\
        .venv/bin/python -m examples.caller_workflow.worker

Environment: ``RESONATE_URL`` (required; the same server hitl uses), ``RESONATE_TOKEN``,
``HITL_START_URL`` (required), ``CALLER_GROUP`` (default ``deploys``), ``DEPLOY_LEDGER``
(default ``deploys.jsonl``), ``CALLER_TASK_TTL`` (seconds, default 60).

It uses hitl's worker client (:func:`hitl.client.polling.polling`) rather than the
bare SDK's: resonate-sdk 0.8.1's own listener stops for good after 5 idle minutes, and
its heartbeat is refused when two workflows run at once (see that module). A worker of
another SDK works the same way: only the promise and ``on_decision`` matter to hitl.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import timedelta
from pathlib import Path

from examples.caller_workflow import workflow
from hitl.client.polling import polling
from hitl.settings import ResonateSettings

log = logging.getLogger("caller")


async def serve() -> None:
    settings = ResonateSettings(
        url=os.environ["RESONATE_URL"].rstrip("/"),
        token=os.environ.get("RESONATE_TOKEN") or None,
        group=os.environ.get("CALLER_GROUP", "deploys"),
    )
    ttl = timedelta(seconds=float(os.environ.get("CALLER_TASK_TTL", "60")))
    resonate, source = polling(settings, ttl=ttl, sse_timeout=240)
    resonate.with_dependency(workflow.Hitl(os.environ["HITL_START_URL"]))
    resonate.with_dependency(workflow.Ledger(Path(os.environ.get("DEPLOY_LEDGER", "deploys.jsonl"))))
    workflow.register(resonate)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await source.connected.wait()
    log.info("caller worker listening on group %s", settings.group)
    await stop.wait()
    await resonate.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("resonate.validation").setLevel(logging.WARNING)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
