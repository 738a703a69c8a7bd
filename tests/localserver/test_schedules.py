"""Schedules, driven with raw envelopes: validation, nextRunAt, firing, delivery, durability.

The real server (server.rs@e528159 op_schedule_*, processing_timeouts.rs and
persistence_sqlite.rs process_schedule_timeout, util.rs@250f307) computes
``nextRunAt`` as the first cron tick after now, and fires each tick into a new
promise whose id is the ``promiseId`` template with ``{{.id}}`` (the schedule
id) and ``{{.timestamp}}`` (the tick, ms) replaced. Ticks missed while the
server was down are each fired once when it is back. Nothing here sleeps:
every wait polls a condition with a deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.localserver.engine import Engine
from devstack.stack import LocalServerProc, wait_until

from .conftest import HOUR_MS, Api, ServerFactory, now_ms, uid

T0 = 1_700_000_000_000  # a whole second
VERSION = "2026-04-01"


def create_schedule(
    api: Api, id: str, cron: str, *, group: str = "nobody", template: str = "{{.id}}.{{.timestamp}}", **extra: Any
) -> Any:
    data = {
        "id": id,
        "cron": cron,
        "promiseId": template,
        "promiseTimeout": HOUR_MS,
        "promiseParam": {"headers": {"h": "v"}, "data": "cGFyYW0="},
        "promiseTags": {"resonate:target": f"poll://any@{group}", "mine": "yes"},
        **extra,
    }
    return api.call("schedule.create", data)


def fired(api: Api, sid: str) -> list[dict[str, Any]]:
    return api.ok("promise.search", {"tags": {"resonate:schedule": sid}, "limit": 1000})["promises"]


def test_invalid_cron_is_400_and_creates_nothing(api: Api) -> None:
    sid = uid("s")
    r = create_schedule(api, sid, "not a cron")
    assert (r.status, r.data) == (400, "Invalid cron expression")
    assert api.call("schedule.get", {"id": sid}).status == 404


def test_next_run_at_is_the_next_tick_after_now(api: Api) -> None:
    sid = uid("s")
    before = now_ms()
    s = api.ok("schedule.create", create_schedule_data(sid, "* * * * * *"))["schedule"]
    after = now_ms()
    assert before <= s["createdAt"] <= after
    assert before // 1000 * 1000 + 1000 <= s["nextRunAt"] <= after // 1000 * 1000 + 1000
    assert "lastRunAt" not in s
    # Once a year, on 1 January at midnight UTC: the next one after now.
    s = api.ok("schedule.create", create_schedule_data(uid("s"), "0 0 0 1 1 *"))["schedule"]
    year = datetime.now(UTC).year + 1
    assert s["nextRunAt"] == int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)
    # Five fields are minutes-first with 0 seconds: every minute, on the minute.
    s = api.ok("schedule.create", create_schedule_data(uid("s"), "* * * * *"))["schedule"]
    assert s["nextRunAt"] % 60_000 == 0 and 0 < s["nextRunAt"] - s["createdAt"] <= 60_000


def create_schedule_data(sid: str, cron: str) -> dict[str, Any]:
    return {
        "id": sid,
        "cron": cron,
        "promiseId": "{{.id}}.{{.timestamp}}",
        "promiseTimeout": HOUR_MS,
        "promiseTags": {"resonate:target": "poll://any@nobody"},
    }


def test_create_again_answers_the_stored_schedule(api: Api) -> None:
    sid = uid("s")
    first = create_schedule(api, sid, "0 0 0 1 1 *").data["schedule"]
    again = create_schedule(api, sid, "* * * * * *", promiseTimeout=5).data["schedule"]
    assert again == first
    assert api.ok("schedule.get", {"id": sid})["schedule"] == first


def test_every_second_fires_templated_promises_whose_tasks_reach_a_poll_stream(
    api: Api, server: Any, streams: ServerFactory
) -> None:
    group, sid = uid("g"), uid("s")
    stream = streams.sse(server.url, group, "w1")
    r = create_schedule(api, sid, "* * * * * *", group=group, template="tick-{{.id}}-{{.timestamp}}")
    assert r.status == 200
    first_tick = r.data["schedule"]["nextRunAt"]

    executes = wait_until(
        lambda: (
            [m for m in stream.messages() if m["kind"] == "execute" and sid in m["data"]["task"]["id"]][:2]
            if len([m for m in stream.messages() if m["kind"] == "execute" and sid in m["data"]["task"]["id"]]) >= 2
            else None
        ),
        timeout=10,
        what="two ticks delivered",
    )
    ids = [m["data"]["task"]["id"] for m in executes]
    assert ids[0] == f"tick-{sid}-{first_tick}"
    assert ids[1] == f"tick-{sid}-{first_tick + 1000}"
    assert all(m["data"]["task"]["version"] == 0 for m in executes)

    p = api.get(ids[0])
    assert p["state"] == "pending"
    assert (p["createdAt"], p["timeoutAt"]) == (first_tick, first_tick + HOUR_MS)
    assert p["param"] == {"headers": {"h": "v"}, "data": "cGFyYW0="}
    assert p["tags"] == {
        "resonate:target": f"poll://any@{group}",
        "mine": "yes",
        "resonate:schedule": sid,
        "resonate:origin": ids[0],
        "resonate:branch": ids[0],
        "resonate:parent": ids[0],
    }
    # The task is an ordinary one: a worker acquires and fulfills it.
    acquired = api.acquire(ids[0], 0)
    assert acquired.status == 200 and acquired.data["task"]["version"] == 1
    fulfilled = api.call(
        "task.fulfill",
        {
            "id": ids[0],
            "version": 1,
            "action": {
                "kind": "promise.settle",
                "head": {"corrId": "x", "version": VERSION},
                "data": {"id": ids[0], "state": "resolved", "value": {}},
            },
        },
    )
    assert fulfilled.status == 200 and fulfilled.data["promise"]["state"] == "resolved"

    s = api.ok("schedule.get", {"id": sid})["schedule"]
    assert s["lastRunAt"] >= first_tick + 1000 and s["nextRunAt"] == s["lastRunAt"] + 1000

    # Deleted: it fires no more (proven against a second schedule that goes on ticking).
    canary = uid("s")
    assert create_schedule(api, canary, "* * * * * *").status == 200
    assert api.ok("schedule.delete", {"id": sid}) == {}
    deleted_at = now_ms()
    wait_until(lambda: any(p["createdAt"] >= deleted_at + 1000 for p in fired(api, canary)), timeout=10, what="canary")
    assert all(p["createdAt"] <= deleted_at for p in fired(api, sid))
    assert api.call("schedule.get", {"id": sid}).status == 404
    assert api.call("schedule.delete", {"id": sid}).status == 404
    api.ok("schedule.delete", {"id": canary})


def test_missed_ticks_fire_once_each_across_kill_9_and_restart(tmp_path: Path) -> None:
    db = tmp_path / "resonate.db"
    server = LocalServerProc(tmp_path, db=db, name="before")
    try:
        api = Api(server.url)
        sid = uid("s")
        assert create_schedule(api, sid, "* * * * * *").status == 200
        wait_until(lambda: len(fired(api, sid)) >= 2, timeout=10, what="two ticks before the kill")
        server.kill()
        killed_at = now_ms()
        # Down across at least one tick whatever the restart takes.
        wait_until(lambda: now_ms() >= killed_at + 1500, timeout=5, what="a tick to pass while down")
        server = LocalServerProc(tmp_path, db=db, name="after")
        api = Api(server.url)
        restarted_at = now_ms()
        wait_until(
            lambda: api.ok("schedule.get", {"id": sid})["schedule"]["lastRunAt"] >= restarted_at + 1000,
            timeout=15,
            what="the schedule to catch up",
        )
        ticks = sorted(p["createdAt"] for p in fired(api, sid))
        assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000))  # every second, each once, none lost
        assert any(killed_at < t < restarted_at for t in ticks)  # including those missed while down
        assert all(p["id"] == f"{sid}.{p['createdAt']}" for p in fired(api, sid))
    finally:
        server.stop()


# -- the engine in process: firing order and late ticks, with explicit time -----------


def engine_with_schedule(cron: str, timeout: int = HOUR_MS) -> Engine:
    engine = Engine()
    status, out = engine.apply(
        "schedule.create",
        "c",
        {
            "id": "daily",
            "cron": cron,
            "promiseId": "{{.id}}.{{.timestamp}}",
            "promiseTimeout": timeout,
            "promiseTags": {"resonate:target": "poll://any@g"},
        },
        T0,
    )
    assert status == 200, out
    return engine


def test_a_late_server_fires_every_missed_tick_one_per_pass() -> None:
    engine = engine_with_schedule("* * * * * *", timeout=2_500)
    assert engine.schedules["daily"]["nextRunAt"] == T0 + 1000
    now = T0 + 5_500  # five ticks are due
    created: list[str] = []
    for _ in range(5):
        before = set(engine.promises)
        engine.tick(now)
        created += sorted(set(engine.promises) - before)
    assert created == [f"daily.{T0 + k * 1000}" for k in range(1, 6)]
    engine.tick(now)
    assert len(engine.promises) == 5  # caught up: the next tick is in the future
    assert engine.schedules["daily"]["nextRunAt"] == T0 + 6000
    # Born at its tick; the ones whose timeout passed before they fired are born timed out, without an execute.
    early, late = engine.promises[f"daily.{T0 + 1000}"], engine.promises[f"daily.{T0 + 5000}"]
    assert (early.state, early.created_at, early.settled_at) == ("rejected_timedout", T0 + 1000, T0 + 3500)
    assert engine.tasks[early.id].state == "fulfilled"
    assert (late.state, late.created_at) == ("pending", T0 + 5000)
    sent = [m["data"]["task"]["id"] for _, m in engine.outgoing if m["kind"] == "execute"]
    assert sent == [f"daily.{T0 + k * 1000}" for k in (4, 5)]


def test_no_tick_left_retries_a_minute_later() -> None:
    engine = engine_with_schedule("0 0 0 30 2 *")  # 30 February
    assert engine.schedules["daily"]["nextRunAt"] == T0 + 60_000
