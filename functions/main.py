"""Cloud Run function entry points: ``start`` and ``unblock`` (the edges live in :mod:`hitl.edges`).

    functions-framework --source functions/main.py --target start --port 8080
    functions-framework --source functions/main.py --target unblock --port 8081

Each function reads its settings, sets up logging and makes its send-only
Resonate client on its first request, never at import: a cold start pays for
nothing it does not use, and a misconfigured function fails on that request
with a message naming the variable.
"""

from __future__ import annotations

import functools
import os

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from hitl import logs
from hitl.edges.plumbing import Router
from hitl.settings import StartSettings, UnblockSettings


@functools.cache
def _start_router() -> Router:
    from hitl.client.sendonly import send_only
    from hitl.edges.start import Start

    settings = StartSettings.from_env()
    logs.setup("start", settings.log_format, secrets=logs.secrets_from_env(os.environ))
    return Start(settings, send_only(settings.resonate)).router()


@functools.cache
def _unblock_router() -> Router:
    from hitl.client.sendonly import send_only
    from hitl.edges.unblock import Unblock

    settings = UnblockSettings.from_env()
    logs.setup("unblock", settings.log_format, secrets=logs.secrets_from_env(os.environ))
    return Unblock(settings, send_only(settings.resonate)).router()


@functions_framework.aio.http
async def start(request: Request) -> Response:
    """POST a request to start an approval; GET ``?workflow_id=`` for its status; POST ``/cancel``."""
    return await _start_router()(request)


@functions_framework.aio.http
async def unblock(request: Request) -> Response:
    """GET/HEAD: the decision page (changes nothing). POST: record the decision."""
    return await _unblock_router()(request)
