"""The real Resonate SDK against the local server, in separate OS processes over real sockets.

Not the hitl workflow: a tiny worker program (``sdkapp/worker.py``) built on
the SDK's own ``HttpConnection`` + ``SSEConnection``, unmodified, and a
send-only client program (``sdkapp/client.py``). The worker's ``wf`` creates
an external promise, records its id once through a durable step, waits for
it and returns its value. Every wait is bounded and polls something real
(the worker's own log lines, the server's answers).
"""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.localserver.engine import PROTOCOL_VERSION
from devstack.stack import PYTHON, ROOT, LocalServerProc, Proc, wait_until

SDKAPP = Path(__file__).resolve().parent / "sdkapp"
VERSION = PROTOCOL_VERSION
ESTABLISHED = "SSE connection established"
_corr = itertools.count(1)


# -- the programs -------------------------------------------------------------------


class SdkWorker(Proc):
    """``sdkapp/worker.py``: ready once its SSE stream is established."""

    def __init__(self, log_dir: Path, url: str, name: str) -> None:
        self.pid = f"{name}-{uuid.uuid4().hex[:8]}"
        super().__init__(name, [PYTHON, str(SDKAPP / "worker.py"), url, self.pid], log_dir=log_dir)
        self.wait_connected(1)

    def connections(self) -> int:
        return self.output().count(ESTABLISHED)

    def wait_connected(self, n: int, timeout: float = 20.0) -> None:
        def connected() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-3000:]}")
            return self.connections() >= n

        wait_until(connected, timeout=timeout, what=f"{self.name} to open SSE stream #{n}")

    def promise_ids(self) -> list[str]:
        return [line.split()[1] for line in self.output().splitlines() if line.startswith("promise-id ")]


def client(url: str, *args: str) -> dict[str, Any]:
    """Run ``sdkapp/client.py URL ARGS...``; its JSON answer."""
    done = subprocess.run(
        [PYTHON, str(SDKAPP / "client.py"), url, *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"client {args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the server, read over raw HTTP (independent of the SDK) -------------------------


def call(url: str, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        body = json.dumps({"kind": kind, "head": {"corrId": f"t{next(_corr)}", "version": VERSION}, "data": data})
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        return reply["head"]["status"], reply["data"]
    finally:
        conn.close()


def promise(url: str, id: str) -> dict[str, Any]:
    status, data = call(url, "promise.get", {"id": id})
    assert status == 200, (status, data)
    return data["promise"]


def task(url: str, id: str) -> dict[str, Any]:
    status, data = call(url, "task.get", {"id": id})
    assert status == 200, (status, data)
    return data["task"]


def all_promises(url: str) -> list[dict[str, Any]]:
    status, data = call(url, "promise.search", {"limit": 1000})
    assert status == 200, (status, data)
    return data["promises"]


def wait_settled(url: str, id: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_until(
        lambda: (p := promise(url, id))["state"] != "pending" and p,
        timeout=timeout,
        interval=0.1,
        what=f"{id} to settle",
    )


def server_lines(server: LocalServerProc, text: str) -> int:
    return server.output().count(text)


# -- fixtures -------------------------------------------------------------------------


class Procs:
    """Every process a test starts, stopped at the end whatever happened."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.all: list[Proc] = []

    def server(self, *, db: Path | None = None, port: int = 0, name: str = "server") -> LocalServerProc:
        s = LocalServerProc(self.dir, db=db, port=port, name=name)
        self.all.append(s)
        return s

    def worker(self, url: str, name: str) -> SdkWorker:
        w = SdkWorker(self.dir, url, name)
        self.all.append(w)
        return w

    def stop(self) -> None:
        for p in reversed(self.all):
            p.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def start_and_wait_promise(url: str, worker: SdkWorker, root: str, arg: Any) -> str:
    """rpc ``wf`` under ``root``; the id of the promise it waits on, once the run waits on it."""
    started = client(url, "start", root, json.dumps(arg))
    assert started == {"id": root, "state": "pending", "value": None}
    ids = wait_until(worker.promise_ids, timeout=15, what=f"{worker.name} to record the promise id")
    # Waiting for real: the step is settled and the task suspended, no worker holds it.
    wait_until(lambda: task(url, root)["state"] == "suspended", timeout=15, what=f"{root} to suspend")
    return ids[0]


# -- tests ------------------------------------------------------------------------------


def test_rpc_twice_resolve_twice_completes_once(procs: Procs) -> None:
    server = procs.server()
    worker = procs.worker(server.url, "worker")
    root = f"job-{uuid.uuid4().hex[:8]}"

    pid = start_and_wait_promise(server.url, worker, root, {"n": 1})
    assert pid.startswith(f"{root}:")
    first = promise(server.url, root)

    # The same rpc again: the same run, no second root promise or task, no second step.
    assert client(server.url, "start", root, json.dumps({"n": 1}))["state"] == "pending"
    assert promise(server.url, root)["createdAt"] == first["createdAt"]
    roots = [p["id"] for p in all_promises(server.url) if ":" not in p["id"]]
    assert roots == [root]
    assert task(server.url, root)["state"] == "suspended"

    # Resolve twice: the first value wins, the second call just answers it.
    assert client(server.url, "resolve", pid, json.dumps("yes")) == {"id": pid, "state": "resolved", "value": "yes"}
    assert client(server.url, "resolve", pid, json.dumps("no")) == {"id": pid, "state": "resolved", "value": "yes"}

    assert wait_settled(server.url, root)["state"] == "resolved"
    assert client(server.url, "get", root) == {
        "id": root,
        "state": "resolved",
        "value": {"arg": {"n": 1}, "value": "yes"},
    }
    assert worker.promise_ids() == [pid]  # the durable step ran exactly once
    assert [p["id"] for p in all_promises(server.url) if ":" not in p["id"]] == [root]


def test_worker_killed_while_waiting_another_worker_completes(procs: Procs) -> None:
    server = procs.server()
    first = procs.worker(server.url, "worker1")
    root = f"job-{uuid.uuid4().hex[:8]}"
    pid = start_and_wait_promise(server.url, first, root, "k")

    closed = server_lines(server, "stream closed")
    first.kill()
    # The server has dropped the dead worker's stream, so the resumption cannot be routed to it.
    wait_until(lambda: server_lines(server, "stream closed") > closed, what="the server to notice the dead stream")
    second = procs.worker(server.url, "worker2")

    assert client(server.url, "resolve", pid, json.dumps({"ok": True}))["state"] == "resolved"
    assert wait_settled(server.url, root)["state"] == "resolved"
    assert client(server.url, "get", root)["value"] == {"arg": "k", "value": {"ok": True}}
    # The second worker replayed the run: the recorded step was not run again.
    assert first.promise_ids() == [pid]
    assert second.promise_ids() == []


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_durable_server_restarted_mid_wait_completes(procs: Procs, tmp_path: Path, how: str) -> None:
    db = tmp_path / "resonate.db"
    server = procs.server(db=db, name="server1")
    url, port = server.url, server.port
    worker = procs.worker(url, "worker")
    root = f"job-{uuid.uuid4().hex[:8]}"
    pid = start_and_wait_promise(url, worker, root, "r")

    if how == "sigterm":
        assert server.stop() == 0
    else:
        server.kill()
    server = procs.server(db=db, port=port, name="server2")
    assert server.url == url

    # Everything is back: the run, its task (waiting) and the promise it waits on.
    assert promise(url, root)["state"] == "pending"
    assert promise(url, pid)["state"] == "pending"
    # The SDK's own SSEConnection reconnects by itself.
    worker.wait_connected(2, timeout=30)

    assert client(url, "resolve", pid, json.dumps("after restart"))["state"] == "resolved"
    assert wait_settled(url, root)["state"] == "resolved"
    assert client(url, "get", root)["value"] == {"arg": "r", "value": "after restart"}
    assert worker.promise_ids() == [pid]
