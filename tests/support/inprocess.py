"""The edges' real client over the local server's engine, in this process: no sockets, no threads.

:class:`EngineNetwork` is the SDK's :class:`~resonate_base.connections.Network`
seam answered by :class:`devstack.localserver.engine.Engine` directly, so the
in-process tests of the functions run the production client code (``Promises``
over ``Sender`` over ``Transport``) against the same protocol semantics as
every other suite, with a clock the test moves; :func:`asgi` serves an edge's
router as functions-framework does, for any ASGI test client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from devstack.localserver.engine import PROTOCOL_VERSION, Engine
from hitl.client.sendonly import SendOnlyClient
from hitl.edges.plumbing import Router


class EngineNetwork:
    """Answers each envelope with ``engine.apply`` at ``clock()`` (ms)."""

    def __init__(self, engine: Engine, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.clock = clock
        #: Every request kind sent, in order (tests count round trips with it).
        self.sent: list[str] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        envelope = json.loads(req)
        kind, corr_id = envelope["kind"], envelope["head"]["corrId"]
        self.sent.append(kind)
        status, data = self.engine.apply(kind, corr_id, envelope["data"], self.clock())
        head = {"corrId": corr_id, "status": status, "version": PROTOCOL_VERSION}
        return json.dumps({"kind": kind, "head": head, "data": data})


def client(engine: Engine, clock: Callable[[], int]) -> tuple[SendOnlyClient, EngineNetwork]:
    network = EngineNetwork(engine, clock)
    return SendOnlyClient(network, token=None), network


def asgi(router: Router) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``router`` as an ASGI app, as functions-framework serves a function."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await router(Request(scope, receive))
        await response(scope, receive, send)

    return app
