"""A tiny worker on the Resonate SDK, unmodified: HttpConnection + SSEConnection.

    python tests/localserver/sdkapp/worker.py URL [PID]

Registers ``wf``: it creates an external promise, records the promise's id
once through a durable ``ctx.run`` step (a ``promise-id <id>`` line on
stdout), waits for someone to settle the promise and returns its value.
The SDK's own log lines (``SSE connection established: ...``) go to stdout
too, which is how tests see it (re)connect.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate

GROUP = "sdkworker"


def record(ctx: Context, promise_id: str) -> str:
    print(f"promise-id {promise_id}", flush=True)
    return promise_id


async def wf(ctx: Context, arg: Any) -> dict[str, Any]:
    p = ctx.promise(timeout=timedelta(hours=1))
    promise_id = await p.id()
    await ctx.run(record, promise_id)
    value = await p
    return {"arg": arg, "value": value}


async def main(url: str, pid: str | None) -> None:
    r = Resonate(url=url, group=GROUP, pid=pid, ttl=timedelta(seconds=3))
    r.register(wf, name="wf")
    print(f"worker up pid={r._pid}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
