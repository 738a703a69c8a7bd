"""The local server's HTTP surface (aiohttp): ``POST /``, SSE polling, health.

Each request is applied to the :class:`~.engine.Engine`, stored (durable
mode) and only then answered and its messages routed, so nothing is
acknowledged or sent that a crash could take back. A background ticker fires
timeouts, lease expiries and task retries when they fall due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from devstack.localserver.auth import Auth
from devstack.localserver.engine import PROTOCOL_VERSION, Engine
from devstack.localserver.router import Router
from devstack.localserver.rules import ProtocolError
from devstack.localserver.store import Store
from hitl.clock import now_ms

logger = logging.getLogger("devstack.localserver")

MAX_STREAMS = 1000
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)


def _frame(message: dict[str, Any]) -> bytes:
    return b"data:" + json.dumps(message, sort_keys=True, separators=(",", ":")).encode() + b"\n\n"


class LocalServer:
    """Wires engine, store, router and auth into an aiohttp application."""

    def __init__(
        self,
        *,
        store: Store | None = None,
        auth: Auth | None = None,
        server_url: str = "",
        retry_ms: int = 30_000,
        stream_max_age: float = 240.0,
        keepalive: float = 15.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.engine = Engine(server_url=server_url, retry_ms=retry_ms)
        self.router = Router()
        self._store = store
        self._auth = auth
        self._clock = clock
        self._stream_max_age = stream_max_age
        self._keepalive = keepalive
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        if store is not None:
            store.load(self.engine)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self.handle_request)
        app.router.add_get("/poll/{group}/{pid}", self.handle_poll)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/ready", self.handle_ready)
        for legacy in ("/promises", "/schedules", "/tasks"):
            app.router.add_route("*", legacy, self.handle_legacy)
            app.router.add_route("*", legacy + "/{tail:.*}", self.handle_legacy)
        app.on_startup.append(self._start_ticker)
        app.on_shutdown.append(self._shutdown)
        return app

    # -- lifecycle --------------------------------------------------------------

    async def _start_ticker(self, app: web.Application) -> None:
        self._ticker = asyncio.create_task(self._tick_loop())

    async def _shutdown(self, app: web.Application) -> None:
        self._stopping.set()
        for stream in self.router.streams():
            stream.queue.put_nowait(None)
        if self._ticker is not None:
            self._ticker.cancel()
        if self._store is not None:
            self._store.close()

    async def _tick_loop(self) -> None:
        while True:
            self.engine.tick(self._clock())
            self._commit()
            due = self.engine.next_due()
            delay = 1.0 if due is None else min(max((due - self._clock()) / 1000, 0.005), 1.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _commit(self) -> None:
        """Store what changed, then route what the change produced."""
        engine = self.engine
        if self._store is not None:
            self._store.save(engine)
        else:
            engine.dirty_promises.clear()
            engine.dirty_tasks.clear()
            engine.dirty_schedules.clear()
        outgoing, engine.outgoing = engine.outgoing, []
        for address, message in outgoing:
            self.router.deliver(address, _frame(message))

    # -- POST / -------------------------------------------------------------------

    async def handle_request(self, request: web.Request) -> web.Response:
        body = await request.read()
        kind, corr_id = "unknown", "0"
        try:
            envelope = json.loads(body)
            if isinstance(envelope, dict):
                kind = envelope.get("kind") if isinstance(envelope.get("kind"), str) else kind
                head = envelope.get("head")
                if isinstance(head, dict) and isinstance(head.get("corrId"), str):
                    corr_id = head["corrId"]
            data, head = self._check_envelope(envelope)
            if self._auth is not None:
                token = head.get("auth")
                claims = self._auth.authenticate(token if isinstance(token, str) else None)
                self._auth.authorize(claims, kind, data)
            if kind.startswith("ui."):
                raise ProtocolError(404, "Not found")
            if kind.startswith("debug."):
                raise ProtocolError(403, "Debug operations are disabled")
            due_before = self.engine.next_due()
            status, out = self.engine.apply(kind, corr_id, data, self._clock())
            self._commit()
            due_after = self.engine.next_due()
            if due_after is not None and (due_before is None or due_after < due_before):
                self._wake.set()
        except ProtocolError as exc:
            status, out = exc.status, exc.message
        except (ValueError, UnicodeDecodeError) as exc:
            status, out = 400, f"Invalid request envelope: {exc}"
        if status >= 500:
            logger.error("request failed", extra={"fields": {"kind": kind, "status": status}})
        response = {
            "kind": kind,
            "head": {"corrId": corr_id, "status": status, "version": PROTOCOL_VERSION},
            "data": out,
        }
        return web.json_response(response, status=status)

    @staticmethod
    def _check_envelope(envelope: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(envelope, dict):
            raise ProtocolError(400, "Invalid request envelope: expected an object")
        head = envelope.get("head")
        if (
            not isinstance(head, dict)
            or not isinstance(head.get("corrId"), str)
            or not isinstance(head.get("version"), str)
        ):
            raise ProtocolError(400, "Invalid request envelope: missing field `head.corrId` or `head.version`")
        kind = envelope.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ProtocolError(400, "Missing or invalid 'kind' field — must be a non-empty string")
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ProtocolError(400, "Invalid 'data' field — must be an object")
        if head["version"] not in SUPPORTED_VERSIONS:
            raise ProtocolError(
                400,
                f"Unsupported protocol version '{head['version']}', supported versions: {json.dumps(list(SUPPORTED_VERSIONS))}",
            )
        return data, head

    # -- GET /poll/{group}/{pid} ------------------------------------------------

    async def handle_poll(self, request: web.Request) -> web.StreamResponse:
        if self._auth is not None:
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else None
            try:
                self._auth.authenticate(token)
            except ProtocolError:
                return web.Response(status=401, text="Unauthorized")
        if self.router.count() >= MAX_STREAMS:
            return web.Response(status=503, text="Poll registration at capacity")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        stream = self.router.open(request.match_info["group"], request.match_info["pid"])
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self._stream_max_age
        by_server = False
        try:
            while True:
                left = ends_at - loop.time()
                if left <= 0 or self._stopping.is_set():
                    by_server = True
                    break
                try:
                    frame = await asyncio.wait_for(stream.queue.get(), min(self._keepalive, left))
                except TimeoutError:
                    await response.write(b":\n\n")  # keep-alive comment; also detects a dead peer
                    continue
                if frame is None:
                    by_server = True
                    break
                await response.write(frame[1])
        except (ConnectionResetError, asyncio.CancelledError):
            self.router.close(stream, by_server=False)
            raise
        self.router.close(stream, by_server=by_server)
        await response.write_eof()
        return response

    # -- health ---------------------------------------------------------------------

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def handle_ready(self, request: web.Request) -> web.Response:
        if self._store is not None and not self._store.ready():
            return web.Response(status=503, text="storage unavailable")
        return web.Response(text="ready")

    async def handle_legacy(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": "This endpoint is no longer supported. Please update to the latest SDK."}, status=410
        )
