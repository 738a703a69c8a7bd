"""The local server's wire protocol, over real HTTP, against /tmp/server-spec.md.

Raw JSON envelopes go to a server process; every answer is checked for
``HTTP status == head.status`` and, on errors, a plain-string ``data`` (see
``Api.post_raw``). Message delivery is observed on real SSE streams.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from devstack.stack import wait_until

from .conftest import HOUR_MS, VERSION, Api, ServerFactory, action, callback, now_ms, uid

PROMISE_KEYS = {"id", "state", "param", "value", "tags", "timeoutAt", "createdAt"}


def targeted(group: str, **extra: str) -> dict[str, str]:
    return {"resonate:target": f"poll://any@{group}", **extra}


def root_tags(id: str, group: str) -> dict[str, str]:
    return {"resonate:origin": id, "resonate:branch": id, "resonate:parent": id, **targeted(group)}


def task_create(
    api: Api,
    id: str,
    *,
    group: str = "nobody",
    pid: str = "w1",
    ttl: int = 60_000,
    tags: dict[str, str] | None = None,
    timeout_at: int | None = None,
) -> Any:
    return api.call(
        "task.create",
        {
            "pid": pid,
            "ttl": ttl,
            "action": action(
                "promise.create",
                {
                    "id": id,
                    "timeoutAt": timeout_at or now_ms() + HOUR_MS,
                    "tags": tags if tags is not None else root_tags(id, group),
                },
            ),
        },
    )


def fulfill(api: Api, id: str, version: int, state: str = "resolved", value: dict[str, Any] | None = None) -> Any:
    return api.call(
        "task.fulfill",
        {
            "id": id,
            "version": version,
            "action": action("promise.settle", {"id": id, "state": state, "value": value or {}}),
        },
    )


def suspend(api: Api, id: str, version: int, awaited: list[str]) -> Any:
    return api.call("task.suspend", {"id": id, "version": version, "actions": [callback(a, id) for a in awaited]})


def child(api: Api, parent: str, n: int, *, tags: dict[str, str] | None = None, timeout_at: int | None = None) -> str:
    id = f"{parent}:{n}" if ":" not in parent else f"{parent}.{n}"
    origin = parent.split(":", 1)[0]
    api.create(
        id,
        timeout_at=timeout_at,
        tags={"resonate:origin": origin, "resonate:branch": parent, "resonate:parent": parent, **(tags or {})},
    )
    return id


# ---------------------------------------------------------------------------
# HTTP surface and envelope
# ---------------------------------------------------------------------------


def test_health_ready_and_legacy(api: Api) -> None:
    status, _, _ = api.http("GET", "/health")
    assert status == 200
    status, _, _ = api.http("GET", "/ready")
    assert status == 200
    for method, path in [
        ("GET", "/promises"),
        ("POST", "/promises"),
        ("GET", "/promises/x"),
        ("GET", "/schedules/a/b"),
        ("PATCH", "/tasks/x"),
        ("GET", "/tasks"),
    ]:
        status, _, body = api.http(method, path)
        assert status == 410, (method, path)
        assert json.loads(body) == {"error": "This endpoint is no longer supported. Please update to the latest SDK."}


def test_health_body_is_empty(api: Api) -> None:
    assert api.http("GET", "/health")[2] == b""


def test_bad_json(api: Api) -> None:
    r = api.post_raw(b"{not json")
    assert r.status == 400
    assert r.data.startswith("Invalid request envelope: ")
    assert r.body["kind"] == "unknown" and r.body["head"]["corrId"] == "0"


def test_not_an_envelope(api: Api) -> None:
    for body in [
        b"[]",
        b'{"kind":"promise.get","data":{}}',
        b'{"kind":"promise.get","head":{"corrId":"x"},"data":{}}',
        b'{"kind":"promise.get","head":{"version":"2026-04-01"},"data":{}}',
    ]:
        r = api.post_raw(body)
        assert r.status == 400, body
        assert r.data.startswith("Invalid request envelope: "), r
    # kind and corrId are salvaged when present
    r = api.post_raw(b'{"kind":"promise.get","head":{"corrId":"abc"},"data":{}}')
    assert r.body["kind"] == "promise.get" and r.body["head"]["corrId"] == "abc"


def test_wrong_version(api: Api) -> None:
    r = api.call("promise.get", {"id": "x"}, version="2025-01-01", corr_id="v1")
    assert r.status == 400
    assert r.data == "Unsupported protocol version '2025-01-01', supported versions: [\"2026-04-01\"]"


def test_empty_kind(api: Api) -> None:
    r = api.call("", {"id": "x"})
    assert r.status == 400
    assert r.data == "Missing or invalid 'kind' field — must be a non-empty string"


@pytest.mark.parametrize("data", [[], "x", 1, None])
def test_data_not_object(api: Api, data: Any) -> None:
    r = api.call("promise.get", data)
    assert r.status == 400
    assert r.data == "Invalid 'data' field — must be an object"


def test_data_check_comes_before_version_check(api: Api) -> None:
    r = api.call("promise.get", [], version="1999-01-01")
    assert r.data == "Invalid 'data' field — must be an object"


def test_unknown_kind(api: Api) -> None:
    r = api.call("promise.frobnicate", {})
    assert r.status == 400
    assert r.data == "Unknown operation: promise.frobnicate"


def test_ui_kinds_are_404(api: Api) -> None:
    assert api.call("ui.promises", {}).status == 404


def test_debug_kinds_are_403(api: Api) -> None:
    assert api.call("debug.tick", {}).status == 403


def test_per_kind_parse_failure(api: Api) -> None:
    r = api.call("promise.create", {"id": "x"})  # timeoutAt required
    assert r.status == 400
    r = api.call("promise.get", {"id": 7})
    assert r.status == 400 and r.data.startswith("Invalid request")


# ---------------------------------------------------------------------------
# promise.*
# ---------------------------------------------------------------------------


def test_promise_create_get_shapes(api: Api) -> None:
    id = uid()
    t0 = now_ms()
    timeout_at = t0 + HOUR_MS
    r = api.call(
        "promise.create",
        {
            "id": id,
            "timeoutAt": timeout_at,
            "param": {"headers": {"a": "b"}, "data": "eyJ4IjoxfQ=="},
            "tags": {"k": "v"},
        },
    )
    assert r.status == 200 and r.http_status == 200  # never 201
    p = r.data["promise"]
    assert set(p) == PROMISE_KEYS
    assert p["id"] == id and p["state"] == "pending"
    assert p["param"] == {"headers": {"a": "b"}, "data": "eyJ4IjoxfQ=="}
    assert p["value"] == {} and p["tags"] == {"k": "v"} and p["timeoutAt"] == timeout_at
    assert t0 <= p["createdAt"] <= now_ms()
    assert api.get(id) == p
    # param and tags default to {}
    q = api.ok("promise.create", {"id": uid(), "timeoutAt": timeout_at})["promise"]
    assert q["param"] == {} and q["tags"] == {}


def test_promise_get_404(api: Api) -> None:
    r = api.call("promise.get", {"id": uid()})
    assert (r.status, r.data) == (404, "Promise not found")


def test_promise_settle(api: Api) -> None:
    id = uid()
    api.create(id)
    t0 = now_ms()
    p = api.settle(id, "rejected", {"headers": {"h": "1"}, "data": "ZXJy"})
    assert set(p) == PROMISE_KEYS | {"settledAt"}
    assert p["state"] == "rejected" and p["value"] == {"headers": {"h": "1"}, "data": "ZXJy"}
    assert t0 <= p["settledAt"] <= now_ms()
    assert api.get(id) == p


@pytest.mark.parametrize("state", ["resolved", "rejected", "rejected_canceled"])
def test_promise_settle_states(api: Api, state: str) -> None:
    id = uid()
    api.create(id)
    assert api.settle(id, state)["state"] == state


def test_promise_settle_404(api: Api) -> None:
    r = api.call("promise.settle", {"id": uid(), "state": "resolved", "value": {}})
    assert (r.status, r.data) == (404, "Promise not found")


@pytest.mark.parametrize("state", ["pending", "rejected_timedout", "done", 1, None])
def test_promise_settle_bad_state(api: Api, state: Any) -> None:
    id = uid()
    api.create(id)
    r = api.call("promise.settle", {"id": id, "state": state, "value": {}})
    assert r.status == 400
    assert api.get(id)["state"] == "pending"


def test_create_existing_is_idempotent_and_sends_nothing(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    id = uid("wf")
    first = api.create(id, tags=root_tags(id, group), param={"data": "AAAA"})
    s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == id)
    again = api.ok(
        "promise.create",
        {"id": id, "timeoutAt": 5, "param": {"data": "BBBB"}, "tags": {**root_tags(id, group), "extra": "x"}},
    )
    assert again["promise"] == first
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert len(s.executes(id)) == 1


def test_settle_settled_keeps_value(api: Api) -> None:
    id = uid()
    api.create(id)
    first = api.settle(id, "resolved", {"data": "b25l"})
    again = api.ok("promise.settle", {"id": id, "state": "rejected", "value": {"data": "dHdv"}})["promise"]
    assert again == first
    assert api.get(id) == first


def test_create_in_the_past_is_stored_timed_out(api: Api) -> None:
    id = uid()
    p = api.ok("promise.create", {"id": id, "timeoutAt": 1000})["promise"]
    assert p["state"] == "rejected_timedout" and p["createdAt"] == p["settledAt"] == 1000 and p["value"] == {}
    timer = uid()
    p = api.ok("promise.create", {"id": timer, "timeoutAt": 1000, "tags": {"resonate:timer": "true"}})["promise"]
    assert p["state"] == "resolved" and p["settledAt"] == 1000
    # targeted: its task is fulfilled at version 0, and nothing is sent
    wf = uid("wf")
    api.ok("promise.create", {"id": wf, "timeoutAt": 1000, "tags": targeted("nobody")})
    r = task_create(api, wf, tags=targeted("nobody"), timeout_at=1000)
    assert r.status == 200
    assert r.data["task"] == {"id": wf, "state": "fulfilled", "version": 0, "resumes": 0}
    assert r.data["preload"] == []
    # task.create of a new promise already past its timeout
    late = uid("wf")
    r = task_create(api, late, tags=targeted("nobody"), timeout_at=1000)
    assert r.status == 200
    assert r.data["task"] == {"id": late, "state": "fulfilled", "version": 0, "resumes": 0}
    assert r.data["promise"]["state"] == "rejected_timedout" and r.data["preload"] == []


def test_register_listener(api: Api) -> None:
    id = uid()
    p = api.create(id)
    assert api.listen(id, "poll://uni@g/x") == p
    assert api.listen(id, "poll://uni@g/x") == p  # deduplicated, still 200
    done = api.settle(id)
    assert api.listen(id, "poll://uni@g/x") == done  # settled: 200 with the record
    r = api.call("promise.register_listener", {"awaited": uid(), "address": "poll://uni@g/x"})
    assert (r.status, r.data) == (404, "Awaited promise not found")
    for bad in ["", "not a url", "/relative", "http://"]:
        r = api.call("promise.register_listener", {"awaited": id, "address": bad})
        assert r.status == 400, bad


def test_listener_is_notified_once(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    id = uid()
    api.create(id)
    api.listen(id, f"poll://uni@{group}/a")
    api.listen(id, f"poll://uni@{group}/a")
    settled = api.settle(id, "resolved", {"data": "eA=="})
    msg = s.wait_unblock(id)
    assert msg == {"data": {"promise": settled}, "head": {}, "kind": "unblock"}
    api.settle(id)  # already settled: nothing new
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert len(s.unblocks(id)) == 1


def test_promise_search(api: Api) -> None:
    tag = uid("t")
    ids = sorted(uid("s") for _ in range(5))
    for i, id in enumerate(reversed(ids)):
        api.create(id, tags={"search": tag, "n": str(i % 2)})
    api.create(uid("s"), tags={"search": "other"})
    api.settle(ids[0])
    out = api.ok("promise.search", {"tags": {"search": tag}})
    assert [p["id"] for p in out["promises"]] == ids and "cursor" not in out
    out = api.ok("promise.search", {"tags": {"search": tag}, "state": "pending"})
    assert [p["id"] for p in out["promises"]] == ids[1:]
    out = api.ok("promise.search", {"tags": {"search": tag, "n": "0"}})
    assert all(p["tags"]["n"] == "0" for p in out["promises"]) and len(out["promises"]) == 3
    page1 = api.ok("promise.search", {"tags": {"search": tag}, "limit": 2})
    assert [p["id"] for p in page1["promises"]] == ids[:2] and page1["cursor"] == ids[1]
    page2 = api.ok("promise.search", {"tags": {"search": tag}, "limit": 2, "cursor": page1["cursor"]})
    assert [p["id"] for p in page2["promises"]] == ids[2:4] and page2["cursor"] == ids[3]
    page3 = api.ok("promise.search", {"tags": {"search": tag}, "limit": 2, "cursor": page2["cursor"]})
    assert [p["id"] for p in page3["promises"]] == ids[4:] and "cursor" not in page3
    for limit in [0, 1001]:
        r = api.call("promise.search", {"limit": limit})
        assert r.status == 400, limit
    r = api.call("promise.search", {"limit": 1001})
    assert r.data == "Invalid 'limit' — must be between 1 and 1000"


# ---------------------------------------------------------------------------
# ids and tags (400)
# ---------------------------------------------------------------------------

CREATE_400 = [
    ("wf:1", {"resonate:origin": "w:f"}, "resonate:origin must not contain ':'"),
    ("other:1", {"resonate:origin": "wf"}, "Promise ID must be prefixed by resonate:origin"),
    ("wfx:1", {"resonate:origin": "wf"}, "Promise ID must be prefixed by resonate:origin"),
    ("wf.1", {"resonate:branch": "wf"}, "Promise ID must be prefixed by resonate:branch"),
    ("wf:12", {"resonate:branch": "wf:1"}, "Promise ID must be prefixed by resonate:branch"),
    ("wf:2.1", {"resonate:parent": "wf:1"}, "Promise ID must be prefixed by resonate:parent"),
    ("x:1", {"resonate:parent": "wf"}, "Promise ID must be prefixed by resonate:parent"),
    ("wf", {"resonate:prefix": "a.b"}, None),
    (
        "wf",
        {"resonate:delay": "-1", "resonate:target": "poll://any@g"},
        "resonate:delay must be a non-negative integer",
    ),
    (
        "wf",
        {"resonate:delay": "abc", "resonate:target": "poll://any@g"},
        "resonate:delay must be a non-negative integer",
    ),
    (
        "wf",
        {"resonate:delay": str(10**15), "resonate:target": "poll://any@g"},
        "resonate:delay must be less than timeoutAt",
    ),
    ("wf", {"resonate:delay": "5"}, "resonate:delay requires a resonate:target tag"),
    ("wf", {"resonate:target": ""}, "Invalid resonate:target address"),
    ("wf", {"resonate:target": "not a url"}, "Invalid resonate:target address"),
    ("wf", {"resonate:target": "/relative"}, "Invalid resonate:target address"),
    ("wf", {"resonate:target": "http://"}, "Invalid resonate:target address"),
    ("w\0f", {}, "Promise ID must not contain null bytes"),
    ("", {}, None),
]


@pytest.mark.parametrize(("id", "tags", "message"), CREATE_400)
def test_create_400(api: Api, id: str, tags: dict[str, str], message: str | None) -> None:
    r = api.call("promise.create", {"id": id, "timeoutAt": now_ms() + HOUR_MS, "tags": tags})
    assert r.status == 400, r
    if message is not None:
        assert r.data == message
    assert api.call("promise.get", {"id": id or "x"}).status in (400, 404)


def test_create_400_messages_joined(api: Api) -> None:
    r = api.call(
        "promise.create",
        {"id": "a:1", "timeoutAt": now_ms() + HOUR_MS, "tags": {"resonate:origin": "b", "resonate:branch": "c"}},
    )
    assert r.status == 400
    assert r.data == "Promise ID must be prefixed by resonate:origin; Promise ID must be prefixed by resonate:branch"


def test_create_negative_timeout(api: Api) -> None:
    assert api.call("promise.create", {"id": uid(), "timeoutAt": -1}).status == 400


@pytest.mark.parametrize(
    ("id", "tags"),
    [
        ("wf", {"resonate:origin": "wf"}),
        ("wf:1", {"resonate:origin": "wf", "resonate:branch": "wf", "resonate:parent": "wf"}),
        ("wf:1.2", {"resonate:origin": "wf", "resonate:branch": "wf:1", "resonate:parent": "wf:1"}),
        ("a.b:1", {"resonate:origin": "a.b"}),  # '.' is allowed in an origin
        ("wf:d1", {"resonate:origin": "wf", "resonate:parent": "wf", "resonate:branch": "wf:d1"}),
    ],
)
def test_create_valid_lineage(api: Api, id: str, tags: dict[str, str]) -> None:
    id = id.replace("wf", uid("wf")) if id.startswith("wf") else id
    base = id.split(":", 1)[0]
    tags = {k: v.replace("wf", base) if v.startswith("wf") else v for k, v in tags.items()}
    assert api.call("promise.create", {"id": id, "timeoutAt": now_ms() + HOUR_MS, "tags": tags}).status == 200


def test_register_callback_rules(api: Api) -> None:
    wf = uid("wf")
    api.create(wf, tags=root_tags(wf, "nobody"))
    r = api.call("promise.register_callback", {"awaited": "other:1", "awaiter": wf})
    assert (r.status, r.data) == (400, "Awaiter and awaited must belong to the same origin")
    r = api.call("promise.register_callback", {"awaited": wf, "awaiter": wf})
    assert (r.status, r.data) == (400, "Awaited and awaiter must be different promises")
    r = api.call("promise.register_callback", {"awaited": f"{wf}:9", "awaiter": wf})
    assert (r.status, r.data) == (404, "Awaited promise not found")
    c = child(api, wf, 1)
    r = api.call("promise.register_callback", {"awaited": c, "awaiter": f"{wf}:77"})
    assert (r.status, r.data) == (422, "Awaiter promise not found")
    plain = child(api, wf, 2)
    r = api.call("promise.register_callback", {"awaited": c, "awaiter": plain})
    assert (r.status, r.data) == (422, "Awaiter promise has no resonate:target tag")
    r = api.call("promise.register_callback", {"awaited": c, "awaiter": wf})
    assert r.status == 200 and r.data["promise"]["id"] == c


def test_heartbeat(api: Api) -> None:
    r = api.call("task.heartbeat", {"pid": "w1", "tasks": [{"id": "a:1", "version": 1}, {"id": "b:1", "version": 1}]})
    assert (r.status, r.data) == (400, "All tasks must belong to the same origin")
    assert (
        api.ok("task.heartbeat", {"pid": "w1", "tasks": [{"id": "a:1", "version": 1}, {"id": "a:2", "version": 3}]})
        == {}
    )
    assert api.call("task.heartbeat", {"pid": "w1", "tasks": []}).status == 400
    assert api.call("task.heartbeat", {"pid": "", "tasks": [{"id": "a", "version": 1}]}).status == 400
    assert api.call("task.heartbeat", {"pid": "w1", "tasks": [{"id": "a"}]}).status == 400


# ---------------------------------------------------------------------------
# task.*
# ---------------------------------------------------------------------------


def test_task_create_new(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    r = task_create(api, wf, group=group, pid="w9", ttl=45_000)
    assert r.status == 200
    assert r.data["task"] == {"id": wf, "state": "acquired", "version": 1, "resumes": 0, "ttl": 45_000, "pid": "w9"}
    assert r.data["promise"]["id"] == wf and r.data["promise"]["state"] == "pending"
    assert r.data["preload"] == []
    # again while acquired: 409
    r = task_create(api, wf, group=group)
    assert (r.status, r.data) == (409, "Already exists")
    # no execute for a task.create
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert s.executes(wf) == []
    # fulfilled: 200 with the fulfilled task and no preload
    assert fulfill(api, wf, 1).status == 200
    r = task_create(api, wf, group=group)
    assert r.status == 200
    assert r.data["task"] == {"id": wf, "state": "fulfilled", "version": 1, "resumes": 0}
    assert r.data["preload"] == []


def test_task_create_acquires_pending(api: Api) -> None:
    wf = uid("wf")
    api.create(wf, tags=root_tags(wf, "nobody"))
    r = task_create(api, wf, pid="w2", ttl=1000)
    assert r.status == 200
    assert r.data["task"] == {"id": wf, "state": "acquired", "version": 1, "resumes": 0, "ttl": 1000, "pid": "w2"}


def test_task_create_400_and_422(api: Api) -> None:
    wf = uid("wf")
    r = task_create(api, wf, tags={"resonate:origin": wf})
    assert (r.status, r.data) == (400, "Action must have a resonate:target tag")
    r = task_create(api, wf, tags={**targeted("g"), "resonate:delay": "1"})
    assert (r.status, r.data) == (400, "Action must not have a resonate:delay tag")
    assert task_create(api, wf, ttl=0).status == 400
    assert task_create(api, wf, pid="").status == 400
    assert task_create(api, "other:1", tags={"resonate:origin": wf, **targeted("g")}).status == 400
    assert api.call("promise.get", {"id": wf}).status == 404
    plain = uid("wf")
    api.create(plain)
    r = task_create(api, plain)
    assert (r.status, r.data) == (422, "Promise exists without a target task")


def test_task_acquire(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    api.create(wf, tags=root_tags(wf, group))
    msg = s.wait_for(lambda m: m["kind"] == "execute")
    assert msg == {"data": {"task": {"id": wf, "version": 0}}, "head": {"serverUrl": ""}, "kind": "execute"}
    r = api.acquire(wf, 3)
    assert (r.status, r.data) == (409, "Version mismatch")
    r = api.acquire(wf, 0, pid="w7", ttl=5000)
    assert r.status == 200
    task = r.data["task"]
    assert task == {"id": wf, "state": "acquired", "version": 1, "resumes": 0, "ttl": 5000, "pid": "w7"}
    assert isinstance(task["resumes"], int) and "promiseId" not in task
    assert r.data["promise"]["id"] == wf and r.data["preload"] == []
    r = api.acquire(wf, 1)
    assert (r.status, r.data) == (409, "Task is not pending")
    r = api.acquire(wf, 0)
    assert (r.status, r.data) == (409, "Task is not pending")  # state is checked before version
    r = api.acquire(uid("wf"), 0)
    assert (r.status, r.data) == (404, "Task not found")
    assert api.acquire(wf, 1, ttl=0).status == 400
    assert api.acquire(wf, 1, pid="").status == 400


def test_task_release(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    assert task_create(api, wf, group=group).status == 200
    r = api.call("task.release", {"id": wf, "version": 2})
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")
    assert api.ok("task.release", {"id": wf, "version": 1}) == {}
    msg = s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == wf)
    assert msg["data"]["task"]["version"] == 1  # release keeps the version
    r = api.call("task.release", {"id": wf, "version": 1})
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")  # no longer acquired
    assert api.acquire(wf, 1).data["task"]["version"] == 2
    r = api.call("task.release", {"id": uid("wf"), "version": 0})
    assert (r.status, r.data) == (404, "Task not found")


def test_task_fulfill(api: Api) -> None:
    wf = uid("wf")
    assert task_create(api, wf).status == 200
    r = fulfill(api, wf, 2)
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")
    r = api.call(
        "task.fulfill",
        {"id": wf, "version": 1, "action": action("promise.settle", {"id": f"{wf}:1", "state": "resolved"})},
    )
    assert (r.status, r.data) == (400, "Action ID must match the task ID")
    r = api.call(
        "task.fulfill", {"id": wf, "version": 1, "action": action("promise.settle", {"id": wf, "state": "pending"})}
    )
    assert r.status == 400
    r = fulfill(api, wf, 1, "rejected", {"data": "Ym9vbQ=="})
    assert r.status == 200
    p = r.data["promise"]
    assert p["state"] == "rejected" and p["value"] == {"data": "Ym9vbQ=="} and "settledAt" in p
    r = fulfill(api, wf, 1)
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")  # fulfilled now
    r = fulfill(api, uid("wf"), 1)
    assert (r.status, r.data) == (404, "Task not found")


def test_task_suspend_and_resume(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    assert task_create(api, wf, group=group).status == 200
    c1, c2 = child(api, wf, 1), child(api, wf, 2)
    r = suspend(api, wf, 2, [c1])
    assert (r.status, r.data) == (409, "Task is not acquired or version mismatch")
    r = suspend(api, wf, 1, [c1, f"{wf}:99"])
    assert (r.status, r.data) == (422, "Awaited promise not found")
    r = suspend(api, wf, 1, [c1, c2])
    assert (r.status, r.data) == (200, {})
    # suspended: not acquired any more
    r = fulfill(api, wf, 1)
    assert r.status == 409
    r = suspend(api, wf, 1, [c1])
    assert (r.status, r.data) == (409, "Task is not acquired or version mismatch")
    api.settle(c1)
    msg = s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == wf)
    assert msg["data"]["task"]["version"] == 1  # resume keeps the version
    r = api.acquire(wf, 1)
    assert r.status == 200 and r.data["task"]["version"] == 2
    r = suspend(api, uid("wf"), 0, [c1])
    assert r.status == 400  # awaited from another origin
    other = uid("wf")
    r = suspend(api, other, 0, [f"{other}:1"])
    assert (r.status, r.data) == (404, "Task not found")


def test_task_suspend_redirect(api: Api) -> None:
    wf = uid("wf")
    assert task_create(api, wf).status == 200
    c1, c2 = child(api, wf, 1), child(api, wf, 2)
    api.settle(c2)
    r = suspend(api, wf, 1, [c1, c2])
    assert r.status == 300 and r.http_status == 300
    assert set(r.data) == {"preload"}
    assert [p["id"] for p in r.data["preload"]] == sorted([c1, c2])
    # the task stays acquired at the same version, and no callback was registered
    api.settle(c1)
    assert fulfill(api, wf, 1).status == 200


def test_task_suspend_400(api: Api) -> None:
    wf = uid("wf")
    assert task_create(api, wf).status == 200
    c1 = child(api, wf, 1)
    r = api.call("task.suspend", {"id": wf, "version": 1, "actions": []})
    assert (r.status, r.data) == (400, "Actions array cannot be empty")
    r = api.call("task.suspend", {"id": wf, "version": 1, "actions": [callback(c1, f"{wf}:5")]})
    assert (r.status, r.data) == (400, "All action awaiter IDs must match the task ID")
    r = suspend(api, wf, 1, [wf])
    assert r.status == 400
    r = suspend(api, wf, 1, ["elsewhere:1"])
    assert r.status == 400 and "origin" in r.data
    # none of these changed anything
    assert fulfill(api, wf, 1).status == 200


def test_task_fence(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    assert task_create(api, wf, group=group).status == 200
    sib = child(api, wf, 1)
    new = f"{wf}:2"
    create = action(
        "promise.create",
        {
            "id": new,
            "timeoutAt": now_ms() + HOUR_MS,
            "tags": {"resonate:origin": wf, "resonate:branch": wf, "resonate:parent": wf, **targeted(group)},
        },
    )
    r = api.call("task.fence", {"id": wf, "version": 0, "action": create})
    assert (r.status, r.data) == (409, "Version mismatch")
    r = api.call("task.fence", {"id": wf, "version": 1, "action": create}, corr_id="outer-1")
    assert r.status == 200
    inner = r.data["action"]
    assert inner["kind"] == "promise.create"
    assert inner["head"] == {"corrId": "outer-1", "status": 200, "version": VERSION}
    assert inner["data"]["promise"]["id"] == new and inner["data"]["promise"]["state"] == "pending"
    assert [p["id"] for p in r.data["preload"]] == sorted([sib, new])
    s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == new)  # a fenced create starts its task
    # fenced create of an existing promise: the stored record
    again = api.call("task.fence", {"id": wf, "version": 1, "action": create})
    assert (
        again.data["action"]["head"]["status"] == 200
        and again.data["action"]["data"]["promise"] == inner["data"]["promise"]
    )
    # fenced settle
    r = api.call(
        "task.fence",
        {
            "id": wf,
            "version": 1,
            "action": action("promise.settle", {"id": sib, "state": "resolved", "value": {"data": "eQ=="}}),
        },
    )
    assert r.status == 200 and r.data["action"]["data"]["promise"]["state"] == "resolved"
    # fenced settle of an unknown promise: inner 404, outer 200
    r = api.call(
        "task.fence",
        {"id": wf, "version": 1, "action": action("promise.settle", {"id": f"{wf}:404", "state": "resolved"})},
    )
    assert r.status == 200
    assert r.data["action"]["head"]["status"] == 404 and r.data["action"]["data"] == "Promise not found"
    # 400s and 404
    r = api.call("task.fence", {"id": wf, "version": 1, "action": action("promise.get", {"id": sib})})
    assert (r.status, r.data) == (400, "Invalid fence action kind")
    r = api.call(
        "task.fence", {"id": wf, "version": 1, "action": action("promise.settle", {"id": wf, "state": "resolved"})}
    )
    assert (r.status, r.data) == (400, "Action ID must not equal the task ID")
    r = api.call(
        "task.fence",
        {
            "id": wf,
            "version": 1,
            "action": action("promise.create", {"id": f"{wf}:3", "timeoutAt": 1, "tags": {"resonate:origin": "zz"}}),
        },
    )
    assert r.status == 400
    r = api.call("task.fence", {"id": uid("wf"), "version": 1, "action": create})
    assert (r.status, r.data) == (404, "Task not found")


def test_preload_order_and_content(api: Api) -> None:
    wf = uid("wf")
    api.create(wf, tags=root_tags(wf, "nobody"))
    for n in (2, 10, 1):
        child(api, wf, n)
    api.settle(f"{wf}:10", "resolved", {"data": "MTA="})
    nested = child(api, f"{wf}:1", 1)  # its branch is wf:1, not wf
    other = uid("wf")
    api.create(other, tags=root_tags(other, "nobody"))
    child(api, other, 1)
    r = api.acquire(wf, 0)
    assert r.status == 200
    preload = r.data["preload"]
    assert [p["id"] for p in preload] == [f"{wf}:1", f"{wf}:10", f"{wf}:2"]
    assert preload[1]["state"] == "resolved" and preload[1]["value"] == {"data": "MTA="}
    assert preload[0] == api.get(f"{wf}:1")
    assert nested not in [p["id"] for p in preload]


def test_no_branch_no_preload(api: Api) -> None:
    wf = uid("wf")
    api.create(wf, tags=targeted("nobody"))
    child(api, wf, 1)
    assert api.acquire(wf, 0).data["preload"] == []


# ---------------------------------------------------------------------------
# timeouts, leases, retries
# ---------------------------------------------------------------------------


def test_timeouts_targeted_in_the_background_others_when_touched(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    address = f"poll://uni@{group}/a"
    deadline = now_ms() + 400
    lazy, bg, timer = uid("lazy"), uid("bg"), uid("timer")
    mark = uid("m")
    api.create(lazy, timeout_at=deadline, tags={"mark": mark})
    api.create(bg, timeout_at=deadline, tags=targeted("nobody"))
    api.create(timer, timeout_at=deadline, tags={**targeted("nobody"), "resonate:timer": "true"})
    for id in (lazy, bg, timer):
        api.listen(id, address)
    # the targeted ones time out in the background, untouched
    got = s.wait_unblock(bg)["data"]["promise"]
    assert got["state"] == "rejected_timedout" and got["settledAt"] == deadline and got["value"] == {}
    got = s.wait_unblock(timer)["data"]["promise"]
    assert got["state"] == "resolved" and got["settledAt"] == deadline and got["value"] == {}
    assert api.ok("task.get", {"id": bg})["task"]["state"] == "fulfilled"
    # the untargeted one is still pending (search applies no lazy timeout) and nobody was told
    found = api.ok("promise.search", {"tags": {"mark": mark}})["promises"]
    assert [p["state"] for p in found] == ["pending"]
    assert not s.has_unblock(lazy)
    # touching it times it out, with full settlement: its listener is told then
    p = api.get(lazy)
    assert p["state"] == "rejected_timedout" and p["settledAt"] == deadline and p["value"] == {}
    assert s.wait_unblock(lazy)["data"]["promise"] == p


def test_lazy_timeout_then_settle_returns_timed_out(api: Api) -> None:
    id = uid()
    deadline = now_ms() + 150
    api.create(id, timeout_at=deadline)
    wait_until(lambda: now_ms() > deadline + 5, what="the deadline to pass")
    p = api.ok("promise.settle", {"id": id, "state": "resolved", "value": {"data": "eA=="}})["promise"]
    assert p["state"] == "rejected_timedout" and p["settledAt"] == deadline and p["value"] == {}


def test_lease_expiry(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    assert task_create(api, wf, group=group, ttl=300).data["task"]["version"] == 1
    msg = s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == wf, timeout=5)
    assert msg["data"]["task"]["version"] == 1  # same version
    r = fulfill(api, wf, 1)
    assert r.status == 409  # the old holder lost it
    r = api.acquire(wf, 1)
    assert r.status == 200 and r.data["task"]["version"] == 2


def test_heartbeat_extends_lease(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    start = now_ms()
    assert task_create(api, wf, group=group, pid="hb", ttl=600).status == 200

    def beat() -> bool:
        api.ok("task.heartbeat", {"pid": "hb", "tasks": [{"id": wf, "version": 1}]})
        return now_ms() - start > 1500

    wait_until(beat, timeout=5, interval=0.1, what="1.5 s of heartbeats")
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert s.executes(wf) == []  # the lease never lapsed
    assert fulfill(api, wf, 1).status == 200


def test_pending_task_retry(servers: ServerFactory) -> None:
    server, api = servers("--retry-ms", "300")
    group = uid("g")
    s = servers.sse(server.url, group, "a")
    wf = uid("wf")
    api.create(wf, tags=root_tags(wf, group))
    wait_until(lambda: len(s.executes(wf)) >= 3, timeout=5, what="three executes")
    assert {m["data"]["task"]["version"] for m in s.executes(wf)} == {0}
    # acquired: the retries stop
    assert api.acquire(wf, 0).status == 200
    n = len(s.executes(wf))
    assert fulfill(api, wf, 1).status == 200
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert len(s.executes(wf)) <= n + 1


def test_delay_defers_first_dispatch(api: Api, server: Any, streams: ServerFactory) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    delay = now_ms() + 400
    api.create(wf, tags={**root_tags(wf, group), "resonate:delay": str(delay)})
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert s.executes(wf) == []
    msg = s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == wf, timeout=5)
    assert msg["data"]["task"]["version"] == 0
    assert now_ms() >= delay


# ---------------------------------------------------------------------------
# the real SDK against the server
# ---------------------------------------------------------------------------


def test_sdk_workflow_awaits_external_promise(server: Any) -> None:
    from resonate.context import Context
    from resonate.resonate import Resonate
    from resonate.types import Value

    async def main() -> str:
        seen: asyncio.Queue[str] = asyncio.Queue()

        def record(ctx: Context, promise_id: str) -> str:
            seen.put_nowait(promise_id)
            return promise_id

        async def approval(ctx: Context, name: str) -> str:
            p = ctx.promise()
            await ctx.run(record, await p.id())
            answer = await p
            return f"{name}: {answer}"

        worker = Resonate(url=server.url, group=uid("workers"))
        sender = Resonate(url=server.url, sources=[])
        try:
            worker.register(approval)
            handle = worker.run(uid("approval"), approval, "alice")
            promise_id = await asyncio.wait_for(seen.get(), 15)
            await sender.promises.resolve(promise_id, Value(data="approved"))
            return await asyncio.wait_for(handle.result(), 15)
        finally:
            await asyncio.wait_for(sender.stop(), 10)
            await asyncio.wait_for(worker.stop(), 10)

    assert asyncio.run(main()) == "alice: approved"


# ---------------------------------------------------------------------------
# further spec details
# ---------------------------------------------------------------------------


def test_listener_address_message(api: Api) -> None:
    id = uid()
    api.create(id)
    r = api.call("promise.register_listener", {"awaited": id, "address": "not a url"})
    assert (r.status, r.data) == (400, "Invalid listener address")


def test_listener_with_unroutable_scheme_does_not_block_settle(api: Api) -> None:
    id = uid()
    api.create(id)
    api.listen(id, "http://example.invalid/hook")
    api.listen(id, "poll://uni@nobody")  # uni without an id: dropped
    assert api.settle(id)["state"] == "resolved"


def test_empty_id_message(api: Api) -> None:
    r = api.call("promise.create", {"id": "", "timeoutAt": now_ms() + HOUR_MS})
    assert (r.status, r.data) == (400, "Promise ID is required")


def test_missing_timeout_is_a_parse_error(api: Api) -> None:
    r = api.call("promise.create", {"id": uid()})
    assert r.status == 400 and r.data.startswith("Invalid request: ")


def test_delay_with_plus_sign(api: Api) -> None:
    wf = uid("wf")
    r = api.call(
        "promise.create",
        {"id": wf, "timeoutAt": now_ms() + HOUR_MS, "tags": {**targeted("nobody"), "resonate:delay": "+5"}},
    )
    assert r.status == 200


def _without_head(act: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in act.items() if k != "head"}


@pytest.mark.parametrize("kind", ["task.create", "task.fulfill", "task.suspend"])
def test_action_head_required(api: Api, kind: str) -> None:
    wf = uid("wf")
    if kind == "task.create":
        data: dict[str, Any] = {
            "pid": "w1",
            "ttl": 1000,
            "action": _without_head(
                action("promise.create", {"id": wf, "timeoutAt": now_ms() + HOUR_MS, "tags": targeted("nobody")})
            ),
        }
    else:
        assert task_create(api, wf).status == 200
        c = child(api, wf, 1)
        if kind == "task.fulfill":
            data = {
                "id": wf,
                "version": 1,
                "action": _without_head(action("promise.settle", {"id": wf, "state": "resolved"})),
            }
        else:
            data = {"id": wf, "version": 1, "actions": [_without_head(callback(c, wf))]}
    assert api.call(kind, data).status == 400


def test_fence_action_head_optional(api: Api) -> None:
    wf = uid("wf")
    assert task_create(api, wf).status == 200
    c = child(api, wf, 1)
    r = api.call(
        "task.fence",
        {"id": wf, "version": 1, "action": _without_head(action("promise.settle", {"id": c, "state": "resolved"}))},
    )
    assert r.status == 200 and r.data["action"]["data"]["promise"]["state"] == "resolved"


def test_settlement_resumes_only_pending_awaiters(api: Api, server: Any, streams: ServerFactory) -> None:
    """An awaiter whose own promise was settled meanwhile is not resumed (§5.2)."""
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    assert task_create(api, wf, group=group).status == 200
    c = child(api, wf, 1)
    assert suspend(api, wf, 1, [c]).status == 200
    api.settle(wf, "rejected_canceled")  # the workflow itself is canceled
    api.settle(c)
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert s.executes(wf) == []
    assert task_create(api, wf, group=group).data["task"]["state"] == "fulfilled"


def test_awaited_settled_twice_over_resumes_once(api: Api, server: Any, streams: ServerFactory) -> None:
    """Two awaited promises settle: the first resumes the task, the second only adds a resume."""
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = uid("wf")
    assert task_create(api, wf, group=group).status == 200
    c1, c2 = child(api, wf, 1), child(api, wf, 2)
    assert suspend(api, wf, 1, [c1, c2]).status == 200
    api.settle(c1)
    api.settle(c2)
    probe = api.probe(f"poll://uni@{group}/a")
    s.wait_unblock(probe)
    assert [m["data"]["task"]["version"] for m in s.executes(wf)] == [1]
    r = api.acquire(wf, 1)
    assert r.status == 200 and r.data["task"]["resumes"] == 0
