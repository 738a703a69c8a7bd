"""devstack.localserver.engine.Engine in process: index invariants and cost that does not grow.

No sockets and no real time: every call passes ``now`` explicitly. The scaling
check counts what one request touches (dirty records, messages, lookups in
the promise table) rather than timing it.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.localserver.engine import Engine

T0 = 1_000_000_000
HOUR = 3_600_000
VERSION = "2026-04-01"


class CountingDict(dict):  # type: ignore[type-arg]
    """A dict that counts every read of a record (by key or by iteration)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads = 0

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self.reads += 1
        return super().__contains__(key)

    def __iter__(self) -> Any:
        for k in super().__iter__():
            self.reads += 1
            yield k

    def values(self) -> Any:  # type: ignore[override]
        self.reads += len(self)
        return super().values()

    def items(self) -> Any:  # type: ignore[override]
        self.reads += len(self)
        return super().items()


def act(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "head": {"corrId": "i", "version": VERSION}, "data": data}


def ok(engine: Engine, kind: str, data: dict[str, Any], now: int = T0, status: int = 200) -> Any:
    got, out = engine.apply(kind, "c", data, now)
    assert got == status, (kind, data, got, out)
    return out


def root(id: str, group: str = "g") -> dict[str, str]:
    return {
        "resonate:origin": id,
        "resonate:branch": id,
        "resonate:parent": id,
        "resonate:target": f"poll://any@{group}",
    }


def start_workflow(engine: Engine, id: str, now: int = T0, ttl: int = 60_000) -> None:
    ok(
        engine,
        "task.create",
        {
            "pid": "w",
            "ttl": ttl,
            "action": act("promise.create", {"id": id, "timeoutAt": now + HOUR, "tags": root(id)}),
        },
        now,
    )


def make_child(engine: Engine, parent: str, n: int, now: int = T0, timeout: int = HOUR, **tags: str) -> str:
    id = f"{parent}:{n}"
    ok(
        engine,
        "promise.create",
        {
            "id": id,
            "timeoutAt": now + timeout,
            "tags": {"resonate:origin": parent, "resonate:branch": parent, "resonate:parent": parent, **tags},
        },
        now,
    )
    return id


def suspend(engine: Engine, id: str, version: int, awaited: list[str], now: int = T0) -> None:
    ok(
        engine,
        "task.suspend",
        {
            "id": id,
            "version": version,
            "actions": [act("promise.register_callback", {"awaited": a, "awaiter": id}) for a in awaited],
        },
        now,
    )


def clear(engine: Engine) -> None:
    engine.dirty_promises.clear()
    engine.dirty_tasks.clear()
    engine.dirty_schedules.clear()
    engine.outgoing.clear()


# ---------------------------------------------------------------------------
# index invariants
# ---------------------------------------------------------------------------


def test_settle_removes_callbacks_from_both_ends() -> None:
    e = Engine()
    start_workflow(e, "wf")
    c1, c2 = make_child(e, "wf", 1), make_child(e, "wf", 2)
    suspend(e, "wf", 1, [c1, c2])
    assert set(e.promises[c1].awaiters) == {"wf"} and set(e.promises[c2].awaiters) == {"wf"}
    assert set(e.tasks["wf"].awaiting) == {c1, c2}
    assert e.tasks["wf"].state == "suspended"

    ok(e, "promise.settle", {"id": c1, "state": "resolved"})
    assert set(e.promises[c1].awaiters) == set()
    assert set(e.tasks["wf"].awaiting) == {c2}  # the other callback stays
    assert set(e.promises[c2].awaiters) == {"wf"}
    assert e.tasks["wf"].state == "pending" and e.tasks["wf"].version == 1
    assert [m["kind"] for _, m in e.outgoing] == ["execute"]

    # the workflow finishes: its remaining callback goes from both ends
    ok(e, "task.acquire", {"id": "wf", "version": 1, "pid": "w", "ttl": 1000})
    ok(
        e,
        "task.fulfill",
        {"id": "wf", "version": 2, "action": act("promise.settle", {"id": "wf", "state": "resolved"})},
    )
    assert set(e.tasks["wf"].awaiting) == set()
    assert set(e.promises[c2].awaiters) == set()
    clear(e)
    ok(e, "promise.settle", {"id": c2, "state": "resolved"})
    assert e.outgoing == [] and e.tasks["wf"].state == "fulfilled"


def test_workflow_settled_from_outside_drops_its_callbacks() -> None:
    e = Engine()
    start_workflow(e, "wf")
    c1 = make_child(e, "wf", 1)
    suspend(e, "wf", 1, [c1])
    ok(e, "promise.settle", {"id": "wf", "state": "rejected_canceled"})
    assert e.tasks["wf"].state == "fulfilled" and set(e.tasks["wf"].awaiting) == set()
    assert set(e.promises[c1].awaiters) == set()


@pytest.mark.parametrize("how", ["touched", "background"])
def test_timeout_of_awaited_promise_resumes_and_unlinks(how: str) -> None:
    e = Engine()
    start_workflow(e, "wf")
    c1 = make_child(e, "wf", 1, timeout=500)
    suspend(e, "wf", 1, [c1])
    clear(e)
    if how == "background":  # untargeted: no background timeout (target-gated, c8d7c7ba)
        e.tick(T0 + 10_000)
        assert e.promises[c1].state == "pending" and e.tasks["wf"].state == "suspended"
        assert e.outgoing == []
    out = ok(e, "promise.get", {"id": c1}, T0 + 10_000)  # a request past the deadline times it out first
    assert out["promise"]["state"] == "rejected_timedout" and out["promise"]["settledAt"] == T0 + 500
    assert set(e.promises[c1].awaiters) == set() and set(e.tasks["wf"].awaiting) == set()
    assert e.tasks["wf"].state == "pending"
    assert e.outgoing[0][1] == {
        "data": {"task": {"id": "wf", "version": 1}},
        "head": {"serverUrl": ""},
        "kind": "execute",
    }


def test_lease_and_retry_timers() -> None:
    e = Engine(retry_ms=5000)
    start_workflow(e, "wf", ttl=1000)
    clear(e)
    e.tick(T0 + 999)
    assert e.tasks["wf"].state == "acquired" and e.outgoing == []
    e.tick(T0 + 1000)
    assert e.tasks["wf"].state == "pending" and e.tasks["wf"].version == 1
    assert e.tasks["wf"].pid is None and e.tasks["wf"].ttl is None
    assert [m["data"]["task"] for _, m in e.outgoing] == [{"id": "wf", "version": 1}]
    clear(e)
    e.tick(T0 + 5999)
    assert e.outgoing == []
    e.tick(T0 + 6000)
    assert [m["data"]["task"] for _, m in e.outgoing] == [{"id": "wf", "version": 1}]


def test_heartbeat_extends_only_matching_leases() -> None:
    e = Engine()
    start_workflow(e, "wf", ttl=1000)
    ok(e, "task.heartbeat", {"pid": "other", "tasks": [{"id": "wf", "version": 1}]}, T0 + 500)
    ok(e, "task.heartbeat", {"pid": "w", "tasks": [{"id": "wf", "version": 0}]}, T0 + 500)
    assert e.tasks["wf"].lease_at == T0 + 1000
    ok(e, "task.heartbeat", {"pid": "w", "tasks": [{"id": "wf", "version": 1}, {"id": "wf:9", "version": 1}]}, T0 + 500)
    assert e.tasks["wf"].lease_at == T0 + 1500
    e.tick(T0 + 1499)
    assert e.tasks["wf"].state == "acquired"
    e.tick(T0 + 1500)
    assert e.tasks["wf"].state == "pending" and e.tasks["wf"].version == 1


def test_preload_reads_the_branch_index() -> None:
    def reads_for_acquire(others: int) -> tuple[int, list[str]]:
        e = Engine()
        ok(e, "promise.create", {"id": "wf", "timeoutAt": T0 + HOUR, "tags": root("wf")})
        for n in (3, 1, 2):
            make_child(e, "wf", n)
        for i in range(others):
            other = f"o{i}"
            ok(e, "promise.create", {"id": other, "timeoutAt": T0 + HOUR, "tags": root(other)})
            make_child(e, other, 1)
            ok(e, "promise.create", {"id": f"plain{i}", "timeoutAt": T0 + HOUR})
        assert sorted(e._branches["wf"]) == ["wf:1", "wf:2", "wf:3"]  # the root is found by its id
        e.promises = CountingDict(e.promises)
        out = ok(e, "task.acquire", {"id": "wf", "version": 0, "pid": "w", "ttl": 1000})
        return e.promises.reads, [p["id"] for p in out["preload"]]

    small, ids = reads_for_acquire(5)
    large, ids_large = reads_for_acquire(3000)
    assert ids == ids_large == ["wf:1", "wf:2", "wf:3"]
    assert large == small, "preload must not scan promises outside the branch"


# ---------------------------------------------------------------------------
# cost per request does not grow with the number of waiting workflows
# ---------------------------------------------------------------------------


def build(waiting: int) -> Engine:
    e = Engine()
    for i in range(waiting):
        wf = f"w{i}"
        start_workflow(e, wf)
        suspend(e, wf, 1, [make_child(e, wf, 1)])
    # one more, to be resumed during the measured cycle
    start_workflow(e, "resume")
    suspend(e, "resume", 1, [make_child(e, "resume", 1)])
    clear(e)
    return e


def one_cycle(e: Engine) -> dict[str, int]:
    """Create, run and settle a new workflow; settle a child that resumes one waiting workflow."""
    e.promises = CountingDict(e.promises)
    e.tasks = CountingDict(e.tasks)
    now = T0 + 1
    touched = {"promises": 0, "tasks": 0, "messages": 0}

    def step(kind: str, data: dict[str, Any]) -> None:
        ok(e, kind, data, now)
        e.tick(now)
        touched["promises"] += len(e.dirty_promises)
        touched["tasks"] += len(e.dirty_tasks)
        touched["messages"] += len(e.outgoing)
        clear(e)

    step("promise.create", {"id": "new", "timeoutAt": now + HOUR, "tags": root("new")})
    step("task.acquire", {"id": "new", "version": 0, "pid": "w", "ttl": 1000})
    step(
        "promise.create",
        {
            "id": "new:1",
            "timeoutAt": now + HOUR,
            "tags": {"resonate:origin": "new", "resonate:branch": "new", "resonate:parent": "new"},
        },
    )
    step(
        "task.suspend",
        {
            "id": "new",
            "version": 1,
            "actions": [act("promise.register_callback", {"awaited": "new:1", "awaiter": "new"})],
        },
    )
    step("promise.settle", {"id": "new:1", "state": "resolved"})
    step("task.acquire", {"id": "new", "version": 1, "pid": "w", "ttl": 1000})
    step(
        "task.fulfill", {"id": "new", "version": 2, "action": act("promise.settle", {"id": "new", "state": "resolved"})}
    )
    step("promise.settle", {"id": "resume:1", "state": "resolved"})
    step("task.heartbeat", {"pid": "w", "tasks": [{"id": "resume", "version": 1}]})
    step("promise.get", {"id": "w0:1"})
    touched["promise_reads"] = e.promises.reads
    touched["task_reads"] = e.tasks.reads
    return touched


@pytest.mark.parametrize("big", [10_000])
def test_cycle_cost_does_not_grow_with_waiting_workflows(big: int) -> None:
    small = one_cycle(build(10))
    large = one_cycle(build(big))
    assert small["promises"] > 0 and small["messages"] > 0  # the cycle did something
    assert large == small, f"touched with 10 waiting: {small}; with {big}: {large}"


def test_next_due_skips_timers_that_no_longer_matter() -> None:
    """A suspended task keeps no timer: the ticker must not wake for its old lease or retry."""
    engine = Engine()
    start_workflow(engine, "wf")  # acquired: a lease timer
    child = make_child(engine, "wf", 1)
    assert engine.next_due() is not None
    suspend(engine, "wf", 1, [child])
    # the child's own timeout (an hour away) is the only live timer left
    assert engine.next_due() == T0 + HOUR


# ---------------------------------------------------------------------------
# memory: what a waiting workflow leaves behind (figures in bench/run.py)
# ---------------------------------------------------------------------------


def test_stale_timers_are_swept_and_live_ones_still_fire() -> None:
    """Each lease renewal pushes a timer; the renewed-over ones must not pile up."""
    e = Engine()
    start_workflow(e, "wf", ttl=60_000)
    for i in range(20_000):
        ok(e, "task.heartbeat", {"pid": "w", "tasks": [{"id": "wf", "version": 1}]}, T0 + i)
    assert len(e._timers) <= 4097  # swept, not 20,000
    e.tick(T0 + 19_999 + 60_000)  # the last lease lapses: the task is offered again
    assert e.tasks["wf"].state == "pending"
    assert e.outgoing and e.outgoing[-1][1]["kind"] == "execute"


def test_tag_values_share_the_id_strings_already_held() -> None:
    """A JSON decode makes a fresh copy of every tag value; origin, branch and parent are ids held already."""
    e = Engine()
    start_workflow(e, "".join(["w", "f"]))  # an id built at run time, as decoded ids are
    wf = e.promises["wf"]
    child = e.promises[make_child(e, "".join(["w", "f"]), 1)]
    for key in ("resonate:origin", "resonate:branch", "resonate:parent"):
        assert wf.tags[key] is wf.id
        assert child.tags[key] is wf.id


def test_preload_finds_members_of_a_branch_whose_head_is_another_promise() -> None:
    """Only promises whose branch is not their own id are indexed; the head is found by its id."""
    e = Engine()
    start_workflow(e, "wf")
    c1, c2 = make_child(e, "wf", 1), make_child(e, "wf", 2)
    glob = "wf:3"
    ok(
        e,
        "promise.create",
        {
            "id": glob,
            "timeoutAt": T0 + HOUR,
            "tags": {"resonate:origin": "wf", "resonate:branch": glob, "resonate:parent": "wf"},
        },
    )
    assert e._branches == {"wf": [c1, c2]}
    ok(e, "task.release", {"id": "wf", "version": 1})
    out = ok(e, "task.acquire", {"id": "wf", "version": 1, "pid": "w", "ttl": 1000})
    assert [p["id"] for p in out["preload"]] == [c1, c2]


def test_records_read_back_as_they_were_written() -> None:
    """Packed storage (flat tags, ``{"data": s}`` as ``s``) is invisible in records."""
    e = Engine()
    tags = {**root("wf"), "hitl:func": "approval"}
    param = {"data": "eyJhIjoxfQ=="}
    out = ok(e, "promise.create", {"id": "wf", "timeoutAt": T0 + HOUR, "param": param, "tags": tags})
    assert out["promise"]["param"] == param and out["promise"]["tags"] == tags and out["promise"]["value"] == {}
    value = {"headers": {"h": "1"}, "data": "eA=="}
    out = ok(e, "promise.settle", {"id": "wf", "state": "resolved", "value": value})
    assert out["promise"]["value"] == value and out["promise"]["state"] == "resolved"
    assert ok(e, "promise.search", {"tags": {"hitl:func": "approval"}})["promises"][0]["id"] == "wf"


@pytest.mark.parametrize("data", ["", "eA==", "eA", "e A==", "not base64!", "ééé", "eB==", "YWJj\n"])
def test_opaque_data_reads_back_byte_for_byte(data: str) -> None:
    """Canonical base64 is stored as its bytes; anything else as given. Either way it reads back equal."""
    e = Engine()
    ok(e, "promise.create", {"id": "p", "timeoutAt": T0 + HOUR, "param": {"data": data}})
    ok(e, "promise.settle", {"id": "p", "state": "resolved", "value": {"data": data}})
    record = ok(e, "promise.get", {"id": "p"})["promise"]
    assert record["param"] == {"data": data} and record["value"] == {"data": data}
