"""The edges' HTTP channel (hitl.client.network.StdlibNetwork) against a recording server, over real sockets.

The wire itself (path, headers, body, any status handed back), keep-alive,
a connection the server closed while idle, a dead server failing at once.
(Against the local server: tests/localserver/test_sendonly.py.)
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from resonate_base import ORIGIN_HEADER
from resonate_base.connections import Network
from resonate_base.error import ConnectorError

from devstack.stack import free_port, wait_until
from hitl.client.network import StdlibNetwork


class Recorder(http.server.ThreadingHTTPServer):
    """Answers every POST with ``answer`` and keeps what it received (keep-alive unless ``close``)."""

    def __init__(self) -> None:
        self.status = 200
        self.answer = "{}"
        self.close_after_answer = False
        self.delay = 0.0
        self.seen: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        time.sleep(self.server.delay)
        self.server.seen.append(
            {"path": self.path, "headers": dict(self.headers), "body": body, "peer": self.client_address}
        )
        raw = self.server.answer.encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        if self.server.close_after_answer:  # silently, as an idle timeout does: no Connection: close
            self.close_connection = True

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


def send_all(network: StdlibNetwork, *reqs: tuple[str, dict[str, str] | None], pause: float = 0.0) -> list[str]:
    async def scenario() -> list[str]:
        out = []
        try:
            for req, headers in reqs:
                out.append(await network.send(req, headers))
                await asyncio.sleep(pause)
            return out
        finally:
            await network.stop()

    return asyncio.run(scenario())


def test_it_implements_the_sdks_network_seam() -> None:
    assert isinstance(StdlibNetwork("http://127.0.0.1:1"), Network)


def test_it_posts_the_envelope_with_the_bearer_token(recorder: Recorder) -> None:
    network = StdlibNetwork(f"{recorder.url}/", token="tok-1")
    [answer] = send_all(network, ('{"kind":"promise.get"}', {ORIGIN_HEADER: "wf-1", "X-Extra": "1"}))
    [seen] = recorder.seen
    assert answer == "{}"
    assert (seen["path"], seen["body"]) == ("/", '{"kind":"promise.get"}')
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer tok-1"
    assert headers["x-extra"] == "1"
    assert ORIGIN_HEADER not in headers  # routing metadata, not an HTTP field


def test_without_a_token_there_is_no_authorization_header(recorder: Recorder) -> None:
    send_all(StdlibNetwork(recorder.url), ("{}", None))
    assert "authorization" not in {k.lower() for k in recorder.seen[0]["headers"]}


def test_any_http_status_is_handed_back_as_the_body(recorder: Recorder) -> None:
    recorder.status, recorder.answer = 503, "upstream down"
    assert send_all(StdlibNetwork(recorder.url), ("{}", None)) == ["upstream down"]


def test_requests_share_one_kept_alive_connection(recorder: Recorder) -> None:
    send_all(StdlibNetwork(recorder.url), ("{}", None), ("{}", None), ("{}", None))
    assert len({tuple(s["peer"]) for s in recorder.seen}) == 1


def test_a_connection_closed_while_idle_is_replaced_and_the_request_sent_once(recorder: Recorder) -> None:
    recorder.close_after_answer = True
    answers = send_all(StdlibNetwork(recorder.url), ('{"n":1}', None), ('{"n":2}', None), pause=0.2)
    assert answers == ["{}", "{}"]
    assert [s["body"] for s in recorder.seen] == ['{"n":1}', '{"n":2}']
    assert len({tuple(s["peer"]) for s in recorder.seen}) == 2


def test_after_a_call_timed_out_the_next_one_works(recorder: Recorder) -> None:
    """A server that stalls (frozen, overloaded) times a call out; once it answers again, so do we."""

    async def scenario() -> str:
        network = StdlibNetwork(recorder.url, timeout=0.3)
        try:
            assert await network.send('{"n":0}') == "{}"  # a kept-alive connection in this thread
            recorder.delay = 0.6
            with pytest.raises(ConnectorError):
                await network.send('{"n":1}')
            recorder.delay = 0.0
            # the stalled answer has come and gone (the handler records a request once it answers)
            await asyncio.to_thread(wait_until, lambda: len(recorder.seen) == 2, timeout=5, what="the stalled answer")
            return await network.send('{"n":2}')
        finally:
            await network.stop()

    assert asyncio.run(scenario()) == "{}"


def test_an_unreachable_server_fails_at_once() -> None:
    began = time.perf_counter()
    with pytest.raises(ConnectorError):
        send_all(StdlibNetwork(f"http://127.0.0.1:{free_port()}", timeout=5.0), ("{}", None))
    assert time.perf_counter() - began < 1.0


def test_after_stop_every_send_fails(recorder: Recorder) -> None:
    async def scenario() -> None:
        network = StdlibNetwork(recorder.url)
        await network.send("{}")
        await network.stop()
        with pytest.raises(ConnectorError):
            await network.send("{}")

    asyncio.run(scenario())
    assert len(recorder.seen) == 1


@pytest.mark.parametrize("url", ["ftp://host/", "127.0.0.1:8001", "http://"])
def test_a_url_that_is_not_http_is_refused_up_front(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        StdlibNetwork(url)
