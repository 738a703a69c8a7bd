"""Every rule of the real Resonate server that the local server follows, one row each, with its source.

The local server stands in for the real one (resonatehq/resonate, Rust) in
``make run`` and in every test: what it accepts, the real server must accept,
or code that passes here fails in production. So each rule below names where
the real server states it. The release that matters is v0.10.0 (the first
speaking the SDK 0.8 id format ``<origin>:<lineage>``, PR #1127); the source
was read at these commits of resonatehq/resonate:

- ``types.rs@0ec1776``: request validation after PR #1127 (the ``validate_*``
  functions and the ``#[validate]`` attributes of the request structs);
- ``server.rs@e528159``: the request handlers the server runs in production
  (``op_*``), and ``transport/mod.rs`` (``parse_address``,
  ``is_valid_address``) of the same tree;
- ``persistence_sqlite.rs@e528159``, ``processing_timeouts.rs@e528159``:
  what storage does (listeners, schedules firing);
- ``oracle.rs@01e895d``: the server's own reference model (schedule firing
  tags);
- ``util.rs@250f307``: ``is_valid_cron`` / ``compute_next_cron`` (the
  ``cron`` crate 0.12: zslayton/cron ``parsing.rs``, ``time_unit/*``);
- ``transport_http_poll.rs@2e0d9e3``: the SSE registry.

A real-server behaviour the local server deliberately does not follow is a
row marked ``xfail(strict=True)`` that says why.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import HOUR_MS, Api, ServerFactory, action, callback, now_ms, uid

TYPES = "types.rs@0ec1776"
SERVER = "server.rs@e528159"
TRANSPORT = "transport/mod.rs@e528159 parse_address"
STORAGE = "persistence_sqlite.rs@e528159"
ORACLE = "oracle.rs@01e895d"
CRON = "util.rs@250f307 is_valid_cron + cron crate 0.12"
POLL = "transport_http_poll.rs@2e0d9e3 PollRegistry"


def rule(source: str, *values: Any, marks: Any = ()) -> Any:
    """A parametrized row that names the source it follows (shown in the test id)."""
    return pytest.param(*values, id=f"{values[0]!s}"[:60], marks=marks)


# ---------------------------------------------------------------------------
# Addresses: resonate:target on promise.create / task.create / task.fence, and
# the address of promise.register_listener. Source: server.rs op_promise_create,
# op_task_create, op_task_fence, op_promise_register_listener, all calling
# transport::is_valid_address = parse_address(..).is_some(); parse_address reads
# the string with the `url` crate (WHATWG URLs).
# ---------------------------------------------------------------------------

ROUTABLE = [
    rule(TRANSPORT, "http://example.com/callback"),
    rule(TRANSPORT, "https://example.com"),
    rule(TRANSPORT, "HTTP://Example.COM/x"),  # the scheme is case-insensitive
    rule(TRANSPORT, "http:example.com"),  # WHATWG: a special scheme ignores missing slashes
    rule(TRANSPORT, "http://[::1]:8080/x"),
    rule(TRANSPORT, "poll://uni@workers/w1"),
    rule(TRANSPORT, "poll://any@workers"),
    rule(TRANSPORT, "poll://any@workers/"),  # path "/": no id
    rule(TRANSPORT, "poll://any@workers/w1?x=1"),  # query ignored
    rule(TRANSPORT, "poll://any:secret@workers/w1"),  # only the username is read
    rule(TRANSPORT, "poll://any@workers:8080/w1"),  # a port is allowed
    rule(TRANSPORT, "POLL://any@Workers/w1"),
    rule(TRANSPORT, "gcps://project/topic"),
    rule(TRANSPORT, "gcps://p/topic/more"),
    rule(TRANSPORT, "bash://"),
    rule(TRANSPORT, "bash://docker/alpine"),
    rule(TRANSPORT, "bash:anything"),
]

UNROUTABLE = [
    rule(TRANSPORT, "ftp://nowhere"),  # no transport for the scheme
    rule(TRANSPORT, "unknown://x/y"),
    rule(TRANSPORT, "mailto:a@b.c"),
    rule(TRANSPORT, "poll://x@workers"),  # cast must be uni or any
    rule(TRANSPORT, "poll://ANY@workers"),  # ... exactly
    rule(TRANSPORT, "poll://workers"),  # no cast
    rule(TRANSPORT, "poll://any@"),  # no group (the URL does not parse)
    rule(TRANSPORT, "poll://any@/w1"),
    rule(TRANSPORT, "poll:any@workers"),  # no authority, so no host
    rule(TRANSPORT, "poll://any@my group"),  # a space is a forbidden host code point
    rule(TRANSPORT, "poll://any@workers:99999"),  # port out of range
    rule(TRANSPORT, "gcps://project"),  # no topic
    rule(TRANSPORT, "gcps://project/"),
    rule(TRANSPORT, "http://"),  # no host
    rule(TRANSPORT, "https:///"),
    rule(TRANSPORT, "http://exa mple.com"),
    rule(TRANSPORT, "http://[::1"),
    rule(TRANSPORT, "http://256.256.256.256"),  # ends in a number, so must be IPv4
    rule(TRANSPORT, "not a url"),
    rule(TRANSPORT, "/relative"),
]


@pytest.mark.parametrize("address", ROUTABLE)
def test_routable_target_is_accepted(api: Api, address: str) -> None:
    id = uid("addr")
    p = api.create(id, tags={"resonate:target": address})
    assert p["tags"]["resonate:target"] == address


@pytest.mark.parametrize("address", UNROUTABLE)
def test_unroutable_target_is_400(api: Api, address: str) -> None:
    r = api.call(
        "promise.create", {"id": uid("addr"), "timeoutAt": now_ms() + HOUR_MS, "tags": {"resonate:target": address}}
    )
    assert (r.status, r.data) == (400, "Invalid resonate:target address")


@pytest.mark.parametrize("address", UNROUTABLE)
def test_unroutable_target_in_task_create_and_fence_is_400(api: Api, address: str) -> None:
    wf = uid("wf")
    r = api.call(
        "task.create",
        {
            "pid": "w1",
            "ttl": 60_000,
            "action": action(
                "promise.create", {"id": wf, "timeoutAt": now_ms() + HOUR_MS, "tags": {"resonate:target": address}}
            ),
        },
    )
    assert (r.status, r.data) == (400, "Invalid resonate:target address")
    good = uid("wf")
    api.ok(
        "task.create",
        {
            "pid": "w1",
            "ttl": 60_000,
            "action": action(
                "promise.create",
                {"id": good, "timeoutAt": now_ms() + HOUR_MS, "tags": {"resonate:target": "poll://any@nobody"}},
            ),
        },
    )
    fenced = {"id": f"{good}:1", "timeoutAt": now_ms() + HOUR_MS, "tags": {"resonate:target": address}}
    r = api.call("task.fence", {"id": good, "version": 1, "action": action("promise.create", fenced)})
    assert (r.status, r.data) == (400, "Invalid resonate:target address")


@pytest.mark.parametrize("address", ROUTABLE)
def test_routable_listener_is_accepted(api: Api, address: str) -> None:
    id = uid("l")
    api.create(id)
    assert api.listen(id, address)["state"] == "pending"


@pytest.mark.parametrize("address", UNROUTABLE)
def test_unroutable_listener_is_400(api: Api, address: str) -> None:
    id = uid("l")
    api.create(id)
    r = api.call("promise.register_listener", {"awaited": id, "address": address})
    assert (r.status, r.data) == (400, "Invalid listener address")


# ---------------------------------------------------------------------------
# task.suspend. Source: server.rs op_task_suspend (awaited ids deduplicated
# before persistence_sqlite.rs task_suspend; types.rs validate_task_suspend_data
# has no uniqueness rule).
# ---------------------------------------------------------------------------


def _workflow(api: Api, group: str = "nobody") -> str:
    wf = uid("wf")
    api.ok(
        "task.create",
        {
            "pid": "w1",
            "ttl": 60_000,
            "action": action(
                "promise.create",
                {
                    "id": wf,
                    "timeoutAt": now_ms() + HOUR_MS,
                    "tags": {
                        "resonate:origin": wf,
                        "resonate:branch": wf,
                        "resonate:parent": wf,
                        "resonate:target": f"poll://any@{group}",
                    },
                },
            ),
        },
    )
    return wf


def _child(api: Api, wf: str, n: int) -> str:
    id = f"{wf}:{n}"
    api.create(id, tags={"resonate:origin": wf, "resonate:branch": wf, "resonate:parent": wf})
    return id


def test_suspend_on_the_same_promise_twice_is_deduplicated(api: Api, streams: ServerFactory, server: Any) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    wf = _workflow(api, group)
    c1, c2 = _child(api, wf, 1), _child(api, wf, 2)
    actions = [callback(c1, wf), callback(c1, wf), callback(c2, wf), callback(c1, wf)]
    r = api.call("task.suspend", {"id": wf, "version": 1, "actions": actions})
    assert (r.status, r.data) == (200, {})
    assert api.ok("task.get", {"id": wf})["task"]["state"] == "suspended"
    api.settle(c1)
    s.wait_for(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == wf, what="resume")
    task = api.ok("task.get", {"id": wf})["task"]
    assert (task["state"], task["resumes"]) == ("pending", 1)


# ---------------------------------------------------------------------------
# SSE delivery. Source: transport_http_poll.rs PollRegistry (register pushes
# every connection; send_poll matches the group string exactly and takes the
# first connection with the id; an anycast without one picks a connection at
# random); server.rs handle_poll (the group and id come from the path as is).
# ---------------------------------------------------------------------------


def test_group_is_case_sensitive(api: Api, streams: ServerFactory, server: Any) -> None:
    base = uid("grp")
    upper = streams.sse(server.url, base.upper(), "w1")
    lower = streams.sse(server.url, base, "w1")
    to_upper = api.probe(f"poll://uni@{base.upper()}/w1")
    to_lower = api.probe(f"poll://uni@{base}/w1")
    upper.wait_unblock(to_upper)
    lower.wait_unblock(to_lower)
    assert not upper.has_unblock(to_lower)
    assert not lower.has_unblock(to_upper)


def test_two_streams_on_one_id_the_first_gets_the_messages(api: Api, streams: ServerFactory, server: Any) -> None:
    group = uid("g")
    first = streams.sse(server.url, group, "w1")
    second = streams.sse(server.url, group, "w1")
    uni = api.probe(f"poll://uni@{group}/w1")
    anycast = api.probe(f"poll://any@{group}/w1")
    first.wait_unblock(uni)
    first.wait_unblock(anycast)
    # Both stay registered: once the first goes, the second takes its messages.
    first.close()
    after = api.probe(f"poll://uni@{group}/w1")
    second.wait_unblock(after)
    assert not second.has_unblock(uni) and not second.has_unblock(anycast)


# ---------------------------------------------------------------------------
# Schedules. Source: types.rs ScheduleCreateData + validate_schedule_create_data
# (fields, then schema rules); server.rs op_schedule_create (then is_valid_cron,
# then INSERT OR IGNORE: an existing id answers the stored schedule; no address
# check on promiseTags), op_schedule_search (limit 1..1000, default 10, tags
# filter on promiseTags, cursor); util.rs is_valid_cron (the cron crate 0.12,
# five fields promoted to six with 0 seconds).
# ---------------------------------------------------------------------------

VALID_CRONS = [
    rule(CRON, "* * * * *"),
    rule(CRON, "*/5 * * * * *"),  # six fields: seconds first
    rule(CRON, "0 0 0 * * * 2030"),  # seven: a year
    rule(CRON, "0 9 * * 1"),  # day of week 1 = Sunday
    rule(CRON, "0 9 * * 7"),  # ... 7 = Saturday
    rule(CRON, "0 9 * * MON-FRI"),
    rule(CRON, "0 0 12 ? * WED"),  # ? in a day field
    rule(CRON, "0 0 0 1 jan-mar *"),
    rule(CRON, "10-20/2 * * * * *"),
    rule(CRON, "0 0 0 * * Mon-Thurs/2"),
    rule(CRON, "@daily"),
    rule(CRON, "@weekly"),
]

INVALID_CRONS = [
    rule(CRON, "not a cron"),
    rule(CRON, "* * * *"),
    rule(CRON, "* * * * * * * *"),
    rule(CRON, "0 9 * * 0"),  # no day 0: Sunday is 1
    rule(CRON, "60 * * * * *"),
    rule(CRON, "*/0 * * * * *"),
    rule(CRON, "0 0 0 * * Tues/2"),  # no step from a named point
    rule(CRON, "? * * * * *"),  # ? only in the day fields
    rule(CRON, "0 0 0 L * *"),
    rule(CRON, "0 0 0 15W * *"),
    rule(CRON, "0 0 0 * * 6#3"),
    rule(CRON, "0 0 0 * * * 1969"),
    rule(CRON, "0 0 0 5-1 * *"),
    rule(CRON, "@every 5m"),
]


def schedule_data(**fields: Any) -> dict[str, Any]:
    return {
        "id": uid("s"),
        "cron": "0 0 0 1 1 *",
        "promiseId": "{{.id}}.{{.timestamp}}",
        "promiseTimeout": HOUR_MS,
        "promiseTags": {"resonate:target": "poll://any@nobody"},
        **fields,
    }


@pytest.mark.parametrize("cron", VALID_CRONS)
def test_valid_cron_is_accepted(api: Api, cron: str) -> None:
    s = api.ok("schedule.create", schedule_data(cron=cron))["schedule"]
    assert s["cron"] == cron and s["nextRunAt"] > s["createdAt"]


@pytest.mark.parametrize("cron", INVALID_CRONS)
def test_invalid_cron_is_400(api: Api, cron: str) -> None:
    r = api.call("schedule.create", schedule_data(cron=cron))
    assert (r.status, r.data) == (400, "Invalid cron expression")


SCHEDULE_400 = [
    rule(TYPES, "no id", {"id": None}, "Invalid request"),
    rule(TYPES, "empty id", {"id": ""}, "Schedule ID is required"),
    rule(TYPES, "empty cron", {"cron": ""}, "Cron expression is required"),
    rule(TYPES, "empty template", {"promiseId": ""}, "Promise ID template is required"),
    rule(TYPES, "negative timeout", {"promiseTimeout": -1}, "Promise timeout must be a non-negative integer"),
    rule(TYPES, "timeout not a number", {"promiseTimeout": "1"}, "Invalid request"),
    rule(TYPES, "colon in id", {"id": "a:b"}, "Schedule ID must not contain ':'"),
    rule(TYPES, "no target", {"promiseTags": {"x": "y"}}, "promiseTags must include a resonate:target tag"),
    rule(TYPES, "no tags", {"promiseTags": None}, "promiseTags must include a resonate:target tag"),
    rule(TYPES, "tags not strings", {"promiseTags": {"resonate:target": 1}}, "Invalid request"),
]


@pytest.mark.parametrize(("what", "fields", "message"), SCHEDULE_400)
def test_schedule_create_400(api: Api, what: str, fields: dict[str, Any], message: str) -> None:
    data = {k: v for k, v in schedule_data(**fields).items() if v is not None}
    r = api.call("schedule.create", data)
    assert r.status == 400 and r.data.startswith(message), r


def test_schedule_create_validates_before_answering_an_existing_one(api: Api) -> None:
    data = schedule_data()
    api.ok("schedule.create", data)
    r = api.call("schedule.create", {**data, "cron": "nope"})
    assert (r.status, r.data) == (400, "Invalid cron expression")


def test_schedule_target_is_not_checked_as_an_address(api: Api) -> None:
    # op_schedule_create never calls is_valid_address; the fired promise's execute is just undeliverable.
    s = api.ok("schedule.create", schedule_data(promiseTags={"resonate:target": "ftp://nowhere"}))["schedule"]
    assert s["promiseTags"] == {"resonate:target": "ftp://nowhere"}


def test_schedule_search_pages_ten_by_default_and_filters_on_promise_tags(api: Api) -> None:
    mark = uid("m")
    ids = sorted(
        api.ok("schedule.create", schedule_data(promiseTags={"resonate:target": "poll://any@x", "mark": mark}))[
            "schedule"
        ]["id"]
        for _ in range(12)
    )
    page = api.ok("schedule.search", {"tags": {"mark": mark}})
    assert [s["id"] for s in page["schedules"]] == ids[:10] and page["cursor"] == ids[9]
    rest = api.ok("schedule.search", {"tags": {"mark": mark}, "cursor": page["cursor"]})
    assert [s["id"] for s in rest["schedules"]] == ids[10:] and "cursor" not in rest
    two = api.ok("schedule.search", {"tags": {"mark": mark}, "limit": 2})
    assert [s["id"] for s in two["schedules"]] == ids[:2]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        rule(SERVER, 0, "Limit must be a positive integer"),
        rule(SERVER, 1001, "Invalid 'limit' — must be between 1 and 1000"),
        rule(SERVER, "5", "Invalid request"),
    ],
)
def test_schedule_search_limit(api: Api, limit: Any, message: str) -> None:
    r = api.call("schedule.search", {"limit": limit})
    assert r.status == 400 and r.data.startswith(message), r


# ---------------------------------------------------------------------------
# promise.register_listener. Source: server.rs op_promise_register_listener
# (validate, is_valid_address, try_timeout, then persistence: INSERT OR IGNORE
# into listeners (promise_id, address) only while the promise is pending; the
# answer is the promise as it is); settle_promise / process_timeouts
# (ListenerUnblocked: one outgoing_unblock per listener, listeners deleted) and
# processing_messages.rs (the message: kind unblock, head {}, data.promise).
# ---------------------------------------------------------------------------


def test_listener_on_a_settled_promise_answers_it_and_sends_nothing(
    api: Api, streams: ServerFactory, server: Any
) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    id = uid("l")
    api.create(id)
    settled = api.settle(id, "rejected", {"data": "eA=="})
    assert api.listen(id, f"poll://uni@{group}/a") == settled
    s.wait_unblock(api.probe(f"poll://uni@{group}/a"))
    assert not s.has_unblock(id)


def test_listeners_are_deduplicated_per_address_and_fire_once(api: Api, streams: ServerFactory, server: Any) -> None:
    group = uid("g")
    a, b = streams.sse(server.url, group, "a"), streams.sse(server.url, group, "b")
    id = uid("l")
    api.create(id)
    for address in (f"poll://uni@{group}/a", f"poll://uni@{group}/a", f"poll://uni@{group}/b"):
        assert api.listen(id, address)["state"] == "pending"
    settled = api.settle(id, "resolved", {"data": "eQ=="})
    for stream in (a, b):
        message = stream.wait_unblock(id)
        assert message == {"kind": "unblock", "head": {}, "data": {"promise": settled}}
        stream.wait_unblock(api.probe(f"poll://uni@{group}/{stream.pid}"))
        assert len(stream.unblocks(id)) == 1


def test_listener_on_a_missing_promise_is_404(api: Api) -> None:
    r = api.call("promise.register_listener", {"awaited": uid("nope"), "address": "poll://any@g"})
    assert (r.status, r.data) == (404, "Awaited promise not found")


# ---------------------------------------------------------------------------
# Background timeouts are target-gated. Source: main at c8d7c7ba (PR #1119,
# "target-gated timeouts", merged before v0.10.0): persistence_sqlite.rs and
# persistence_postgres.rs promise_create insert a promise_timeouts row only
# `if address.is_some()`, process_timeouts reads that table alone ("non-task
# promises are never timed out by the scheduler"); oracle.rs op_promise_create
# calls set_p_timeout only `if addr.is_some()`. Every request first runs
# try_timeout on the ids it touches. (The experimental-mcp branch, e.g. merge
# e5281595, and resonate-pg still time out every pending promise: not the release.)
# ---------------------------------------------------------------------------


def test_an_untargeted_promise_does_not_time_out_untouched_but_on_the_next_touch(
    api: Api, streams: ServerFactory, server: Any
) -> None:
    group = uid("g")
    s = streams.sse(server.url, group, "a")
    lazy, targeted_id = uid("l"), uid("t")
    deadline = now_ms() + 300
    api.create(lazy, timeout_at=deadline)
    api.create(targeted_id, timeout_at=deadline, tags={"resonate:target": f"poll://any@{uid('nobody')}"})
    for id in (lazy, targeted_id):
        api.listen(id, f"poll://uni@{group}/a")
    # the targeted one is timed out by the scheduler; its unblock is the proof that time passed
    got = s.wait_unblock(targeted_id)["data"]["promise"]
    assert (got["state"], got["settledAt"]) == ("rejected_timedout", deadline)
    s.wait_unblock(api.probe(f"poll://uni@{group}/a"))
    assert not s.has_unblock(lazy)
    # the next request naming it times it out first (try_timeout), and its listener is told
    touched = api.get(lazy)
    assert (touched["state"], touched["settledAt"]) == ("rejected_timedout", deadline)
    assert s.wait_unblock(lazy)["data"]["promise"] == touched


# ---------------------------------------------------------------------------
# promise.search. Source: types.rs PromiseSearchData (state: a PromiseState, so
# serde refuses any other string; limit >= 1), server.rs op_promise_search
# (limit <= 1000, default 100) and persistence promise_search (state = ?1: an
# exact match, "rejected" is only "rejected"; tags all present; id > cursor).
# ---------------------------------------------------------------------------


def test_promise_search_state_is_an_exact_match(api: Api) -> None:
    mark = uid("m")
    ids = {state: uid(state[:3]) for state in ("rejected", "rejected_canceled", "resolved")}
    for state, id in ids.items():
        api.create(id, tags={"mark": mark})
        api.settle(id, state)
    for state, id in ids.items():
        found = api.ok("promise.search", {"tags": {"mark": mark}, "state": state})["promises"]
        assert [p["id"] for p in found] == [id], state


@pytest.mark.parametrize(
    ("data", "message"),
    [
        rule(TYPES, {"state": "done"}, "Invalid request"),
        rule(TYPES, {"state": 1}, "Invalid request"),
        rule(TYPES, {"limit": 0}, "Limit must be a positive integer"),
        rule(SERVER, {"limit": 1001}, "Invalid 'limit' — must be between 1 and 1000"),
        rule(TYPES, {"limit": "10"}, "Invalid request"),
        rule(TYPES, {"cursor": 5}, "Invalid request"),
        rule(TYPES, {"tags": {"a": 1}}, "Invalid request"),
    ],
)
def test_promise_search_400(api: Api, data: dict[str, Any], message: str) -> None:
    r = api.call("promise.search", data)
    assert r.status == 400 and r.data.startswith(message), r


# ---------------------------------------------------------------------------
# task.create on an existing promise that has no task. Source: server.rs
# op_task_create, the (None, _) arm.
# ---------------------------------------------------------------------------


def test_task_create_on_a_promise_without_a_task_is_422(api: Api) -> None:
    id = uid("p")
    api.create(id)
    r = api.call(
        "task.create",
        {
            "pid": "w1",
            "ttl": 60_000,
            "action": action(
                "promise.create",
                {"id": id, "timeoutAt": now_ms() + HOUR_MS, "tags": {"resonate:target": "poll://any@nobody"}},
            ),
        },
    )
    assert (r.status, r.data) == (422, "Promise exists without a target task")


# ---------------------------------------------------------------------------
# Not followed, on purpose.
# ---------------------------------------------------------------------------

NOT_IMPLEMENTED = pytest.mark.xfail(
    strict=True,
    reason="task.halt, task.continue and task.search (server.rs op_task_halt/continue/search) are not "
    "implemented: resonate-sdk 0.8 never sends them, and the local server answers 400 Unknown operation",
)


@pytest.mark.parametrize("kind", ["task.halt", "task.continue", "task.search"])
@NOT_IMPLEMENTED
def test_task_halt_continue_search(api: Api, kind: str) -> None:
    wf = _workflow(api)
    data = {} if kind == "task.search" else {"id": wf}
    assert api.call(kind, data).status in (200, 409)


# ---------------------------------------------------------------------------
# task.heartbeat. Source: types.rs TaskHeartbeatData (pid non-empty, tasks
# non-empty and of one origin; TaskHeartbeatTask has no rule of its own: any
# string id, any i64 version) and persistence task_heartbeat (renews only
# leases held by that pid at that version; skips an empty id).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task",
    [
        rule(TYPES, {"id": "", "version": 0}),
        rule(TYPES, {"id": "nobody", "version": -1}),
    ],
)
def test_heartbeat_task_refs_have_no_rules_of_their_own(api: Api, task: dict[str, Any]) -> None:
    assert api.ok("task.heartbeat", {"pid": "w1", "tasks": [task]}) == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        rule(TYPES, {"pid": "", "tasks": [{"id": "a", "version": 0}]}, "Process ID is required"),
        rule(TYPES, {"pid": "w1", "tasks": []}, "Tasks array must not be empty"),
        rule(TYPES, {"pid": "w1", "tasks": [{"id": "a", "version": 0}, {"id": "b", "version": 0}]}, "All tasks"),
        rule(TYPES, {"pid": "w1", "tasks": [{"id": "a"}]}, "Invalid request"),
    ],
)
def test_heartbeat_400(api: Api, data: dict[str, Any], message: str) -> None:
    r = api.call("task.heartbeat", data)
    assert r.status == 400 and r.data.startswith(message), r


@pytest.mark.parametrize(
    ("data", "message"),
    [
        rule(TYPES, {"awaited": "", "address": "poll://any@g"}, "Awaited promise ID is required"),
        rule(TYPES, {"awaited": "x", "address": ""}, "Address is required"),
        rule(TYPES, {"address": "poll://any@g"}, "Invalid request"),
    ],
)
def test_register_listener_400(api: Api, data: dict[str, Any], message: str) -> None:
    r = api.call("promise.register_listener", data)
    assert r.status == 400 and r.data.startswith(message), r
