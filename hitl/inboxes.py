"""Approvers' inboxes on the Resonate server: entries made when a round asks, settled with the vote.

The layout and why it keeps searches cheap: :mod:`hitl.model.inbox`. Here the
server calls:

- :func:`ask`: a round asks its approvers: one entry each (the run's
  ``schedule_round`` step, once per round, only with sign-in on), a read of each
  one's last fence (the first time, their region's fences are made), and a read
  of each one's vote (one settled already: its entry is closed at once);
- :func:`close`: a vote was settled (by its approver, the deadline, a cancel or
  the run's close): its entry is settled with the very value the vote holds, so
  the inbox and the vote never disagree; an entry that does not exist (the request
  began before sign-in was on) is no error;
- :func:`listing`: what waits for a person, and what ended lately: two searches for
  each of their addresses (what waits, what ended), and per row needing the votes of
  its round (k of n) a search and a read.

Invariant: only hitl's components write entries (they carry :data:`~hitl.model.inbox.TAG`);
``start`` refuses them as ``on_decision`` targets (:mod:`hitl.bindings`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from resonate.error import ServerError
from resonate.promises import Promises
from resonate.types import PromiseRecord, Value

from hitl.client.reads import find
from hitl.model import inbox, policy
from hitl.model.inbox import Entry
from hitl.model.records import RecordError, VoteState, promise_vote, vote_state

#: How long an ended request stays in the "recently ended" part.
RECENT_FOR_MS = 7 * 86_400_000


@dataclass(frozen=True)
class Inboxes:
    """Whether this deployment keeps inboxes (sign-in on): a worker dependency."""

    enabled: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    """One line of an inbox: the entry, how it stands, and its round's progress (k of n)."""

    entry: Entry
    #: ``None`` while the vote is open; else what it was settled with.
    state: VoteState = None
    settled_at_ms: int | None = None
    progress: policy.Progress | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    pending: tuple[Row, ...] = ()
    ended: tuple[Row, ...] = ()
    #: More pending than one page shows.
    more: bool = False
    #: Server requests the listing cost (the benchmark reads it).
    requests: int = 0


async def ask(promises: Promises, entries: Iterable[Entry], timeout_at: int) -> None:
    """Make each entry (idempotently, by id): the round asks these approvers now; and each
    approver's fences, the first time (one read each), so no inbox view walks past a region.

    Then read each entry's vote, and close the entry of one already settled. Whoever
    settles a vote closes its entry after (unblock, a cancel, the deadline, the run's
    close), but a vote settled before its entry existed (a cancel in the instant after
    ``start``) found none to close: made first and read after, every entry is closed by
    one side or the other.
    """
    entries = list(entries)
    await asyncio.gather(
        *(
            promises.create(e.id, timeout_at, Value(data=e.to_json()), {inbox.TAG: inbox.key(e.approver)})
            for e in entries
        ),
        *(_fenced(promises, k) for k in sorted({inbox.key(e.approver) for e in entries})),
    )
    votes = await asyncio.gather(*(find(promises, e.vote_id) for e in entries))
    await close(promises, [(e.id, v) for e, v in zip(entries, votes, strict=True) if v is not None])


async def _fenced(promises: Promises, key: str) -> None:
    if await find(promises, inbox.fence_ids(key)[-1]) is None:
        await _fences(promises, key)


async def close(promises: Promises, settled: Iterable[tuple[str, PromiseRecord]]) -> None:
    """Settle the entries ``(entry id, the vote's settled record)`` with what each vote holds."""
    await asyncio.gather(*(_close(promises, id, record) for id, record in settled if record.state != "pending"))


async def _close(promises: Promises, id: str, vote: PromiseRecord) -> None:
    try:
        await promises.resolve(id, Value(data=vote.value.data if vote.state == "resolved" else None))
    except ServerError as exc:
        if exc.code != 404:  # no entry: the request began before sign-in was on
            raise


@dataclass
class _Counter:
    promises: Promises
    n: int = field(default=0)

    async def search(self, state: str | None, tags: dict[str, str], limit: int, cursor: str) -> list[PromiseRecord]:
        self.n += 1
        return (await self.promises.search(state, tags, limit, cursor)).promises

    async def get(self, id: str) -> PromiseRecord | None:
        self.n += 1
        return await find(self.promises, id)


async def listing(promises: Promises, addresses: Sequence[str], *, now_ms: int) -> Listing:
    """What waits for the person with ``addresses`` (their own and their aliases), and what
    ended for them in the last :data:`RECENT_FOR_MS`."""
    server = _Counter(promises)
    keys = sorted({inbox.key(a) for a in addresses})
    pages = await asyncio.gather(*(_region(server, k) for k in keys))
    pending = [r for found, _ in pages for r in found if r.state == "pending" and not _fence(r)]
    recent = [r for _, found in pages for r in found if r.state != "pending" and not _fence(r)]
    more = any(len([r for r in found if not _fence(r)]) >= inbox.PENDING_ROWS for found, _ in pages)
    rows = []
    for record in pending:
        entry = _entry(record)
        if entry is not None and entry.asked_at_ms <= now_ms < record.timeout_at:
            rows.append(entry)
    rows = sorted(rows, key=lambda e: (e.deadline_ms, e.vote_id))[: inbox.PENDING_ROWS]  # the most urgent first
    progress = await asyncio.gather(*(_progress(server, e) for e in rows))
    ended = []
    for record in sorted(recent, key=lambda r: -(r.settled_at or 0)):
        entry = _entry(record)
        if entry is not None and now_ms - (record.settled_at or 0) <= RECENT_FOR_MS:
            state = vote_state(record.value.data) if record.state == "resolved" else None
            ended.append(Row(entry, state, record.settled_at))
    return Listing(
        tuple(Row(e, None, None, p) for e, p in zip(rows, progress, strict=True)), tuple(ended), more, server.n
    )


async def _region(server: _Counter, key: str) -> tuple[list[PromiseRecord], list[PromiseRecord]]:
    """A person's pending entries and their newest entries (any state), making the region's
    fences when a search shows them missing (it then walked past the region): the worker
    makes them when it first asks the person, so only for entries made before inboxes were on."""
    cursor, tags = inbox.region(key), {inbox.TAG: key}
    pending, newest = await asyncio.gather(
        server.search("pending", tags, inbox.PENDING_ROWS, cursor), server.search(None, tags, inbox.RECENT_ROWS, cursor)
    )
    if not any(_fence(r) for r in (*pending, *newest)) and len(newest) < inbox.RECENT_ROWS:
        await _fences(server.promises, key)
    return pending, newest


async def _fences(promises: Promises, key: str) -> None:
    """Make a region's fences, the last one last: once it exists, they all do."""
    tags = {inbox.TAG: key, inbox.FENCE_TAG: "true"}
    *first, last = inbox.fence_ids(key)
    await asyncio.gather(*(promises.create(id, inbox.FOREVER_MS, Value(), tags) for id in first))
    await promises.create(last, inbox.FOREVER_MS, Value(), tags)


def _fence(record: PromiseRecord) -> bool:
    return inbox.FENCE_TAG in record.tags


def _entry(record: PromiseRecord) -> Entry | None:
    try:
        return Entry.from_json(record.param.data)
    except RecordError:
        return None


async def _progress(server: _Counter, entry: Entry) -> policy.Progress | None:
    """How many of the entry's round approved and rejected (only when more than one approval
    counts), read as the run reads them, bounded by the request, whatever else the server holds.

    The votes are the request's only external children (tags ``resonate:parent``,
    ``resonate:external``), ``<id>:1`` to ``<id>:<all_votes>``, all made by the run's
    first step; its children's ids all begin ``<id>:``. The server walks ids from the
    cursor until it has one match more than the limit (to say whether there are more),
    so a search from ``<id>:`` with a limit one short of the votes stops at the last
    vote: never past the request. The vote that answer leaves out is read by id.
    """
    if entry.required <= 1 or not entry.round_votes:
        return None
    found: list[PromiseRecord] = []
    if entry.all_votes >= 2:
        tags = {"resonate:parent": entry.workflow_id, "resonate:external": "true"}
        found = await server.search(None, tags, entry.all_votes - 1, f"{entry.workflow_id}:")
    by_id = {r.id: r for r in found}
    missing = [id for id in entry.round_votes if id not in by_id]
    by_id |= {r.id: r for r in await asyncio.gather(*(server.get(id) for id in missing)) if r is not None}
    states = [
        None if (r := by_id.get(id)) is None
        else promise_vote(r.state, r.value.data, approver, signed_in_only=entry.sign_in_required)
        for id, approver in zip(entry.round_votes, entry.approvers, strict=True)
    ]  # fmt: skip
    return policy.progress(entry, states)
