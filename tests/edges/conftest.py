"""The functions in-process: each edge's router over the real send-only client and the local
server's engine (no sockets), driven through Starlette's test client, with a clock the test owns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.inprocess import EngineNetwork, asgi, client

from devstack.localserver.engine import Engine
from hitl.client.sendonly import SendOnlyClient
from hitl.clock import now_ms
from hitl.edges.plumbing import Router


@dataclass
class Server:
    """The local server's engine, the edges' client over it, and the clock both read."""

    engine: Engine = field(default_factory=Engine)
    #: The server's clock; the edges take the wall clock for run deadlines, so it starts there.
    now_ms: int = field(default_factory=now_ms)

    def __post_init__(self) -> None:
        self.client: SendOnlyClient
        self.network: EngineNetwork
        self.client, self.network = client(self.engine, lambda: self.now_ms)

    def run(self, call: Awaitable[Any]) -> Any:
        return asyncio.run(call)

    def promise(self, id: str) -> dict[str, Any]:
        status, data = self.engine.apply("promise.get", "t", {"id": id}, self.now_ms)
        assert status == 200, data
        return data["promise"]


@pytest.fixture
def server() -> Server:
    return Server()


def test_client(router: Router) -> TestClient:
    return TestClient(asgi(router), base_url="http://function.test")


test_client.__test__ = False  # type: ignore[attr-defined]
