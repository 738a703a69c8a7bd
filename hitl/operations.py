"""What the edges (functions, CLI) ask of the Resonate server, over a send-only client.

Every call is bounded by ``timeout`` seconds; an unreachable, slow or failing
server raises :class:`ServerUnavailable` (the edges answer 503), so no
request hangs and no stack trace reaches a caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from resonate.error import ServerError
from resonate.ids import origin_of
from resonate.promises import Promises
from resonate.types import PromiseRecord, Value
from resonate_base.error import ResonateError

from hitl import bindings, inboxes
from hitl.client import runs
from hitl.client.reads import find
from hitl.clock import iso, now_ms
from hitl.model import policy
from hitl.model.inbox import entries as inbox_entries
from hitl.model.inbox import entry_id
from hitl.model.records import (
    Attempt,
    Canceled,
    Closed,
    Decision,
    Delivery,
    DeliveryState,
    Expired,
    Invalid,
    RecordError,
    Result,
    Vote,
    VoteState,
    promise_vote,
    vote_state,
)
from hitl.model.request import ApprovalRequest, RequestError, stored_request
from hitl.settings import ResonateSettings

RunState = Literal["pending", "done", "failed"]

#: Attempts a status read follows at most per target (a day of retries is ~35).
MAX_ATTEMPTS_READ = 100


class Client(Protocol):
    """What the operations need of a client: its promises (:class:`hitl.client.sendonly.SendOnlyClient`,
    or a full ``resonate.Resonate``)."""

    @property
    def promises(self) -> Promises: ...


class ServerUnavailable(Exception):
    """The Resonate server did not answer in time, or answered with a 5xx."""


class IdConflict(Exception):
    """A run with this id exists for a different request."""


@dataclass(frozen=True, slots=True)
class RunStatus:
    workflow_id: str
    status: RunState
    #: The run's result once it is done.
    result: Result | None = None
    #: The promise's state when the run failed (``rejected_timedout``, ...).
    failure: str | None = None
    #: Where each ``on_decision`` target stands.
    deliveries: tuple[Delivery, ...] = ()

    @classmethod
    def of(cls, record: PromiseRecord) -> RunStatus:
        if record.state == "pending":
            return cls(record.id, "pending")
        if record.state == "resolved":
            try:
                return cls(record.id, "done", Result.from_json(record.value.data))
            except RecordError:
                return cls(record.id, "failed", failure="unreadable result")
        return cls(record.id, "failed", failure=record.state)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"workflow_id": self.workflow_id, "status": self.status}
        if self.result is not None:
            out["result"] = self.result.to_json()
        if self.failure is not None:
            out["result"] = {"state": self.failure}
        if self.deliveries:
            out["on_decision"] = [d.to_json() for d in self.deliveries]
        return out


@dataclass(frozen=True, slots=True)
class Approval:
    """One approver's view of a request: their vote and where the request stands."""

    request: ApprovalRequest
    round: policy.Round
    #: This approver's vote: ``None`` while open.
    vote: VoteState
    #: The run's result once it finished.
    result: Result | None
    #: The states of the round's votes (for the progress), or ``()`` when not read.
    votes: tuple[VoteState, ...] = ()

    @property
    def voted(self) -> Vote | None:
        """This approver's own vote, if they cast one."""
        return self.vote if isinstance(self.vote, Vote) else None

    @property
    def unusable(self) -> bool:
        """Whether this approver's vote promise holds something other than a vote (nobody
        may vote with it any more: see :class:`~hitl.model.records.Invalid`)."""
        return isinstance(self.vote, Invalid)

    @property
    def canceled(self) -> Decision | None:
        return self.vote.as_decision() if isinstance(self.vote, Canceled) else None

    @property
    def closed(self) -> Decision | None:
        """How the request (or this approver's round) ended, or ``None`` while it is open."""
        if self.result is not None:
            return self.result.decision
        if isinstance(self.vote, Expired):
            return Decision.expired(self.vote.at_ms)
        if isinstance(self.vote, Closed):
            return self.vote.outcome
        if isinstance(self.vote, Canceled):
            return self.vote.as_decision()
        return None

    @property
    def progress(self) -> policy.Progress:
        return policy.progress(self.round, self.votes)


async def _bounded[T](call: Awaitable[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise ServerUnavailable(f"no answer within {timeout:g}s") from None
    except ServerError as exc:
        if exc.code >= 500:
            raise ServerUnavailable(f"server error {exc.code}") from None
        raise
    except ResonateError as exc:  # connection refused, reset, ...
        raise ServerUnavailable(str(exc)) from None


async def _get(client: Client, id: str, timeout: float) -> PromiseRecord | None:
    return await _bounded(find(client.promises, id), timeout)


async def start(client: Client, group: str, req: ApprovalRequest, *, timeout: float) -> RunStatus:
    """Start the approval run named ``req.workflow_id``, or return the existing one's status.

    The server's create is idempotent by id, so concurrent or repeated starts
    make one run. A repeat with a different request raises :class:`IdConflict`.
    A request naming promise targets first binds them (:func:`hitl.bindings.bind`),
    which raises :class:`~hitl.model.request.RequestError` (400, 409) for a target
    it may not have; nothing is started then.
    """
    id = req.workflow_id
    payload = req.to_json()
    if any(t.type == "promise" for t in req.on_decision):
        existing = await _bounded(bindings.bind(client.promises, req, now_ms=now_ms()), timeout)
        if existing is not None:  # a retried start: the request was bound when it was accepted
            _same_request(existing, payload)
            return RunStatus.of(existing)
    record = await _bounded(
        runs.create(
            client.promises,
            id,
            policy.WORKFLOW,
            (payload,),
            group=group,
            timeout_at=now_ms() + int(policy.run_timeout(req).total_seconds() * 1000),
        ),
        timeout,
    )
    _same_request(record, payload)
    return RunStatus.of(record)


def _same_request(record: PromiseRecord, payload: dict[str, Any]) -> None:
    """Raise :class:`IdConflict` unless the run ``record`` was started with the request ``payload``."""
    stored = record.param.data if isinstance(record.param.data, dict) else {}
    if stored.get("func") != policy.WORKFLOW or list(stored.get("args") or [])[:1] != [payload]:
        raise IdConflict(record.id)


async def status(client: Client, workflow_id: str, *, timeout: float) -> RunStatus | None:
    """Where the request stands, with its ``on_decision`` deliveries once it is done."""
    record = await _get(client, workflow_id, timeout)
    if record is None or "resonate:target" not in record.tags or ":" in record.id:
        return None
    run = RunStatus.of(record)
    args = record.param.data.get("args") if isinstance(record.param.data, dict) else None
    if not (args and isinstance(args[0], dict) and args[0].get("on_decision")):
        return run  # no targets: nothing more to read or parse
    found = _request_in(record)
    if found is None:
        return run
    req = found[1]
    if run.status == "pending":  # nothing is delivered before the decision
        return replace(run, deliveries=tuple(Delivery(t.shown, "pending") for t in req.on_decision))
    chains = [_delivery(client, req, i, timeout) for i in range(len(req.on_decision))]
    return replace(run, deliveries=tuple(await asyncio.gather(*chains)))


async def wait(
    client: Client, settings: ResonateSettings, workflow_id: str, *, seconds: float, timeout: float
) -> RunStatus | None:
    """The status as soon as the request ends, or as it stands after ``seconds`` (a long poll).

    Nothing is kept between calls; while it waits the server pushes the end to it
    (:mod:`hitl.client.waiting`), and it reads the request every 10 seconds in case
    a push was lost. ``timeout`` bounds each read, as for every other operation.
    """
    run = await status(client, workflow_id, timeout=timeout)
    if run is None or run.status != "pending" or seconds <= 0:
        return run
    from hitl.client.waiting import until_settled  # loads aiohttp: only waiters pay for it

    async def read(id: str) -> PromiseRecord:
        return await _bounded(client.promises.get(id), timeout)

    await until_settled(client.promises, settings, workflow_id, seconds=seconds, get=read)
    return await status(client, workflow_id, timeout=timeout)


async def _delivery(client: Client, req: ApprovalRequest, index: int, timeout: float) -> Delivery:
    """Where the delivery to ``on_decision[index]`` stands: its chain of attempt runs followed to
    the last (each attempt that failed in a way that may mend made the next)."""
    shown = req.on_decision[index].shown
    last: Attempt | None = None
    for number in range(1, MAX_ATTEMPTS_READ + 1):
        record = await _get(client, policy.delivery_id(req.workflow_id, index, number), timeout)
        if record is None or record.state == "pending":
            break
        if record.state != "resolved":
            return Delivery(shown, "failed", number, f"attempt {number} did not run ({record.state})")
        try:
            last = Attempt.from_json(record.value.data)
        except RecordError:
            return Delivery(shown, "failed", number, "unreadable attempt")
        if last.outcome != "retrying":
            break
    if last is None:
        return Delivery(shown, "pending")
    when = iso(last.at_ms)
    state: DeliveryState = "pending" if last.outcome == "retrying" else last.outcome
    return Delivery(shown, state, last.attempt, last.error, when)


async def request_of(
    client: Client, workflow_id: str, *, timeout: float
) -> tuple[PromiseRecord, ApprovalRequest] | None:
    """The run ``workflow_id`` and the request it was started with, or ``None``."""
    root = await _get(client, workflow_id, timeout)
    return _request_in(root) if root is not None else None


def _request_in(root: PromiseRecord) -> tuple[PromiseRecord, ApprovalRequest] | None:
    data = root.param.data
    if not isinstance(data, dict) or data.get("func") != policy.WORKFLOW or not data.get("args"):
        return None
    try:
        return root, stored_request(data["args"][0])
    except RequestError:
        return None


async def _states(client: Client, req: ApprovalRequest, rnd: policy.Round, timeout: float) -> list[VoteState]:
    records = await asyncio.gather(*(_get(client, id, timeout) for id in rnd.vote_ids))
    return [_state_of(r, a, req) for r, a in zip(records, rnd.approvers, strict=True)]


def _state_of(record: PromiseRecord | None, approver: str, req: ApprovalRequest) -> VoteState:
    """What ``approver``'s vote promise holds, read as the run reads it (strictly)."""
    if record is None:
        return None
    return promise_vote(record.state, record.value.data, approver, signed_in_only=req.sign_in_required)


async def round_states(client: Client, req: ApprovalRequest, rnd: policy.Round, *, timeout: float) -> list[VoteState]:
    """The states of ``rnd``'s votes, in its approvers' order."""
    return await _states(client, req, rnd, timeout)


async def active_round(client: Client, req: ApprovalRequest, *, timeout: float) -> policy.Round:
    """The round asking now: the first, or the next once a round's deadline passed (escalation)."""
    lay = policy.layout(req)
    for rnd in lay.rounds[:-1]:
        if not any(isinstance(s, Expired) for s in await _states(client, req, rnd, timeout)):
            return rnd
    return lay.rounds[-1]


async def read(client: Client, vote_id: str, *, timeout: float) -> Approval | None:
    """The request behind ``vote_id`` as its approver sees it, or ``None`` when there is none."""
    found = await request_of(client, origin_of(vote_id), timeout=timeout)
    if found is None:
        return None
    root, req = found
    rnd = policy.layout(req).round_of(vote_id)
    if rnd is None:
        return None
    records = await asyncio.gather(*(_get(client, id, timeout) for id in rnd.vote_ids))
    mine = rnd.vote_ids.index(vote_id)
    if records[mine] is None:  # the run has not created its votes yet
        return None
    votes = tuple(_state_of(r, a, req) for r, a in zip(records, rnd.approvers, strict=True))
    return Approval(request=req, round=rnd, vote=votes[mine], result=RunStatus.of(root).result, votes=votes)


DecideOutcome = Literal["recorded", "already", "closed", "unknown"]


async def decide(
    client: Client, vote_id: str, vote: Vote, *, timeout: float, inbox_deadline_s: int | None = None
) -> tuple[DecideOutcome, Approval | None]:
    """Record an approver's vote. ``recorded`` if it counted; ``already`` if they had
    decided; ``closed`` if the request had ended; ``unknown`` if there is no such vote.

    One settle, and beside it one read of the request (for the page's subject): the
    server keeps the first settle, so a vote already cast, a cancel, a deadline or the
    run's close answer the settle with what they stored, and nothing else is read.
    With inboxes (``inbox_deadline_s``: the round's deadline, as the link carries it),
    the approver's entry is then settled with what the vote holds: one more settle.
    """

    async def settle() -> PromiseRecord:
        record = await _bounded(client.promises.resolve(vote_id, Value(data=vote.to_json())), timeout)
        if inbox_deadline_s is not None:
            entry = entry_id(vote.by, inbox_deadline_s, vote_id)
            await _bounded(inboxes.close(client.promises, [(entry, record)]), timeout)
        return record

    try:
        record, found = await asyncio.gather(settle(), request_of(client, origin_of(vote_id), timeout=timeout))
    except ServerError as exc:
        if exc.code == 404:
            return "unknown", None
        raise
    if found is None:
        return "unknown", None
    root, req = found
    rnd = policy.layout(req).round_of(vote_id)
    if rnd is None:
        return "unknown", None
    state = _state_of(record, rnd.approvers[rnd.vote_ids.index(vote_id)], req)
    approval = Approval(req, rnd, state, RunStatus.of(root).result)
    if state == vote:
        return "recorded", approval
    return ("already" if isinstance(state, Vote) else "closed"), approval


async def cancel(
    client: Client, workflow_id: str, *, by: str, reason: str, timeout: float, inboxes_on: bool = False
) -> tuple[bool, RunStatus] | None:
    """Cancel a pending request: ``(True, status)`` if this canceled it, ``(False, status)``
    if it had already ended, ``None`` if there is no such request. With ``inboxes_on``, the
    votes' entries are settled too, if it has any (the request leaves its approvers' inboxes)."""
    found = await request_of(client, workflow_id, timeout=timeout)
    if found is None:
        return None
    root, req = found
    if root.state != "pending":
        return False, RunStatus.of(root)
    marker = Canceled(by, reason, now_ms())
    records = await asyncio.gather(
        *(
            _bounded(client.promises.resolve(id, Value(data=marker.to_json())), timeout)
            for id in policy.layout(req).ids()
        )
    )
    canceled = any(vote_state(r.value.data) == marker for r in records if r.state == "resolved")
    if inboxes_on:
        started = policy.started_at(root.timeout_at, policy.layout(req))
        entries = inbox_entries(req, started)
        # The first round's entries are made with the run's first step when it keeps inboxes:
        # without the first, there are none (sign-in was off), and one read says so.
        if await _get(client, entries[0].id, timeout) is not None:
            closing = inboxes.close(client.promises, zip((e.id for e in entries), records, strict=True))
            await _bounded(closing, timeout)
    return canceled, RunStatus(workflow_id, "pending")


async def inbox(client: Client, addresses: list[str], *, now_ms: int, timeout: float) -> inboxes.Listing:
    """What waits for the person with ``addresses`` (:func:`hitl.inboxes.listing`), bounded by ``timeout``
    (twice: a first view may make the person's fences)."""
    return await _bounded(inboxes.listing(client.promises, addresses, now_ms=now_ms), 2 * timeout)


async def pending(
    client: Client, *, timeout: float, limit: int = 100
) -> list[tuple[ApprovalRequest, int, policy.Progress]]:
    """Requests still waiting, each with its current round and that round's progress (who has not decided)."""
    page = await _bounded(
        client.promises.search("pending", {"resonate:scope": "global", runs.KIND_TAG: policy.WORKFLOW}, limit, None),
        timeout,
    )
    out = []
    for root in page.promises:
        found = _request_in(root)
        if found is None:
            continue
        req = found[1]
        active = await active_round(client, req, timeout=timeout)
        out.append((req, active.index, policy.progress(active, await _states(client, req, active, timeout))))
    return out
