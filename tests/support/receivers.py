"""Local HTTP endpoints standing in for the Slack and webhook receivers the worker posts to.

- :func:`serve`: an aiohttp server answering every path with a handler, for
  the unit tests of the posting code (``async with serve(handler) as base_url``);
- :class:`Receiver`: a threaded server that records every POST and answers
  200, for the end-to-end tests (the worker, another process, posts to it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A real aiohttp server on a free loopback port, every path and method to ``handler``; yields its base URL."""
    app = web.Application()

    async def handle(request: web.Request) -> web.StreamResponse:  # a coroutine function, whatever ``handler`` is
        return await handler(request)

    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class Receiver:
    """Records every POST as ``(path, headers, body)`` in ``calls`` and answers 200; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                calls.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """The JSON bodies posted to ``path``, with their headers."""
        return [(h, json.loads(b)) for p, h, b in list(self.calls) if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
