"""The approval workflow: one durable run per approval request.

    approval(request)
      1. create one vote promise per approver and round, in the order
         :func:`hitl.model.policy.layout` fixes (so the functions can find them)
      2. round 0: schedule its deadline and reminders as deferred runs; ask each
         approver once per channel (a durable step each)
      3. wait until the votes decide (:func:`hitl.model.policy.tally`: k of n, veto, a
         cancel, the deadline), and record how the round ended in a durable step; on
         expiry apply ``on_expiry``: expire, a default decision, or escalate to round 1
         and wait again
      4. close the votes still open (their links then show the outcome); once every
         vote is settled, compute the result, start its delivery to each
         ``on_decision`` target (:mod:`hitl.delivery`), and return it

Waiting holds nothing: the run suspends on its open votes and the server
resumes it when one settles. Approvers settle their votes through ``unblock``;
a cancel and a round's deadline settle the open ones with a marker, so the run
waits on votes alone and one settled vote is one resume.

Why deferred runs for time: a bare ``ctx.promise()`` carries no
``resonate:target``, and neither the real server nor any simulation times it
out in the background. A ``ctx.sleep`` timer would fire, but the SDK
re-delivers a pending timer's task to a worker every lease period until it is
due: a steady load for every waiting request. A run created with
``resonate:delay`` (see :mod:`hitl.client.runs`) is held by the server, costing
nothing, until its time; then it settles the round's open votes as expired.

One request, one result. A run is executed again on every resume and after
every crash, and votes keep arriving while it runs, so two executions can read
different votes. Three rules make every execution agree with the first that
decided: how a round ended (decision, ``by``, ``decided_at``, which votes it
counted, which were still open) is the result of a durable step, read back by
every later execution; the result is computed only from settled votes, which
never change again, after the run has closed the open ones (an execution that
read a vote open suspends instead, and the next one reads it settled, so the run
never returns while a promise it awaits is open); and a vote recorded after its
round ended is in the audit, marked ``late``, in every copy alike. So what a
caller is delivered is the stored result, byte for byte. A vote promise that
holds anything but a vote for its approver (:class:`~hitl.model.records.Invalid`)
decides nothing; if no vote is left open, the round waits for its deadline on a
durable timer.

Time is fixed at start: the run's own timeout is the sum of the rounds plus
:data:`RUN_MARGIN`, and every replay derives each round's deadline from it.
The SDK times every child out after one day unless told otherwise, so every
promise here names its timeout.
"""

# The steps are run by their registered names (see :func:`register`): given a function,
# ``ctx.run`` wraps it in a new DurableFunction at every call and every replay (its
# signature and annotations: 6% of the worker's CPU per approval in the benchmark); a
# name finds the one built at registration. No ``from __future__ import annotations``
# either: string annotations would be evaluated in each wrapping.

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from resonate.context import Context, ResonateFuture
from resonate.error import Suspended
from resonate.promises import Promises
from resonate.resonate import Resonate
from resonate.retry import Exponential
from resonate.types import Value

from hitl import delivery, inboxes
from hitl.client import runs
from hitl.clock import now_ms
from hitl.inboxes import Inboxes
from hitl.model import inbox, policy
from hitl.model.policy import WORKFLOW
from hitl.model.records import (
    Canceled,
    Closed,
    Decision,
    Expired,
    Invalid,
    Result,
    RoundEnd,
    VoteState,
    promise_vote,
    vote_state,
)
from hitl.model.request import ApprovalRequest
from hitl.notify.dispatcher import Notifier

logger = logging.getLogger("hitl.approval")

EXPIRY = "approval_expiry"
REMINDER = "approval_reminder"

#: The registered names of the steps.
SCHEDULE_ROUND = "approval.schedule_round"
ROUND_END = "approval.round_end"
NOTIFY = "approval.notify"
CLOSE = "approval.close"
EXPIRE = "approval.expire"
OPEN_VOTES = "approval.open_votes"

#: Retries of a notification step: 1 s doubling to 5 min, for about a day.
NOTIFY_RETRY = Exponential(delay=1, factor=2, max_delay=300, max_retries=300)


async def _settled(future: ResonateFuture[Any]) -> tuple[str, object]:
    """``(state, value)`` of a vote promise: ``("pending", None)`` while it is open,
    ``("rejected", None)`` when rejected or timed out (hitl never rejects a vote).

    Every vote promise still open when this execution created it is awaited by
    the run (the SDK registers it at creation), whether this reads it or not.
    """
    try:
        return "resolved", await future
    except Suspended:
        return "pending", None
    except Exception:  # rejected or timed out: not a value anyone may decide with
        return "rejected", None


async def approval(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    req = ApprovalRequest.from_json(request)
    lay = policy.layout(req)
    timeout_at = ctx.info.timeout_at
    start = policy.started_at(timeout_at, lay)

    # Each vote lives as long as the run: asked for the run's whole life, the SDK caps it at
    # the run's deadline. (``ctx.promise`` takes its timeout as an argument and ignores
    # ``ctx.options``; without one a vote would time out after a day.)
    lifetime = policy.run_timeout(req)
    votes = [ctx.promise(timeout=lifetime) for _ in lay.ids()]
    created = [await v.id() for v in votes]
    assert created == lay.ids(), f"promise layout drifted: {created} != {lay.ids()}"
    read = dict(zip(created, [await _settled(v) for v in votes], strict=True))
    open_now = [id for id, (state, _) in read.items() if state == "pending"]
    approver_of = lay.approver_of()
    states = {
        id: promise_vote(state, value, approver_of[id], signed_in_only=req.sign_in_required)
        for id, (state, value) in read.items()
    }

    final: Decision | None = None
    ends: list[RoundEnd] = []
    for rnd in lay.rounds:
        ends_at = lay.ends_at(start, rnd.index)
        await ctx.run(SCHEDULE_ROUND, req, rnd.index, ends_at, timeout_at)
        await _ask(ctx, req, rnd, ends_at, reminder=None)
        end = await _round_end(ctx, req, rnd, ends_at, states, open_now)
        ends.append(end)
        final = end.decision if end.decision is not None else policy.at_deadline(req, rnd, ends_at)
        if final is not None:
            break  # else escalated: the next round asks others
    assert final is not None

    if ends[-1].open:
        await ctx.run(CLOSE, list(ends[-1].open), final.to_json(), req, start)
        if open_now:  # closed now, but this execution read them open: read them again, settled
            raise Suspended  # (the server answers at once: they are settled, so the run goes on)
    counted = {id for end in ends for id in end.counted}
    result = Result(final, policy.audit(lay, states, counted))
    if req.on_decision:  # the decision is final: deliver it to whoever asked (hitl.delivery)
        await ctx.run(delivery.DISPATCH, req.workflow_id, [t.to_json() for t in req.on_decision], result.to_json())
    return result.to_json()


async def _round_end(
    ctx: Context,
    req: ApprovalRequest,
    rnd: policy.Round,
    ends_at: int,
    states: dict[str, VoteState],
    open_now: list[str],
) -> RoundEnd:
    """How ``rnd`` ended, the same in every execution (or suspend until it has).

    The first execution that sees the round end records how, in a durable step
    (:func:`round_end`); every later one reads that record back, whatever votes
    were recorded in between: a decision, once made, never changes.
    """
    ended = policy.tally(rnd, [states[id] for id in rnd.vote_ids])
    if ended is None:
        if any(states[id] is None for id in rnd.vote_ids):
            raise Suspended  # the run suspends on every open vote; any settle resumes it
        # Every vote is settled and none decides (their promises hold values that are not
        # votes): only the deadline can end the round, and no vote is left to carry it.
        await ctx.sleep(timedelta(milliseconds=max(ends_at - now_ms(), 0)))
        ended = policy.RoundExpired()
    invalid = [(id, s.reason) for id in rnd.vote_ids if isinstance(s := states[id], Invalid)]
    counted = [id for id in rnd.vote_ids if states[id] is not None]
    decision = None if isinstance(ended, policy.RoundExpired) else ended
    frozen = RoundEnd(decision, tuple(counted), tuple(open_now))
    return RoundEnd.from_json(await ctx.run(ROUND_END, req.workflow_id, rnd.index, frozen.to_json(), invalid))


async def _ask(ctx: Context, req: ApprovalRequest, rnd: policy.Round, ends_at: int, *, reminder: int | None) -> None:
    """Ask each approver of ``rnd`` once on every channel (durable steps, in parallel)."""
    steps = [
        ctx.options(retry_policy=NOTIFY_RETRY).run(
            NOTIFY, req, channel.type, channel.url, approver, vote_id, ends_at, reminder
        )
        for approver, vote_id in zip(rnd.approvers, rnd.vote_ids, strict=True)
        for channel in req.notify
    ]
    for step in steps:
        await step


# -- steps ---------------------------------------------------------------------------


async def schedule_round(ctx: Context, req: ApprovalRequest, index: int, ends_at: int, run_timeout_at: int) -> None:
    """Create the round's deferred runs (its expiry at ``ends_at``, its reminders before) and,
    with inboxes, its approvers' entries (:mod:`hitl.inboxes`)."""
    promises = ctx.get_dependency(Promises)
    group = ctx.get_dependency(runs.Group).name
    wf = req.workflow_id
    lay = policy.layout(req)
    rnd = lay.rounds[index]
    entries: list[str] = []
    if ctx.get_dependency(Inboxes).enabled:
        mine = [e for e in inbox.entries(req, policy.started_at(run_timeout_at, lay)) if e.round == index]
        await inboxes.ask(promises, mine, run_timeout_at)
        entries = [e.id for e in mine]
    # The expiry run carries the vote ids (and entry ids) alone, not the request: the server holds
    # its param for as long as the request waits (issue 5: server memory per waiting request).
    args: tuple[Any, ...] = (list(rnd.vote_ids), entries) if entries else (list(rnd.vote_ids),)
    await runs.create(
        promises, f"{wf}:r{index}.expiry", EXPIRY, args,
        group=group, timeout_at=run_timeout_at, parent=wf, not_before=ends_at,
    )  # fmt: skip
    for before in rnd.remind:
        await runs.create(
            promises, f"{wf}:r{index}.remind{before}", REMINDER, (req.to_json(), index, ends_at, before),
            group=group, timeout_at=run_timeout_at, parent=wf, not_before=ends_at - 1000 * before,
        )  # fmt: skip


async def notify(
    ctx: Context,
    req: ApprovalRequest,
    channel: str,
    url: str | None,
    approver: str,
    vote_id: str,
    ends_at: int,
    reminder: int | None,
) -> None:
    await ctx.get_dependency(Notifier).ask(
        req, channel=channel, url=url, approver=approver, promise_id=vote_id, deadline_at_ms=ends_at, reminder=reminder
    )


async def round_end(
    ctx: Context, workflow_id: str, index: int, end: dict[str, Any], invalid: list[tuple[str, str]]
) -> dict[str, Any]:
    """Record how round ``index`` ended (the step's result is what every execution reads).

    Logs, once, each vote promise of the round that holds something other than a vote.
    """
    for vote_id, reason in invalid:
        logger.error(
            "a vote promise holds a value that is not a vote: it decides nothing",
            extra={"fields": {"workflow_id": workflow_id, "promise_id": vote_id, "round": index, "error": reason}},
        )
    return end


async def close(
    ctx: Context, ids: Sequence[str], final: dict[str, Any], req: ApprovalRequest, started_at_ms: int
) -> None:
    """Settle every vote of the request still open, so its links show the outcome (and, with
    inboxes, their entries: the request leaves its approvers' inboxes)."""
    promises = ctx.get_dependency(Promises)
    marker = Value(data=Closed(Decision.from_json(final)).to_json())
    settled = [(id, await promises.resolve(id, marker)) for id in ids]
    if ctx.get_dependency(Inboxes).enabled:
        entry_of = {e.vote_id: e.id for e in inbox.entries(req, started_at_ms)}
        await inboxes.close(promises, [(entry_of[id], record) for id, record in settled if id in entry_of])


async def expire(ctx: Context, vote_ids: list[str], entry_ids: list[str] | None = None) -> None:
    """Settle the open votes as expired (a vote already cast keeps its decision), and their entries."""
    promises = ctx.get_dependency(Promises)
    value = Value(data=Expired(now_ms()).to_json())
    settled = [await promises.resolve(id, value) for id in vote_ids]
    if entry_ids:
        await inboxes.close(promises, zip(entry_ids, settled, strict=True))


async def open_votes(ctx: Context, vote_ids: list[str]) -> list[str] | None:
    """The votes still open, or ``None`` once the round has ended (expired, canceled or closed)."""
    promises = ctx.get_dependency(Promises)
    records = [await promises.get(id) for id in vote_ids]
    if any(isinstance(vote_state(r.value.data), Expired | Canceled | Closed) for r in records if r.state != "pending"):
        return None
    return [r.id for r in records if r.state == "pending"]


# -- the deferred runs -----------------------------------------------------------------


async def approval_expiry(ctx: Context, vote_ids: list[str], entry_ids: list[str] | None = None) -> None:
    """Runs at a round's deadline: settle its open votes as expired (first settle wins)."""
    await ctx.run(EXPIRE, vote_ids, entry_ids)


async def approval_reminder(ctx: Context, request: dict[str, Any], index: int, ends_at: int, before: int) -> None:
    """Runs ``before`` seconds ahead of a round's deadline: remind who has not decided."""
    req = ApprovalRequest.from_json(request)
    lay = policy.layout(req)
    rnd = lay.rounds[index]
    waiting = await ctx.run(OPEN_VOTES, list(rnd.vote_ids))
    if not waiting:
        return
    asked = [(a, v) for a, v in zip(rnd.approvers, rnd.vote_ids, strict=True) if v in waiting]
    steps = [
        ctx.options(retry_policy=NOTIFY_RETRY).run(NOTIFY, req, c.type, c.url, a, v, ends_at, before)
        for a, v in asked
        for c in req.notify
    ]
    for step in steps:
        await step


def register(resonate: Resonate) -> None:
    """Register the workflow, its deferred runs, its steps and the delivery runs on a worker's client."""
    resonate.register(approval, name=WORKFLOW)
    resonate.register(approval_expiry, name=EXPIRY)
    resonate.register(approval_reminder, name=REMINDER)
    resonate.register(schedule_round, name=SCHEDULE_ROUND)
    resonate.register(notify, name=NOTIFY)
    resonate.register(round_end, name=ROUND_END)
    resonate.register(close, name=CLOSE)
    resonate.register(expire, name=EXPIRE)
    resonate.register(open_votes, name=OPEN_VOTES)
    delivery.register(resonate)
