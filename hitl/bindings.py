"""Which promises a request may settle: a caller's own, bound to that request alone.

A request's ``on_decision`` names promise ids, and the Resonate server lets any
holder of its token settle any promise: it does not check who settles what. So
hitl does, with two rules:

1. **A request never settles a promise of a request**: any approval run's root,
   votes, deferred runs, delivery runs or steps (everything in the lineage of an
   approval run), nor a claim (below), nor an inbox's entry or fence
   (:mod:`hitl.model.inbox`).
2. **A caller's promise is bound to the first request that names it.** The
   binding is a promise of its own on the server, the target's *claim*
   (:func:`hitl.model.policy.claim_id`): ``start`` creates it before the run
   exists, with the request's id in its param. The server keeps the first create
   of an id and a param never changes, so the binding survives crashes and
   replays and cannot be taken over; another request naming the promise is
   refused. A delivery settles a promise only when its claim names the delivering
   request.

:func:`bind` is ``start``'s side: one read of each target (it must exist, be
pending, not be a request's, and outlive the request) and one create of its
claim: two calls per target, each kind made for all targets at once (the reads
with the run's, which tells a retried ``start``): two round trips. :func:`check`
is the delivery's side, just before it settles: the claim names this request, and
the target is not a request's (its lineage's root is read: a vote carries no tag
of hitl's, since the SDK cannot tag ``ctx.promise()``), whenever the target was
created.

Predictable ids: a stranger who names a caller's promise first (it must exist by
then) owns its binding; the caller's own ``start`` is then refused loudly (409),
never answered by the stranger's request in silence.
"""

from __future__ import annotations

import asyncio

from resonate.ids import origin_of
from resonate.promises import Promises
from resonate.types import PromiseRecord, Value

from hitl.client import runs
from hitl.client.reads import find
from hitl.clock import iso
from hitl.model import inbox, policy
from hitl.model.records import Claim, RecordError
from hitl.model.request import ApprovalRequest, RequestError

#: Tag of a claim promise: the id of the promise it binds.
CLAIM_TAG = "hitl:claim"


class NotBound(Exception):
    """A delivery may not settle this promise; the message says why (no id of another request's)."""


async def bind(promises: Promises, req: ApprovalRequest, *, now_ms: int) -> PromiseRecord | None:
    """Bind every promise target of ``req`` to it, or raise :class:`RequestError`
    (400 for a target it can never deliver to, 409 for one bound to another request).

    Call before the run is created (a refused request must start nothing). The run
    is read with the targets, in the same round trip: if it exists, this is a retried
    ``start`` of a request accepted (and bound) before, and its record is returned,
    nothing bound. Two concurrent starts of the same request both succeed: the claims
    they create are the same.
    """
    targets = [(i, t.address) for i, t in enumerate(req.on_decision) if t.type == "promise"]
    run, *records = await asyncio.gather(*(find(promises, id) for id in (req.workflow_id, *(id for _, id in targets))))
    if run is not None or not targets:
        return run
    due = policy.target_deadline_ms(req, now_ms)
    for (i, _), record in zip(targets, records, strict=True):
        problem = _problem(req, record, due)
        if problem is not None:
            raise RequestError(400, f"on_decision[{i}].id", problem)
    claims = await asyncio.gather(
        *(
            promises.create(
                policy.claim_id(id),
                record.timeout_at if record is not None else now_ms,  # (never None here: refused above)
                Value(data=Claim(req.workflow_id, id).to_json()),
                {CLAIM_TAG: id},
            )
            for (_, id), record in zip(targets, records, strict=True)
        )
    )
    for (i, _), claim in zip(targets, claims, strict=True):
        if _owner(claim) != req.workflow_id:
            raise RequestError(409, f"on_decision[{i}].id", "this promise is already the target of another request")
    return None


def _problem(req: ApprovalRequest, record: PromiseRecord | None, due_ms: int) -> str | None:
    """Why the promise ``record`` can never be ``req``'s target, if it cannot (``None``: it can)."""
    if record is None:
        return "no promise has this id: create it before starting the request"
    if is_hitl(record):
        return "names a promise of an approval request, which no request may settle"
    if record.state != "pending":
        return f"the promise is already settled ({record.state})"
    if record.timeout_at < due_ms:
        return (
            f"the promise times out at {iso(record.timeout_at)}, before the request can end (its deadlines, "
            f"plus {int(policy.TARGET_MARGIN.total_seconds() // 60)} minutes, reach {iso(due_ms)}): "
            "create it with a longer timeout"
        )
    return None


async def check(promises: Promises, workflow_id: str, target: str) -> None:
    """Raise :class:`NotBound` unless the request ``workflow_id`` may settle ``target`` now."""
    if origin_of(target) == workflow_id:
        raise NotBound("the promise is the request's own")
    claim = await find(promises, policy.claim_id(target))
    if claim is None or _owner(claim) != workflow_id:
        raise NotBound("the promise is not bound to this request (another request named it first, or start did not)")
    record = await find(promises, target)
    if record is None:
        raise NotBound("the promise does not exist")
    if is_hitl(record):
        raise NotBound("the promise belongs to an approval request")
    origin = origin_of(target)
    if origin != target:
        root = await find(promises, origin)
        if root is not None and runs.KIND_TAG in root.tags:
            raise NotBound("the promise belongs to an approval request")


def is_hitl(record: PromiseRecord) -> bool:
    """Whether ``record`` is hitl's own by its tags or id: a run of a request, a claim, or an
    inbox's entry or fence (settling one would take a vote out of, or break, a person's inbox)."""
    return (
        runs.KIND_TAG in record.tags
        or CLAIM_TAG in record.tags
        or inbox.TAG in record.tags
        or record.id.endswith(policy.CLAIM_SUFFIX)
        or inbox.is_inbox(record.id)
    )


def _owner(claim: PromiseRecord) -> str | None:
    try:
        return Claim.from_json(claim.param.data).owner
    except RecordError:
        return None
