"""Benchmark worker: the real SDK, one process, running ``wf`` for ``bench/run.py``.

    python bench/sdk_worker.py URL GROUP ANNOUNCE_PORT

``wf`` creates a bare promise, announces its id to the driver (one UDP
datagram to 127.0.0.1:ANNOUNCE_PORT, so the announcement costs the server
nothing), then waits on the promise and returns its value. The announcement
is a durable step (``ctx.run``); a replay may send it again, and the driver
ignores duplicates.

Prints ``bench worker ready`` once its SSE stream to the server is open.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from datetime import timedelta
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate

_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_announce: tuple[str, int] = ("127.0.0.1", 0)


def record(ctx: Context, pid: str) -> str:
    _sock.sendto(pid.encode(), _announce)
    return pid


async def wf(ctx: Context) -> Any:
    p = ctx.promise(timeout=timedelta(hours=1))
    pid = await p.id()
    await ctx.run(record, pid)
    return await p


class _Ready(logging.Handler):
    def emit(self, rec: logging.LogRecord) -> None:
        if "SSE connection established" in rec.getMessage():
            print("bench worker ready", flush=True)


async def main(url: str, group: str, port: int) -> None:
    global _announce
    _announce = ("127.0.0.1", port)
    sse_log = logging.getLogger("resonate.connections.sse")
    sse_log.setLevel(logging.INFO)
    sse_log.addHandler(_Ready())
    r = Resonate(url=url, group=group)
    r.register(wf, name="wf")
    r.register(record, name="record")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await r.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
