"""The bare baseline for the cold-start benchmark: a functions-framework ASGI hello world.

    functions-framework --source bench/hello.py --target hello --asgi

``bench/run.py`` starts it beside ``start`` and ``unblock`` and times each
from process start to the first answered request.
"""

from __future__ import annotations

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


@functions_framework.aio.http
async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")
