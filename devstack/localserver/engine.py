"""The local server's state machine: promises, tasks, callbacks, listeners, timeouts.

It follows the real Resonate server (``resonate-server-dbms``'s engine and
oracle) rather than the SDK's in-process simulation where the two differ:
every success is 200 (300 for a suspend redirect), errors carry a plain
string, task versions move on acquire only, every lifecycle call checks the
version, and ids and tags are validated (see :mod:`.rules`).

Everything it looks up is indexed, so the cost of one request does not grow
with the number of waiting workflows: callbacks are kept on both ends
(``Promise.awaiters`` and ``Task.awaiting``), preload reads a branch index,
and deadlines sit in one heap whose stale entries are skipped when popped
(and swept out when they outnumber the live ones).

A pending promise with a ``resonate:target`` times out in the background at
its ``timeoutAt``, as the real server's timeout loop does; any other promise
times out lazily, when a request next touches it (``try_timeout``), so nothing
is answered stale. Source: resonatehq/resonate main at c8d7c7ba (PR #1119,
"target-gated timeouts", before v0.10.0): ``promise_create`` inserts a
``promise_timeouts`` row only when the promise has an address, and
``process_timeouts`` reads that table alone; ``oracle.rs`` arms ``set_p_timeout``
only ``if addr.is_some()``. Side branches (``experimental-mcp``) and resonate-pg
still time out every pending promise; neither is the release. Schedules have one
heap entry each, at their next tick.

Memory per waiting workflow is a benchmark target (issue 5: under 4 KB), so
records are lean: the small id collections are tuples (a one-element
frozenset costs 216 bytes, a tuple 48), the tag values that repeat an id
(origin, branch, parent) share that id's string object, empty params and
values are one shared object, and the branch index lists only the promises
whose branch is not their own id.

The engine is synchronous and single-threaded. It never does IO itself: it
reports what changed through ``dirty`` (for :mod:`.store`) and what to send
through ``outgoing`` (for :mod:`.router`).
"""

from __future__ import annotations

import base64
import heapq
from typing import Any

from sortedcontainers import SortedList

from devstack.localserver import cron, rules
from devstack.localserver.rules import ProtocolError, origin

PROTOCOL_VERSION = "2026-04-01"
RETRY_MS = 30_000

Message = tuple[str, dict[str, Any]]


#: The id collections below (awaiters, listeners, resumes, awaiting) hold zero, one or two
#: ids: tuples, replaced on change, with :func:`plus` / :func:`minus`; empty is this one object.
EMPTY: tuple[str, ...] = ()
Ids = tuple[str, ...]

#: The tags whose value is a promise id (often the record's own or its root's).
_ID_TAGS = ("resonate:origin", "resonate:branch", "resonate:parent")
#: Sweep stale timer entries when the heap holds more than this many and 1.25 times the live ones.
_SWEEP_MIN = 4096


def plus(ids: Ids, id: str) -> Ids:
    return ids if id in ids else (*ids, id)


def minus(ids: Ids, id: str) -> Ids:
    return tuple(i for i in ids if i != id) if id in ids else ids


def _pack_value(value: dict[str, Any]) -> dict[str, Any] | str | bytes:
    """A value (or param) as stored: ``{"data": s}``, by far the commonest shape, is ``s``,
    and ``s``'s bytes when it is canonical base64 (as the SDK sends): a quarter smaller."""
    if len(value) != 1 or "data" not in value:
        return value or rules.NO_VALUE
    data: str = value["data"]
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return data
    return raw if base64.b64encode(raw) == data.encode() else data


def _unpack_value(stored: dict[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(stored, bytes):
        return {"data": base64.b64encode(stored).decode()}
    return {"data": stored} if isinstance(stored, str) else stored


#: Tag key tuples, one object per distinct set of keys (bounded: keys come from clients).
_layouts: dict[tuple[str, ...], tuple[str, ...]] = {}


def _flat(tags: dict[str, str]) -> tuple[Any, ...]:
    """``(keys, value, value, ...)``: the keys tuple is shared by every record with the same keys."""
    keys = tuple(tags)
    shared = _layouts.get(keys)
    if shared is None:
        shared = keys
        if len(_layouts) < 1024:
            _layouts[keys] = keys
    return (shared, *tags.values())


class Promise:
    """One promise. Tags are a ``(keys, value, value, ...)`` tuple whose keys tuple is shared
    (a dict of five tags costs 184 bytes, the tuple 88); ``param`` and ``value`` are packed by
    :func:`_pack_value`.
    """

    __slots__ = (
        "_param",
        "_tags",
        "_value",
        "awaiters",
        "created_at",
        "id",
        "listeners",
        "settled_at",
        "state",
        "timeout_at",
    )  # fmt: skip

    def __init__(
        self,
        id: str,
        state: str,
        param: dict[str, Any],
        value: dict[str, Any],
        tags: dict[str, str],
        timeout_at: int,
        created_at: int,
        settled_at: int | None = None,
        awaiters: Ids = EMPTY,
        listeners: Ids = EMPTY,
    ) -> None:
        self.id = id
        self.state = state
        self._param = _pack_value(param)
        self._value = _pack_value(value)
        self._tags = _flat(tags)
        self.timeout_at = timeout_at
        self.created_at = created_at
        self.settled_at = settled_at
        #: Ids of the tasks with a callback on this promise.
        self.awaiters = awaiters
        #: Addresses to send an ``unblock`` to when this promise settles.
        self.listeners = listeners

    @property
    def param(self) -> dict[str, Any]:
        return _unpack_value(self._param)

    @property
    def value(self) -> dict[str, Any]:
        return _unpack_value(self._value)

    @value.setter
    def value(self, value: dict[str, Any]) -> None:
        self._value = _pack_value(value)

    @property
    def tags(self) -> dict[str, str]:
        """The tags as a new dict (for records and searches; lookups use :meth:`tag`)."""
        t = self._tags
        return dict(zip(t[0], t[1:], strict=True))

    def tag(self, key: str) -> str | None:
        t = self._tags
        try:
            return t[t[0].index(key) + 1]  # type: ignore[no-any-return]
        except ValueError:
            return None

    @property
    def target(self) -> str | None:
        return self.tag("resonate:target")

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "param": self.param,
            "value": self.value,
            "tags": self.tags,
            "timeoutAt": self.timeout_at,
            "createdAt": self.created_at,
        }
        if self.settled_at is not None:
            rec["settledAt"] = self.settled_at
        return rec

    def dump(self) -> dict[str, Any]:
        rec = self.record()
        rec["awaiters"] = sorted(self.awaiters)
        rec["listeners"] = sorted(self.listeners)
        return rec

    @classmethod
    def load(cls, d: dict[str, Any]) -> Promise:
        return cls(
            d["id"], d["state"], d["param"], d["value"], d["tags"], d["timeoutAt"],
            d["createdAt"], d.get("settledAt"), tuple(d["awaiters"]), tuple(d["listeners"]),
        )  # fmt: skip


class Task:
    __slots__ = ("awaiting", "id", "lease_at", "pid", "resumes", "retry_at", "state", "ttl", "version")

    def __init__(
        self,
        id: str,
        state: str,
        version: int,
        pid: str | None = None,
        ttl: int | None = None,
        resumes: Ids = EMPTY,
        awaiting: Ids = EMPTY,
        retry_at: int | None = None,
        lease_at: int | None = None,
    ) -> None:
        self.id = id
        self.state = state
        self.version = version
        self.pid = pid
        self.ttl = ttl
        #: Awaited promises that settled while this task was not suspended.
        self.resumes = resumes
        #: Promises this task holds a callback on (the reverse of ``Promise.awaiters``).
        self.awaiting = awaiting
        #: When a pending task's execute is sent again.
        self.retry_at = retry_at
        #: When an acquired task's lease lapses.
        self.lease_at = lease_at

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "version": self.version,
            "resumes": len(self.resumes),
        }
        if self.state == "acquired":
            rec["ttl"] = self.ttl
            rec["pid"] = self.pid
        return rec

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "version": self.version, "pid": self.pid,
            "ttl": self.ttl, "resumes": sorted(self.resumes), "awaiting": sorted(self.awaiting),
            "retry_at": self.retry_at, "lease_at": self.lease_at,
        }  # fmt: skip

    @classmethod
    def load(cls, d: dict[str, Any]) -> Task:
        return cls(
            d["id"], d["state"], d["version"], d["pid"], d["ttl"], tuple(d["resumes"]),
            tuple(d["awaiting"]), d["retry_at"], d["lease_at"],
        )  # fmt: skip


class Engine:
    """Applies protocol requests to the state; ``tick`` fires what is due."""

    def __init__(self, *, server_url: str = "", retry_ms: int = RETRY_MS) -> None:
        self.promises: dict[str, Promise] = {}
        #: Every promise id in order, as the real server's primary key orders them: a search
        #: walks it from its cursor, as ``... WHERE id > $cursor ORDER BY id LIMIT $n`` does.
        self._ids: SortedList = SortedList()
        self.tasks: dict[str, Task] = {}
        #: Schedule records as answered (``nextRunAt`` is the armed tick), and their parsed crons.
        self.schedules: dict[str, dict[str, Any]] = {}
        self._crons: dict[str, cron.Cron] = {}
        self.server_url = server_url
        self.retry_ms = retry_ms
        #: branch tag -> ids of the promises carrying it, except a promise whose branch is
        #: itself (a root or a global child: most records), found by its id (for preload).
        self._branches: dict[str, list[str]] = {}
        #: (due, id, kind): kind "p" promise timeout, "t" task retry or lease, "s" schedule tick.
        self._timers: list[tuple[int, str, str]] = []
        self._sweep_at = _SWEEP_MIN
        #: Messages to deliver once the change is stored.
        self.outgoing: list[Message] = []
        #: Ids whose records changed since the store last saved them.
        self.dirty_promises: set[str] = set()
        self.dirty_tasks: set[str] = set()
        self.dirty_schedules: set[str] = set()

    # -- loading ---------------------------------------------------------------

    def restore(self, promises: list[Promise], tasks: list[Task], schedules: list[dict[str, Any]]) -> None:
        """Rebuild the indexes and timers from stored records."""
        for p in promises:
            p._tags = _flat(self._share_ids(p.id, p.tags))  # noqa: SLF001 - the engine owns its records' storage
            self._index(p)
            if p.state == "pending" and p.target is not None:
                self._arm("p", p.id, p.timeout_at)
        for t in tasks:
            self.tasks[t.id] = t
            if t.state == "pending" and t.retry_at is not None:
                self._arm("t", t.id, t.retry_at)
            elif t.state == "acquired" and t.lease_at is not None:
                self._arm("t", t.id, t.lease_at)
        for s in schedules:
            self.schedules[s["id"]] = s
            parsed = cron.parse(s["cron"])
            if parsed is not None:  # (a record from before crons were checked may not parse)
                self._crons[s["id"]] = parsed
                self._arm("s", s["id"], s["nextRunAt"])

    def _index(self, p: Promise) -> None:
        if p.id not in self.promises:
            self._ids.add(p.id)
        self.promises[p.id] = p
        branch = p.tag("resonate:branch")
        if branch and branch != p.id:
            self._branches.setdefault(branch, []).append(p.id)

    def _share_ids(self, id: str, tags: dict[str, str]) -> dict[str, str]:
        """Point the id-valued tags at the id strings already held (a JSON decode makes copies)."""
        for key in _ID_TAGS:
            value = tags.get(key)
            if value is None:
                continue
            if value == id:
                tags[key] = id
            else:
                known = self.promises.get(value)
                if known is not None:
                    tags[key] = known.id
        return tags

    # -- timers ----------------------------------------------------------------

    def _arm(self, kind: str, id: str, due: int) -> None:
        heapq.heappush(self._timers, (due, id, kind))
        if len(self._timers) > self._sweep_at:
            self._sweep()

    def _sweep(self) -> None:
        """Drop the stale entries (a lease renewed, a promise settled): O(n), at most once per n pushes."""
        self._timers = [e for e in self._timers if self._live(e)]
        heapq.heapify(self._timers)
        self._sweep_at = max(_SWEEP_MIN, len(self._timers) + len(self._timers) // 4)

    def next_due(self) -> int | None:
        """When the next timer that still matters fires (stale entries are dropped first)."""
        while self._timers and not self._live(self._timers[0]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _live(self, entry: tuple[int, str, str]) -> bool:
        """Whether a heap entry still describes a pending timeout, retry or lease."""
        due, id, kind = entry
        if kind == "p":
            p = self.promises.get(id)
            return p is not None and p.state == "pending" and p.timeout_at == due
        if kind == "s":
            s = self.schedules.get(id)
            return s is not None and s["nextRunAt"] == due
        t = self.tasks.get(id)
        if t is None:
            return False
        return (t.state == "pending" and t.retry_at == due) or (t.state == "acquired" and t.lease_at == due)

    def tick(self, now: int) -> None:
        """Fire every timer that is due: promise timeouts, lease expiries, retries, schedule ticks.

        A schedule fires one tick per call, as the real server's timeout loop
        does (``processing_timeouts.rs``): ticks missed while the server was down
        are each fired, one per pass, until the schedule has caught up.
        """
        fired: list[str] = []
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if not self._live(entry):
                continue
            due, id, kind = entry
            if kind == "p":
                self._time_out(self.promises[id], now)
                continue
            if kind == "s":
                self._fire(self.schedules[id], due, now)
                fired.append(id)
                continue
            t = self.tasks[id]
            if t.state == "acquired":  # the lease lapsed
                t.state = "pending"
                t.pid = t.ttl = t.lease_at = None
            self._set_retry(t, now)
            self._execute(t)
        for id in fired:
            self._arm("s", id, self.schedules[id]["nextRunAt"])

    def _fire(self, s: dict[str, Any], fired_at: int, now: int) -> None:
        """Create the promise of one tick of ``s`` (unless it exists) and move ``s`` to its next tick.

        As ``persistence_sqlite.rs`` ``process_schedule_timeout`` does: the id is
        the template with ``{{.id}}`` and ``{{.timestamp}}`` (the tick, in ms)
        replaced; the promise is born at the tick, times out ``promiseTimeout``
        after it (so a tick fired late may be born timed out), and carries the
        schedule's tags plus ``resonate:schedule`` and, as the reference model
        (``oracle.rs``) has it, ``resonate:origin``/``branch``/``parent`` = its id.
        """
        sid = s["id"]
        promise_id = s["promiseId"].replace("{{.id}}", sid).replace("{{.timestamp}}", str(fired_at))
        if promise_id not in self.promises:
            tags = {
                **s["promiseTags"],
                "resonate:schedule": sid,
                "resonate:origin": promise_id,
                "resonate:branch": promise_id,
                "resonate:parent": promise_id,
            }
            timeout_at = fired_at + s["promiseTimeout"]
            self._create_promise(promise_id, timeout_at, s["promiseParam"], tags, now, created_at=fired_at)
        s["lastRunAt"] = fired_at
        s["nextRunAt"] = cron.next_tick(self._crons[sid], fired_at)
        self.dirty_schedules.add(sid)

    def _set_retry(self, t: Task, now: int, at: int | None = None) -> None:
        t.retry_at = at if at is not None else now + self.retry_ms
        t.lease_at = None
        self._arm("t", t.id, t.retry_at)
        self.dirty_tasks.add(t.id)

    def _set_lease(self, t: Task, now: int) -> None:
        assert t.ttl is not None
        t.lease_at = now + t.ttl
        t.retry_at = None
        self._arm("t", t.id, t.lease_at)
        self.dirty_tasks.add(t.id)

    # -- messages --------------------------------------------------------------

    def _execute(self, t: Task) -> None:
        p = self.promises.get(t.id)
        target = p.target if p is not None else None
        if target is not None:
            self.outgoing.append(
                (
                    target,
                    {
                        "data": {"task": {"id": t.id, "version": t.version}},
                        "head": {"serverUrl": self.server_url},
                        "kind": "execute",
                    },
                )
            )

    # -- settlement ------------------------------------------------------------

    def _try_timeout(self, id: str, now: int) -> None:
        p = self.promises.get(id)
        if p is not None and p.state == "pending" and now >= p.timeout_at:
            self._time_out(p, now)

    def _time_out(self, p: Promise, now: int) -> None:
        state = "resolved" if p.tag("resonate:timer") == "true" else "rejected_timedout"
        self._settle(p, state, rules.NO_VALUE, now, settled_at=p.timeout_at)

    def _settle(self, p: Promise, state: str, value: dict[str, Any], now: int, *, settled_at: int) -> None:
        p.state = state
        p.value = value
        p.settled_at = settled_at
        self.dirty_promises.add(p.id)
        # 1. Its own task is done, and holds no callbacks any more.
        t = self.tasks.get(p.id)
        if t is not None and t.state != "fulfilled":
            t.state = "fulfilled"
            t.pid = t.ttl = t.retry_at = t.lease_at = None
            t.resumes = EMPTY
            self._drop_callbacks(t)
            self.dirty_tasks.add(t.id)
        # 2. Resume whoever awaits it.
        for awaiter_id in sorted(p.awaiters):
            at = self.tasks.get(awaiter_id)
            ap = self.promises.get(awaiter_id)
            if at is None or ap is None:
                continue
            at.awaiting = minus(at.awaiting, p.id)
            self.dirty_tasks.add(at.id)
            if ap.state != "pending" or now >= ap.timeout_at:
                continue
            if at.state == "suspended":
                at.state = "pending"
                at.resumes = (p.id,)
                self._set_retry(at, now)
                self._execute(at)
            elif at.state in ("pending", "acquired", "halted"):
                at.resumes = plus(at.resumes, p.id)
        p.awaiters = EMPTY
        # 3. Tell the listeners.
        if p.listeners:
            record = p.record()
            for address in sorted(p.listeners):
                self.outgoing.append((address, {"data": {"promise": record}, "head": {}, "kind": "unblock"}))
            p.listeners = EMPTY

    def _drop_callbacks(self, t: Task) -> None:
        for awaited in t.awaiting:
            ap = self.promises.get(awaited)
            if ap is not None:
                ap.awaiters = minus(ap.awaiters, t.id)
                self.dirty_promises.add(awaited)
        t.awaiting = EMPTY

    def _preload(self, id: str) -> list[dict[str, Any]]:
        """Every other promise carrying ``id``'s branch tag."""
        p = self.promises.get(id)
        branch = p.tag("resonate:branch") if p is not None else None
        if not branch:
            return []
        members = list(self._branches.get(branch, ()))
        head = self.promises.get(branch)
        if head is not None and head.tag("resonate:branch") == branch:
            members.append(branch)
        return [self.promises[o].record() for o in sorted(members) if o != id]

    # -- requests --------------------------------------------------------------

    def apply(self, kind: str, corr_id: str, data: dict[str, Any], now: int) -> tuple[int, Any]:
        """Apply one request; return ``(status, data)``. ``data`` is a string on errors."""
        handler = _HANDLERS.get(kind)
        if handler is None:
            return 400, f"Unknown operation: {kind}"
        try:
            return handler(self, data, now, corr_id)
        except ProtocolError as exc:
            return exc.status, exc.message

    def _create_promise(
        self,
        id: str,
        timeout_at: int,
        param: dict[str, Any],
        tags: dict[str, str],
        now: int,
        *,
        created_at: int | None = None,
    ) -> Promise:
        """Store a new promise (and its task when targeted), as ``promise.create`` does.

        ``created_at`` is a schedule's tick: the promise is born then (its task's
        retry counts from it), even when the server fires the tick late.
        """
        target = tags.get("resonate:target")
        tags = self._share_ids(id, tags)
        born = now if created_at is None else created_at
        if now >= timeout_at:
            state = "resolved" if tags.get("resonate:timer") == "true" else "rejected_timedout"
            created = timeout_at if created_at is None else created_at
            p = Promise(id, state, param, rules.NO_VALUE, tags, timeout_at, created, timeout_at)
            self._index(p)
            self.dirty_promises.add(id)
            if target is not None:
                self.tasks[id] = Task(id, "fulfilled", 0)
                self.dirty_tasks.add(id)
            return p
        p = Promise(id, "pending", param, rules.NO_VALUE, tags, timeout_at, born)
        self._index(p)
        self.dirty_promises.add(id)
        if target is not None:  # target-gated: an untargeted promise times out when touched
            self._arm("p", id, timeout_at)
            t = Task(id, "pending", 0)
            self.tasks[id] = t
            delay = rules.parse_i64(tags.get("resonate:delay", ""))
            if delay is not None and now < delay:
                self._set_retry(t, now, at=delay)
            else:
                self._set_retry(t, born)
                self._execute(t)
        return p

    def promise_get(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id = rules.non_empty(data, "id")
        self._try_timeout(id, now)
        p = self.promises.get(id)
        if p is None:
            return 404, "Promise not found"
        return 200, {"promise": p.record()}

    def promise_create(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id, timeout_at, param, tags = rules.promise_create(data)
        self._try_timeout(id, now)
        existing = self.promises.get(id)
        if existing is not None:
            return 200, {"promise": existing.record()}
        return 200, {"promise": self._create_promise(id, timeout_at, param, tags, now).record()}

    def promise_settle(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id, state, value = rules.settle(data)
        self._try_timeout(id, now)
        p = self.promises.get(id)
        if p is None:
            return 404, "Promise not found"
        if p.state == "pending":
            self._settle(p, state, value, now, settled_at=now)
        return 200, {"promise": p.record()}

    def promise_register_listener(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        awaited, address = rules.string(data, "awaited"), rules.string(data, "address")
        errors = [
            message
            for failed, message in (
                (not awaited, "Awaited promise ID is required"),
                (not address, "Address is required"),
            )
            if failed
        ]
        if errors:
            return 400, "; ".join(errors)
        if rules.parse_address(address) is None:
            return 400, "Invalid listener address"
        self._try_timeout(awaited, now)
        p = self.promises.get(awaited)
        if p is None:
            return 404, "Awaited promise not found"
        if p.state == "pending" and address not in p.listeners:
            p.listeners = (*p.listeners, address)
            self.dirty_promises.add(p.id)
        return 200, {"promise": p.record()}

    def promise_register_callback(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        awaited, awaiter = rules.callback(data)
        self._try_timeout(awaited, now)
        self._try_timeout(awaiter, now)
        p = self.promises.get(awaited)
        if p is None:
            return 404, "Awaited promise not found"
        ap = self.promises.get(awaiter)
        if ap is None:
            return 422, "Awaiter promise not found"
        if ap.target is None:
            return 422, "Awaiter promise has no resonate:target tag"
        t = self.tasks.get(awaiter)
        if ap.state == "pending" and t is not None:
            if p.state == "pending":
                p.awaiters = plus(p.awaiters, awaiter)
                t.awaiting = plus(t.awaiting, awaited)
                self.dirty_promises.add(awaited)
                self.dirty_tasks.add(awaiter)
            elif t.state == "suspended":
                t.state = "pending"
                t.resumes = (awaited,)
                self._set_retry(t, now)
                self._execute(t)
            elif t.state in ("pending", "acquired", "halted"):
                t.resumes = plus(t.resumes, awaited)
                self.dirty_tasks.add(awaiter)
        return 200, {"promise": p.record()}

    def promise_search(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        state = rules.promise_state(data)
        tags, limit, cursor = rules.search(data, default_limit=100)
        found: list[Promise] = []
        ids = self._ids.irange(minimum=cursor, inclusive=(False, True)) if cursor is not None else iter(self._ids)
        for id in ids:
            p = self.promises[id]
            if state is not None and p.state != state:  # exact: "rejected" is not "rejected_canceled"
                continue
            if any(p.tag(k) != v for k, v in tags.items()):
                continue
            found.append(p)
            if len(found) > limit:
                break
        out: dict[str, Any] = {"promises": [p.record() for p in found[:limit]]}
        if len(found) > limit:
            out["cursor"] = found[limit - 1].id
        return 200, out

    def task_create(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        pid = rules.non_empty(data, "pid")
        ttl = rules.integer(data, "ttl", minimum=1)
        _, action = rules.action(data)
        id, timeout_at, param, tags = rules.promise_create(action)
        if "resonate:target" not in tags:
            return 400, "Action must have a resonate:target tag"
        if "resonate:delay" in tags:
            return 400, "Action must not have a resonate:delay tag"
        self._try_timeout(id, now)
        p = self.promises.get(id)
        if p is None:
            if now >= timeout_at:
                p = self._create_promise(id, timeout_at, param, tags, now)
                return 200, {"task": self.tasks[id].record(), "promise": p.record(), "preload": []}
            p = Promise(id, "pending", param, rules.NO_VALUE, self._share_ids(id, tags), timeout_at, now)
            self._index(p)
            self.dirty_promises.add(id)
            self._arm("p", id, timeout_at)
            t = Task(id, "acquired", 1, pid, ttl)
            self.tasks[id] = t
            self._set_lease(t, now)
            return 200, {"task": t.record(), "promise": p.record(), "preload": self._preload(id)}
        t = self.tasks.get(id)
        if t is None:
            return 422, "Promise exists without a target task"
        if t.state == "pending":
            self._acquire(t, pid, ttl, now)
            return 200, {"task": t.record(), "promise": p.record(), "preload": self._preload(id)}
        if t.state == "fulfilled":
            return 200, {"task": t.record(), "promise": p.record(), "preload": []}
        return 409, "Already exists"

    def _acquire(self, t: Task, pid: str, ttl: int, now: int) -> None:
        t.state = "acquired"
        t.version += 1
        t.pid = pid
        t.ttl = ttl
        t.resumes = EMPTY
        self._set_lease(t, now)

    def _task(self, data: dict[str, Any], now: int) -> tuple[Task, int]:
        id = rules.non_empty(data, "id")
        version = rules.integer(data, "version")
        self._try_timeout(id, now)
        t = self.tasks.get(id)
        if t is None:
            raise ProtocolError(404, "Task not found")
        return t, version

    def task_acquire(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        pid = rules.non_empty(data, "pid")
        ttl = rules.integer(data, "ttl", minimum=1)
        t, version = self._task(data, now)
        if t.state != "pending":
            return 409, "Task is not pending"
        if version != t.version:
            return 409, "Version mismatch"
        self._acquire(t, pid, ttl, now)
        p = self.promises[t.id]
        return 200, {"task": t.record(), "promise": p.record(), "preload": self._preload(t.id)}

    def task_release(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        t, version = self._task(data, now)
        if t.state != "acquired" or version != t.version:
            return 409, "Task version mismatch or invalid state"
        t.state = "pending"
        t.pid = t.ttl = None
        self._set_retry(t, now)
        self._execute(t)
        return 200, {}

    def task_fulfill(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        rules.non_empty(data, "id")
        rules.integer(data, "version")
        _, action = rules.action(data)
        id, state, value = rules.settle(action)
        if id != data["id"]:
            return 400, "Action ID must match the task ID"
        t, version = self._task(data, now)
        if t.state != "acquired" or version != t.version:
            return 409, "Task version mismatch or invalid state"
        p = self.promises[t.id]
        if p.state == "pending":
            self._settle(p, state, value, now, settled_at=now)
        return 200, {"promise": p.record()}

    def task_suspend(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id = rules.non_empty(data, "id")
        rules.integer(data, "version")
        awaited_ids = rules.suspend_actions(id, data)
        t, version = self._task(data, now)
        for a in awaited_ids:
            self._try_timeout(a, now)
        if t.state != "acquired" or version != t.version:
            return 409, "Task is not acquired or version mismatch"
        awaited = [self.promises.get(a) for a in awaited_ids]
        if any(p is None for p in awaited):
            return 422, "Awaited promise not found"
        if any(p.state != "pending" for p in awaited if p is not None):
            t.resumes = EMPTY
            self.dirty_tasks.add(t.id)
            return 300, {"preload": self._preload(t.id)}
        for p in awaited:
            assert p is not None
            p.awaiters = plus(p.awaiters, t.id)
            t.awaiting = plus(t.awaiting, p.id)
            self.dirty_promises.add(p.id)
        t.state = "suspended"
        t.pid = t.ttl = t.retry_at = t.lease_at = None
        t.resumes = EMPTY
        self.dirty_tasks.add(t.id)
        return 200, {}

    def task_fence(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id = rules.non_empty(data, "id")
        rules.integer(data, "version")
        kind, action = rules.action(data, head=False)
        if kind == "promise.create":
            rules.promise_create(action)
        elif kind == "promise.settle":
            rules.settle(action)
        else:
            return 400, "Invalid fence action kind"
        if action.get("id") == id:
            return 400, "Action ID must not equal the task ID"
        t, version = self._task(data, now)
        self._try_timeout(str(action.get("id")), now)
        if t.state != "acquired" or version != t.version:
            return 409, "Version mismatch"
        handler = self.promise_create if kind == "promise.create" else self.promise_settle
        status, inner = handler(action, now, corr_id)
        envelope = {
            "kind": kind,
            "head": {"corrId": corr_id, "status": status, "version": PROTOCOL_VERSION},
            "data": inner,
        }
        return 200, {"action": envelope, "preload": self._preload(t.id)}

    def task_heartbeat(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        pid, refs = rules.heartbeat(data)
        for id, version in refs:
            t = self.tasks.get(id)
            if t is not None and t.state == "acquired" and t.version == version and t.pid == pid:
                self._set_lease(t, now)
        return 200, {}

    def task_get(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id = rules.non_empty(data, "id")
        t = self.tasks.get(id)
        if t is None:
            return 404, "Task not found"
        return 200, {"task": t.record()}

    # -- schedules (server.rs op_schedule_*) ------------------------------------

    @staticmethod
    def _schedule_record(s: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if v is not None}

    def schedule_create(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id, expression, promise_id, promise_timeout, param, tags = rules.schedule_create(data)
        parsed = cron.parse(expression)
        if parsed is None:
            return 400, "Invalid cron expression"
        existing = self.schedules.get(id)
        if existing is not None:  # the stored one, as it is (INSERT OR IGNORE)
            return 200, {"schedule": self._schedule_record(existing)}
        record: dict[str, Any] = {
            "id": id,
            "cron": expression,
            "promiseId": promise_id,
            "promiseTimeout": promise_timeout,
            "promiseParam": param,
            "promiseTags": tags,
            "createdAt": now,
            "nextRunAt": cron.next_tick(parsed, now),
            "lastRunAt": None,
        }
        self.schedules[id] = record
        self._crons[id] = parsed
        self._arm("s", id, record["nextRunAt"])
        self.dirty_schedules.add(id)
        return 200, {"schedule": self._schedule_record(record)}

    def schedule_get(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        s = self.schedules.get(rules.non_empty(data, "id", "Schedule ID is required"))
        return (200, {"schedule": self._schedule_record(s)}) if s is not None else (404, "Schedule not found")

    def schedule_delete(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        id = rules.non_empty(data, "id", "Schedule ID is required")
        if self.schedules.pop(id, None) is None:
            return 404, "Schedule not found"
        self._crons.pop(id, None)  # its timer entry goes stale
        self.dirty_schedules.add(id)
        return 200, {}

    def schedule_search(self, data: dict[str, Any], now: int, corr_id: str) -> tuple[int, Any]:
        tags, limit, cursor = rules.search(data, default_limit=10)
        found: list[dict[str, Any]] = []
        for id in sorted(self.schedules):
            if cursor is not None and id <= cursor:
                continue
            s = self.schedules[id]
            if all(s["promiseTags"].get(k) == v for k, v in tags.items()):
                found.append(s)
                if len(found) > limit:
                    break
        out: dict[str, Any] = {"schedules": [self._schedule_record(s) for s in found[:limit]]}
        if len(found) > limit:
            out["cursor"] = found[limit - 1]["id"]
        return 200, out


_HANDLERS = {
    "promise.get": Engine.promise_get,
    "promise.create": Engine.promise_create,
    "promise.settle": Engine.promise_settle,
    "promise.register_listener": Engine.promise_register_listener,
    "promise.register_callback": Engine.promise_register_callback,
    "promise.search": Engine.promise_search,
    "task.create": Engine.task_create,
    "task.acquire": Engine.task_acquire,
    "task.release": Engine.task_release,
    "task.fulfill": Engine.task_fulfill,
    "task.suspend": Engine.task_suspend,
    "task.fence": Engine.task_fence,
    "task.heartbeat": Engine.task_heartbeat,
    "task.get": Engine.task_get,
    "schedule.create": Engine.schedule_create,
    "schedule.get": Engine.schedule_get,
    "schedule.delete": Engine.schedule_delete,
    "schedule.search": Engine.schedule_search,
}

__all__ = ["PROTOCOL_VERSION", "Engine", "Message", "Promise", "ProtocolError", "Task", "origin"]
