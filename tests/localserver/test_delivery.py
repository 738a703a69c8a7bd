"""SSE delivery: framing, uni/any routing, drops and retries, disconnects, reconnects.

Negative claims ("X did not arrive") are proven with a probe: an ``unblock``
sent to the same stream afterwards. One stream's messages arrive in order,
so once the probe is there, anything routed to that stream earlier is too.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from devstack.stack import PYTHON, Proc, wait_until

from .conftest import Api, ServerFactory, Sse, uid


def wf_tags(id: str, group: str) -> dict[str, str]:
    return {
        "resonate:origin": id,
        "resonate:branch": id,
        "resonate:parent": id,
        "resonate:target": f"poll://any@{group}",
    }


def flush(api: Api, *streams: Sse) -> None:
    """Wait until everything routed so far to each stream has arrived."""
    for s in streams:
        s.wait_unblock(api.probe(f"poll://uni@{s.group}/{s.pid}"))


def sorted_everywhere(raw: bytes) -> bool:
    ok = True

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal ok
        keys = [k for k, _ in pairs]
        ok = ok and keys == sorted(keys)
        return dict(pairs)

    json.loads(raw, object_pairs_hook=hook)
    return ok


def test_framing(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    assert s.headers["Content-Type"].startswith("text/event-stream")
    wf = uid("wf")
    api.create(wf, tags=wf_tags(wf, group), param={"headers": {"z": "1", "a": "2"}, "data": "eA=="})
    api.listen(wf, f"poll://uni@{group}/a")
    s.wait_for(lambda m: m["kind"] == "execute")
    api.settle(wf, "resolved", {"headers": {"y": "1", "b": "2"}, "data": "eQ=="})
    s.wait_unblock(wf)
    raw = bytes(s.raw)
    assert raw.startswith(b"data:{")  # no initial frame, no event:/id: lines
    frames = s.frames()
    assert b"".join(f + b"\n\n" for f in frames) == raw
    assert len(frames) == 2
    for frame in frames:
        assert frame.startswith(b"data:") and b"\n" not in frame
        body = frame[5:]
        assert sorted_everywhere(body)
        assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    execute, unblock = (json.loads(f[5:]) for f in frames)
    assert execute == {"data": {"task": {"id": wf, "version": 0}}, "head": {"serverUrl": ""}, "kind": "execute"}
    assert unblock == {"data": {"promise": api.get(wf)}, "head": {}, "kind": "unblock"}


def test_execute_carries_server_url(servers: ServerFactory) -> None:
    server, api = servers("--url", "http://resonate.example:8001")
    group = uid("g")
    s = servers.sse(server.url, group, "a")
    wf = uid("wf")
    api.create(wf, tags=wf_tags(wf, group))
    msg = s.wait_for(lambda m: m["kind"] == "execute")
    assert msg["head"] == {"serverUrl": "http://resonate.example:8001"}


def test_uni_and_any_routing(api: Api, server: Any, streams: ServerFactory) -> None:
    group, other = uid("g"), uid("h")
    a = streams.sse(server.url, group, "a")
    b = streams.sse(server.url, group, "b")
    c = streams.sse(server.url, other, "a")
    sent = {
        "uni_a": api.probe(f"poll://uni@{group}/a"),
        "uni_b": api.probe(f"poll://uni@{group}/b"),
        "any_a": api.probe(f"poll://any@{group}/a"),
        "any_b": api.probe(f"poll://any@{group}/b"),
        "uni_missing": api.probe(f"poll://uni@{group}/zzz"),
        "uni_no_id": api.probe(f"poll://uni@{group}"),
        "any_missing": api.probe(f"poll://any@{group}/zzz"),
        "other_group": api.probe(f"poll://uni@{uid('nogroup')}/a"),
    }
    anys = [api.probe(f"poll://any@{group}") for _ in range(20)]
    flush(api, a, b, c)

    def where(pid: str) -> list[str]:
        return [name for name, s in (("a", a), ("b", b), ("c", c)) if s.has_unblock(pid)]

    assert where(sent["uni_a"]) == ["a"] and where(sent["any_a"]) == ["a"]
    assert where(sent["uni_b"]) == ["b"] and where(sent["any_b"]) == ["b"]
    assert where(sent["uni_missing"]) == [] and where(sent["uni_no_id"]) == []
    assert where(sent["other_group"]) == []
    assert where(sent["any_missing"]) in (["a"], ["b"])
    spread = [where(p) for p in anys]
    assert all(w in (["a"], ["b"]) for w in spread)
    assert ["a"] in spread and ["b"] in spread  # random, not sticky (p(fail) = 2^-19)
    assert all(
        len(s.messages()) == len({m["data"]["promise"]["id"] for m in s.messages()}) for s in (a, b, c)
    )  # no duplicates


def test_no_listener_drops_unblock_and_execute(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    wf, p = uid("wf"), uid("p")
    api.create(wf, tags=wf_tags(wf, group))  # execute to a group with no stream
    api.create(p)
    api.listen(p, f"poll://uni@{group}/a")
    api.settle(p)  # unblock to a stream that does not exist
    s = streams.sse(server.url, group, "a")
    flush(api, s)
    assert s.executes(wf) == [] and s.unblocks(p) == []  # dropped, not held


def test_dropped_execute_comes_back_with_the_retry(servers: ServerFactory) -> None:
    server, api = servers("--retry-ms", "300")
    group = uid("g")
    wf = uid("wf")
    api.create(wf, tags=wf_tags(wf, group))
    s = servers.sse(server.url, group, "a")
    msg = s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == wf, timeout=3)
    assert msg["data"]["task"]["version"] == 0
    assert api.acquire(wf, 0).status == 200


def _closed_count(server: Any) -> int:
    return server.output().count("stream closed")


def test_client_disconnect_is_dropped_at_once(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    a = streams.sse(server.url, group, "a")
    b = streams.sse(server.url, group, "b")
    flush(api, a, b)
    before = _closed_count(server)
    started = time.monotonic()
    a.close()
    wait_until(lambda: _closed_count(server) > before, timeout=1.0, what="the server to drop the closed stream")
    assert time.monotonic() - started < 1.0
    sent = [api.probe(f"poll://any@{group}") for _ in range(10)] + [api.probe(f"poll://any@{group}/a")]
    wait_until(
        lambda: all(b.has_unblock(p) for p in sent), timeout=1.0, what="every any@group message at the live stream"
    )


def test_killed_client_is_dropped_at_once(api: Api, server: Any, streams: ServerFactory, tmp_path: Any) -> None:
    group = uid("g")
    b = streams.sse(server.url, group, "b")
    host, port = server.url.removeprefix("http://").split(":")
    script = (
        "import http.client, sys\n"
        f"c = http.client.HTTPConnection({host!r}, {port})\n"
        f"c.request('GET', '/poll/{group}/a')\n"
        "r = c.getresponse()\n"
        "print('status', r.status, flush=True)\n"
        "while True:\n"
        "    b = r.read1(65536)\n"
        "    if not b: break\n"
        "    sys.stdout.write(b.decode()); sys.stdout.flush()\n"
    )
    holder = Proc("holder", [PYTHON, "-c", script], log_dir=tmp_path)
    try:
        holder.wait_for_line("status 200")
        probe = api.probe(f"poll://uni@{group}/a")
        wait_until(lambda: probe in holder.output(), what="the holder process to receive its probe")
        before = _closed_count(server)
        started = time.monotonic()
        holder.kill()
        wait_until(lambda: _closed_count(server) > before, timeout=1.0, what="the server to drop the killed stream")
        assert time.monotonic() - started < 1.0
        sent = [api.probe(f"poll://any@{group}") for _ in range(10)]
        wait_until(
            lambda: all(b.has_unblock(p) for p in sent), timeout=1.0, what="every any@group message at the live stream"
        )
    finally:
        holder.stop()


def test_clean_end_and_reconnect_loses_nothing(servers: ServerFactory) -> None:
    server, api = servers("--stream-max-age", "1")
    group = uid("g")
    s1 = servers.sse(server.url, group, "a")
    flush(api, s1)
    assert s1.ended.wait(4), "the server should end the stream after about 1 s"
    assert s1.clean_end
    # while nobody is connected: an execute, a uni and an any message
    wf = uid("wf")
    api.create(wf, tags=wf_tags(wf, group))
    uni = api.probe(f"poll://uni@{group}/a")
    any_ = api.probe(f"poll://any@{group}")
    s2 = servers.sse(server.url, group, "a")
    wait_until(
        lambda: s2.executes(wf) and s2.has_unblock(uni) and s2.has_unblock(any_),
        timeout=3,
        what="the held messages on the new stream",
    )
    assert s2.executes(wf)[0]["data"]["task"]["version"] == 0
    # and it keeps working after the reconnect
    flush(api, s2)


def test_keepalive_comments(servers: ServerFactory) -> None:
    server, api = servers("--keepalive", "0.2")
    group = uid("g")
    s = servers.sse(server.url, group, "a")
    wait_until(lambda: len(s.comments()) >= 2, timeout=3, what="two keep-alive comments")
    assert bytes(s.raw).startswith(b":")
    assert s.messages() == []
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert all(f.startswith((b":", b"data:")) for f in s.frames())


def test_uni_backlog_of_a_dropped_stream_is_not_given_to_another_pid(
    api: Api, server: Any, streams: ServerFactory
) -> None:
    group = uid("g")
    b = streams.sse(server.url, group, "b")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((api.host, api.port))
    try:
        sock.sendall(f"GET /poll/{group}/a HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        probe = api.probe(f"poll://uni@{group}/a")
        seen = bytearray()

        def got_probe() -> bool:
            seen.extend(sock.recv(65536))
            return probe.encode() in seen

        wait_until(got_probe, timeout=5, what="stream a to be registered")
        # a's client stops reading: frames for it pile up in the server's queue
        big = "A" * 262_144
        ids = []
        for _ in range(32):
            p = uid()
            api.create(p)
            api.listen(p, f"poll://uni@{group}/a")
            api.settle(p, "resolved", {"data": big})
            ids.append(p)
    finally:
        sock.close()
    flush(api, b)
    assert [p for p in ids if b.has_unblock(p)] == []
