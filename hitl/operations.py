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

from hitl.client import runs
from hitl.clock import iso, now_ms
from hitl.model import policy
from hitl.model.request import ApprovalRequest

RunState = Literal["pending", "done", "failed"]


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
    result: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: PromiseRecord) -> RunStatus:
        if record.state == "pending":
            return cls(record.id, "pending")
        if record.state == "resolved":
            return cls(record.id, "done", policy.result_of(record.value.data))
        return cls(record.id, "failed", {"state": record.state})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"workflow_id": self.workflow_id, "status": self.status}
        if self.result is not None:
            out["result"] = self.result
        return out


@dataclass(frozen=True, slots=True)
class Approval:
    """One approver's view of a request: their vote and where the request stands."""

    request: ApprovalRequest
    round: policy.Round
    approver_vote: PromiseRecord
    #: The run's result once it finished; the values of the round's votes.
    result: dict[str, Any] | None
    votes: list[Any]

    @property
    def voted(self) -> dict[str, Any] | None:
        """This approver's own decision, if they made one."""
        value = self.approver_vote.value.data
        return policy.result_of(value) if policy.is_vote(value) else None

    @property
    def canceled(self) -> dict[str, Any] | None:
        value = self.approver_vote.value.data
        return policy.result_of(value) if policy.is_canceled(value) else None

    @property
    def closed(self) -> dict[str, Any] | None:
        """How the request (or this approver's round) ended, or ``None`` while it is open."""
        if self.result is not None:
            return self.result
        value = self.approver_vote.value.data
        if policy.is_expired(value):
            return {"decision": "expired", "by": None, "comment": "", "decided_at": iso(value.get("at", 0))}
        if isinstance(value, dict) and (value.get(policy.CLOSED) or policy.is_canceled(value)):
            return policy.result_of(value)
        return None

    @property
    def progress(self) -> dict[str, Any]:
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
    try:
        return await _bounded(client.promises.get(id), timeout)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise


async def start(client: Client, group: str, req: ApprovalRequest, *, timeout: float) -> RunStatus:
    """Start the approval run named ``req.workflow_id``, or return the existing one's status.

    The server's create is idempotent by id, so concurrent or repeated starts
    make one run. A repeat with a different request raises :class:`IdConflict`.
    """
    id = req.workflow_id
    payload = req.to_json()
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
    stored = record.param.data if isinstance(record.param.data, dict) else {}
    if stored.get("func") != policy.WORKFLOW or list(stored.get("args") or [])[:1] != [payload]:
        raise IdConflict(id)
    return RunStatus.of(record)


async def status(client: Client, workflow_id: str, *, timeout: float) -> RunStatus | None:
    record = await _get(client, workflow_id, timeout)
    if record is None or "resonate:target" not in record.tags or ":" in record.id:
        return None
    return RunStatus.of(record)


async def request_of(
    client: Client, workflow_id: str, *, timeout: float
) -> tuple[PromiseRecord, ApprovalRequest] | None:
    """The run ``workflow_id`` and the request it was started with, or ``None``."""
    root = await _get(client, workflow_id, timeout)
    data = root.param.data if root is not None else None
    if root is None or not isinstance(data, dict) or data.get("func") != policy.WORKFLOW or not data.get("args"):
        return None
    return root, ApprovalRequest.from_json(data["args"][0])


async def _values(client: Client, ids: tuple[str, ...], timeout: float) -> list[PromiseRecord | None]:
    return list(await asyncio.gather(*(_get(client, id, timeout) for id in ids)))


async def active_round(client: Client, req: ApprovalRequest, *, timeout: float) -> policy.Round:
    """The round asking now: the first, or the next once a round's deadline passed (escalation)."""
    lay = policy.layout(req)
    for rnd in lay.rounds[:-1]:
        records = await _values(client, rnd.vote_ids, timeout)
        if not any(r is not None and policy.is_expired(r.value.data) for r in records):
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
    records = await _values(client, rnd.vote_ids, timeout)
    mine = records[rnd.vote_ids.index(vote_id)]
    if mine is None:  # the run has not created its votes yet
        return None
    return Approval(
        request=req,
        round=rnd,
        approver_vote=mine,
        result=policy.result_of(root.value.data) if root.state == "resolved" else None,
        votes=[r.value.data if r is not None else None for r in records],
    )


DecideOutcome = Literal["recorded", "already", "closed", "unknown"]


async def decide(
    client: Client, vote_id: str, value: dict[str, Any], *, timeout: float
) -> tuple[DecideOutcome, Approval | None]:
    """Record an approver's vote. ``recorded`` if it counted; ``already`` if they had
    decided; ``closed`` if the request had ended; ``unknown`` if there is no such vote."""
    before = await read(client, vote_id, timeout=timeout)
    if before is None:
        return "unknown", None
    if before.voted is not None:
        return "already", before
    if before.closed is not None:
        return "closed", before
    record = await _bounded(client.promises.resolve(vote_id, Value(data=value)), timeout)
    after = replace(before, approver_vote=record)
    if record.value.data == value:
        return "recorded", after
    return ("already" if policy.is_vote(record.value.data) else "closed"), after


async def cancel(
    client: Client, workflow_id: str, *, by: str, reason: str, timeout: float
) -> tuple[bool, RunStatus] | None:
    """Cancel a pending request: ``(True, status)`` if this canceled it, ``(False, status)``
    if it had already ended, ``None`` if there is no such request."""
    found = await request_of(client, workflow_id, timeout=timeout)
    if found is None:
        return None
    root, req = found
    if root.state != "pending":
        return False, RunStatus.of(root)
    value = Value(data=policy.canceled_value(by=by, reason=reason, at_ms=now_ms()))
    records = await asyncio.gather(
        *(_bounded(client.promises.resolve(id, value), timeout) for id in policy.layout(req).ids())
    )
    canceled = any(r.value.data == value.data for r in records)
    return canceled, RunStatus(workflow_id, "pending")


async def pending(client: Client, *, timeout: float, limit: int = 100) -> list[tuple[ApprovalRequest, dict[str, Any]]]:
    """Requests still waiting, each with its current round's progress (who has not decided)."""
    page = await _bounded(
        client.promises.search("pending", {"resonate:scope": "global", runs.KIND_TAG: policy.WORKFLOW}, limit, None),
        timeout,
    )
    out = []
    for root in page.promises:
        data = root.param.data
        if not isinstance(data, dict) or not data.get("args"):
            continue
        req = ApprovalRequest.from_json(data["args"][0])
        active = await active_round(client, req, timeout=timeout)
        records = await _values(client, active.vote_ids, timeout)
        values = [r.value.data if r is not None else None for r in records]
        out.append((req, {"round": active.index, **policy.progress(active, values)}))
    return out
