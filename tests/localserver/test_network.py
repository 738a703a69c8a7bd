"""The edges' httpx connection (hitl.network) and send-only client (hitl.sendonly), over real sockets.

Against the local server: a promise's whole life through the SDK's ``Promises``.
Against a recording HTTP server: the wire itself (path, headers, body, any
status handed back), keep-alive, and a dead server failing at once.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from procs import PYTHON, ROOT, LocalServerProc, free_port
from resonate.error import ServerError
from resonate.types import Value
from resonate_base import ORIGIN_HEADER
from resonate_base.connections import Network
from resonate_base.error import ConnectorError

from hitl.network import HttpxNetwork, tls_context
from hitl.sendonly import send_only
from hitl.settings import ResonateSettings

from .conftest import HOUR_MS, now_ms, uid


class Recorder(http.server.ThreadingHTTPServer):
    """Answers every POST with ``answer`` and keeps what it received (keep-alive on)."""

    def __init__(self, status: int = 200, answer: str = "{}") -> None:
        self.status = status
        self.answer = answer
        self.seen: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body, "peer": self.client_address})
        raw = self.server.answer.encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def _send_all(network: HttpxNetwork, *reqs: tuple[str, dict[str, str] | None]) -> list[str]:
    try:
        return [await network.send(req, headers) for req, headers in reqs]
    finally:
        await network.stop()


def test_it_implements_the_sdks_network_seam() -> None:
    assert isinstance(HttpxNetwork("http://127.0.0.1:1"), Network)


def test_it_posts_the_envelope_with_the_bearer_token(recorder: Recorder) -> None:
    network = HttpxNetwork(f"{recorder.url}/", token="tok-1")
    [answer] = asyncio.run(_send_all(network, ('{"kind":"promise.get"}', {ORIGIN_HEADER: "wf-1", "X-Extra": "1"})))
    [seen] = recorder.seen
    assert answer == "{}"
    assert (seen["path"], seen["body"]) == ("/", '{"kind":"promise.get"}')
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer tok-1"
    assert headers["x-extra"] == "1"
    assert ORIGIN_HEADER not in headers  # routing metadata, not an HTTP field


def test_without_a_token_there_is_no_authorization_header(recorder: Recorder) -> None:
    asyncio.run(_send_all(HttpxNetwork(recorder.url), ("{}", None)))
    assert "authorization" not in {k.lower() for k in recorder.seen[0]["headers"]}


def test_any_http_status_is_handed_back_as_the_body(recorder: Recorder) -> None:
    recorder.status, recorder.answer = 503, "upstream down"
    assert asyncio.run(_send_all(HttpxNetwork(recorder.url), ("{}", None))) == ["upstream down"]


def test_requests_share_one_kept_alive_connection(recorder: Recorder) -> None:
    asyncio.run(_send_all(HttpxNetwork(recorder.url), ("{}", None), ("{}", None), ("{}", None)))
    assert len({tuple(s["peer"]) for s in recorder.seen}) == 1


def test_an_unreachable_server_fails_at_once() -> None:
    network = HttpxNetwork(f"http://127.0.0.1:{free_port()}", timeout=5.0)
    began = time.perf_counter()
    with pytest.raises(ConnectorError):
        asyncio.run(_send_all(network, ("{}", None)))
    assert time.perf_counter() - began < 1.0


def test_after_stop_every_send_fails(recorder: Recorder) -> None:
    async def scenario() -> None:
        network = HttpxNetwork(recorder.url)
        await network.send("{}")
        await network.stop()
        with pytest.raises(ConnectorError):
            await network.send("{}")

    asyncio.run(scenario())
    assert len(recorder.seen) == 1


def test_only_https_loads_the_system_cas() -> None:
    bare = tls_context("http://127.0.0.1:8001")
    assert bare.get_ca_certs() == [] and bare.verify_mode == ssl.CERT_REQUIRED and bare.check_hostname
    system = tls_context("https://resonate.example.com")
    assert system is tls_context("https://other.example.com")  # built once per process
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname


def test_a_promise_round_trip_through_the_local_server(localserver: LocalServerProc) -> None:
    async def scenario() -> tuple[Any, ...]:
        client = send_only(ResonateSettings(url=localserver.url))
        try:
            id = uid("net")
            created = await client.promises.create(id, now_ms() + HOUR_MS, Value(data={"n": 1}), {"k": "v"})
            resolved = await client.promises.resolve(id, Value(data={"ok": True}))
            read = await client.promises.get(id)
            with pytest.raises(ServerError) as missing:
                await client.promises.get(uid("none"))
            return created, resolved, read, missing.value.code
        finally:
            await client.close()

    created, resolved, read, missing = asyncio.run(scenario())
    assert (created.state, created.param.data, created.tags["k"]) == ("pending", {"n": 1}, "v")
    assert (resolved.state, read.state, read.value.data) == ("resolved", "resolved", {"ok": True})
    assert missing == 404


FIRST_REQUESTS = """
import asyncio, json, sys
import httpx
from functions_framework.aio import create_asgi_app

async def ask(target, method, path, **kw):
    app = create_asgi_app(target, "functions/main.py")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://function") as client:
        return (await client.request(method, path, **kw)).status_code

statuses = [
    asyncio.run(ask("start", "GET", "/?workflow_id=nobody")),
    asyncio.run(ask("start", "POST", "/", json={"workflow_id": sys.argv[1], "approvers": ["a@example.com"], "subject": "s"})),
    asyncio.run(ask("unblock", "GET", "/?token=bad")),
]
print(json.dumps({"statuses": statuses, "aiohttp": "aiohttp" in sys.modules}))
"""


def test_the_functions_answer_through_it_without_aiohttp(localserver: LocalServerProc) -> None:
    """Each function's first requests, against the local server: answered, and aiohttp never imported."""
    env = {
        **os.environ,
        "RESONATE_URL": localserver.url,
        "HITL_SIGNING_KEY": "k" * 43,
        "HITL_SLACK_ALLOWED_HOSTS": "hooks.slack.com",
        "HITL_LOG_FORMAT": "text",
    }
    out = subprocess.run(
        [PYTHON, "-c", FIRST_REQUESTS, uid("wf")], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.splitlines()[-1]) == {"statuses": [404, 202, 403], "aiohttp": False}
    assert "HTTP Request" not in out.stderr  # httpx's per-request INFO lines stay quiet
