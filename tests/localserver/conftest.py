"""Helpers for talking to a local server process over raw HTTP and SSE.

``Api`` posts raw JSON envelopes and checks, on every answer, the two rules
that hold for all of them: the HTTP status equals ``head.status`` and an
error's ``data`` is a plain string. ``Sse`` holds one ``GET /poll`` stream in
a thread and keeps every frame (raw bytes too) for assertions. ``probe``
sends an ``unblock`` to an address through a throw-away promise: messages to
one stream arrive in order, so once a probe arrives, anything sent to that
stream before it has arrived too (that is how tests prove something did
*not* arrive without sleeping).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalServerProc, wait_until

VERSION = "2026-04-01"
HOUR_MS = 3_600_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def uid(prefix: str = "p") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Reply:
    def __init__(self, http_status: int, body: Any, raw: bytes) -> None:
        self.http_status = http_status
        self.body = body
        self.raw = raw

    @property
    def status(self) -> int:
        return self.body["head"]["status"]

    @property
    def data(self) -> Any:
        return self.body["data"]

    def __repr__(self) -> str:
        return f"Reply({self.http_status}, {self.body!r})"


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._corr = itertools.count(1)

    def http(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def post_raw(self, body: bytes) -> Reply:
        status, _, raw = self.http("POST", "/", body, {"Content-Type": "application/json"})
        parsed = json.loads(raw)
        reply = Reply(status, parsed, raw)
        assert status == parsed["head"]["status"], reply
        assert parsed["head"]["version"] == VERSION, reply
        if status >= 400:
            assert isinstance(parsed["data"], str), f"error data must be a plain string: {reply}"
        else:
            assert isinstance(parsed["data"], dict), reply
        return reply

    def call(
        self, kind: str, data: Any, *, auth: str | None = None, version: str = VERSION, corr_id: str | None = None
    ) -> Reply:
        head: dict[str, Any] = {"corrId": corr_id or f"c{next(self._corr)}", "version": version}
        if auth is not None:
            head["auth"] = auth
        reply = self.post_raw(json.dumps({"kind": kind, "head": head, "data": data}).encode())
        assert reply.body["kind"] == kind
        assert reply.body["head"]["corrId"] == head["corrId"]
        return reply

    def ok(self, kind: str, data: Any, status: int = 200, **kw: Any) -> Any:
        reply = self.call(kind, data, **kw)
        assert reply.status == status, reply
        return reply.data

    # -- shorthands ---------------------------------------------------------------

    def create(
        self,
        id: str,
        *,
        timeout_at: int | None = None,
        tags: dict[str, str] | None = None,
        param: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": id,
            "timeoutAt": timeout_at if timeout_at is not None else now_ms() + HOUR_MS,
            "tags": tags or {},
        }
        if param is not None:
            data["param"] = param
        return self.ok("promise.create", data)["promise"]

    def get(self, id: str) -> dict[str, Any]:
        return self.ok("promise.get", {"id": id})["promise"]

    def settle(self, id: str, state: str = "resolved", value: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.ok("promise.settle", {"id": id, "state": state, "value": value or {}})["promise"]

    def listen(self, awaited: str, address: str) -> dict[str, Any]:
        return self.ok("promise.register_listener", {"awaited": awaited, "address": address})["promise"]

    def acquire(self, id: str, version: int, *, pid: str = "w1", ttl: int = 60_000) -> Reply:
        return self.call("task.acquire", {"id": id, "version": version, "pid": pid, "ttl": ttl})

    def probe(self, address: str) -> str:
        """Send an ``unblock`` to ``address``; return the probe promise id."""
        pid = uid("probe")
        self.create(pid)
        self.listen(pid, address)
        self.settle(pid)
        return pid


def action(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "head": {"corrId": "inner", "version": VERSION}, "data": data}


def callback(awaited: str, awaiter: str) -> dict[str, Any]:
    return action("promise.register_callback", {"awaited": awaited, "awaiter": awaiter})


class Sse:
    """One ``GET /poll/{group}/{pid}`` stream, read by a background thread."""

    def __init__(
        self, url: str, group: str, pid: str, *, headers: dict[str, str] | None = None, expect_status: int = 200
    ) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.group, self.pid = group, pid
        self.raw = bytearray()
        self.ended = threading.Event()  # the stream is over (EOF or error)
        self.clean_end = False  # the server ended it with a proper EOF
        self._lock = threading.Lock()
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", f"/poll/{group}/{pid}", headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = dict(self.resp.getheaders())
        assert self.status == expect_status, (self.status, self.resp.read() if self.status != 200 else b"")
        if self.status != 200:
            self.body = self.resp.read()
            self.conn.close()
            self.ended.set()
            return
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.resp.read1(65536)
                if not chunk:
                    self.clean_end = True
                    break
                with self._lock:
                    self.raw += chunk
        except (OSError, ValueError, http.client.HTTPException, AttributeError):
            pass
        finally:
            self.ended.set()

    def frames(self) -> list[bytes]:
        with self._lock:
            data = bytes(self.raw)
        parts = data.split(b"\n\n")
        return parts[:-1]  # the last part is incomplete (or empty)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(f[5:]) for f in self.frames() if f.startswith(b"data:")]

    def comments(self) -> list[bytes]:
        return [f for f in self.frames() if f.startswith(b":")]

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], *, timeout: float = 5.0, what: str = "message"
    ) -> dict[str, Any]:
        return wait_until(
            lambda: next((m for m in self.messages() if pred(m)), None),
            timeout=timeout,
            what=f"{what} on {self.group}/{self.pid}",
        )

    def wait_unblock(self, promise_id: str, timeout: float = 5.0) -> dict[str, Any]:
        return self.wait_for(
            lambda m: m["kind"] == "unblock" and m["data"]["promise"]["id"] == promise_id,
            timeout=timeout,
            what=f"unblock {promise_id}",
        )

    def executes(self, task_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["kind"] == "execute" and m["data"]["task"]["id"] == task_id]

    def unblocks(self, promise_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["kind"] == "unblock" and m["data"]["promise"]["id"] == promise_id]

    def has_unblock(self, promise_id: str) -> bool:
        return bool(self.unblocks(promise_id))

    def close(self) -> None:
        """Drop the connection from the client side."""
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.ended.wait(5)


class ServerFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[LocalServerProc] = []
        self.streams: list[Sse] = []

    def __call__(self, *extra: str, name: str | None = None) -> tuple[LocalServerProc, Api]:
        server = LocalServerProc(self.tmp_path, extra=list(extra), name=name or f"localserver{len(self.servers)}")
        self.servers.append(server)
        return server, Api(server.url)

    def sse(self, url: str, group: str, pid: str, **kw: Any) -> Sse:
        stream = Sse(url, group, pid, **kw)
        self.streams.append(stream)
        return stream

    def close(self) -> None:
        for s in self.streams:
            s.close()
        for server in self.servers:
            server.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers with extra CLI flags (``server, api = servers("--retry-ms", "300")``) and open streams."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def streams(servers: ServerFactory) -> ServerFactory:
    """The same factory, for tests that only open streams (closed at the end of the test)."""
    return servers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServerProc]:
    """One in-memory server shared by a module's tests (they use unique ids)."""
    proc = LocalServerProc(tmp_path_factory.mktemp("server"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api(server: LocalServerProc) -> Api:
    return Api(server.url)
