"""``python -m devstack.localserver``: run the local Resonate server.

    python -m devstack.localserver --port 8001 --db state/resonate.db   # durable
    python -m devstack.localserver --port 0                             # in memory, free port

The first line on stdout is ``listening on http://HOST:PORT`` (with the port
actually bound, so ``--port 0`` works for tests). SIGTERM and SIGINT stop it
cleanly: open streams end, the database is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from devstack.localserver.app import LocalServer
from devstack.localserver.auth import Auth
from devstack.localserver.store import Store
from hitl import logs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devstack.localserver", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8001, help="port to bind; 0 picks a free one (default 8001)")
    p.add_argument("--db", type=Path, help="SQLite file for durable state; in memory when omitted")
    p.add_argument(
        "--auth-publickey",
        help="PEM public key file (or 'none' for unsigned tokens): require a JWT in head.auth (off when omitted)",
    )
    p.add_argument("--url", default="", help="this server's public URL, sent as head.serverUrl in execute messages")
    p.add_argument("--retry-ms", type=int, default=30_000, help="pending-task retry interval (default 30000)")
    p.add_argument(
        "--stream-max-age",
        type=float,
        default=240.0,
        help="seconds before a poll stream is ended cleanly (default 240)",
    )
    p.add_argument(
        "--keepalive", type=float, default=15.0, help="seconds between keep-alive comments on idle streams (default 15)"
    )
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    server = LocalServer(
        store=Store(args.db) if args.db else None,
        auth=Auth.from_setting(args.auth_publickey) if args.auth_publickey else None,
        server_url=args.url,
        retry_ms=args.retry_ms,
        stream_max_age=args.stream_max_age,
        keepalive=args.keepalive,
    )
    runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, shutdown_timeout=2.0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on http://{args.host}:{port}", flush=True)
    logging.getLogger("devstack.localserver").info(
        "local Resonate server ready", extra={"fields": {"port": port, "durable": bool(args.db)}}
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.setup("localserver", args.log_format, level=args.log_level.upper())
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
