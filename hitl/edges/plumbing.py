"""What both HTTP functions share: routing as data, bounded bodies, JSON answers, the trace.

An edge is a :class:`Router`: a table from ``(method, path)`` to a handler,
so what each function answers is read in one place, and a method or path
outside it gets a 405 (with ``Allow``) or a 404 from the table itself. The
handlers are plain ``async (Request) -> Response`` functions, so a test drives
an edge in-process through any ASGI test client.

Imports only Starlette (loaded by functions-framework anyway) and
:mod:`hitl.logs`: it is on every cold start.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hitl import logs
from hitl.operations import Client
from hitl.settings import ResonateSettings

Handler = Callable[[Request], Awaitable[Response]]

#: Seconds a client is asked to wait after a 503.
RETRY_AFTER = "5"


class HasServer(Protocol):
    @property
    def resonate(self) -> ResonateSettings: ...


@dataclass(frozen=True)
class Edge[S: HasServer]:
    """An HTTP function's handlers: its settings, its client to the Resonate server, its clock."""

    settings: S
    client: Client
    clock: Callable[[], float] = time.time

    @property
    def timeout(self) -> float:
        """How long a call to the server may take before the function answers 503."""
        return self.settings.resonate.timeout


@dataclass(frozen=True, slots=True)
class Router:
    """Dispatches a request by method and path (trailing slashes ignored)."""

    #: {path: {method: handler}}; the path as the function sees it, ``""`` for the root.
    routes: Mapping[str, Mapping[str, Handler]]
    #: The answer for a path or method outside the table: (status, message, headers).
    refuse: Callable[[int, str, Mapping[str, str]], Response]
    project: str | None = None

    async def __call__(self, request: Request) -> Response:
        with logs.bind(trace=logs.trace_from_header(request.headers.get("x-cloud-trace-context"), self.project)):
            methods = self.routes.get(request.url.path.rstrip("/"))
            if methods is None:
                return self.refuse(404, "no such path", {})
            handler = methods.get(request.method)
            if handler is None:
                allowed = ", ".join(methods)
                return self.refuse(405, f"use {allowed}", {"Allow": allowed})
            return await handler(request)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it exceeds ``limit`` bytes (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def json_response(status: int, body: Mapping[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status, headers=headers or None)


def client_ip(request: Request) -> str:
    """The caller's address: the first hop of X-Forwarded-For (Cloud Run's front end sets it)."""
    first = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return first or (request.client.host if request.client else "")
