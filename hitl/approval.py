"""The approval workflow: one durable run per approval request.

    approval(request)
      1. create one vote promise per approver and round, in the order
         :func:`hitl.model.policy.layout` fixes (so the functions can find them)
      2. round 0: schedule its deadline and reminders as deferred runs; ask each
         approver once per channel (a durable step each)
      3. wait until the votes decide (:func:`hitl.model.policy.tally`: k of n, veto, a
         cancel, the deadline); on expiry apply ``on_expiry``: expire, a default
         decision, or escalate to round 1 and wait again
      4. close the votes still open (their links then show the outcome), start the
         delivery of the decision to each ``on_decision`` target (:mod:`hitl.delivery`),
         return

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

Time is fixed at start: the run's own timeout is the sum of the rounds plus
:data:`RUN_MARGIN`, and every replay derives each round's deadline from it.
The SDK caps every child at one day unless told otherwise, so every promise
here names its timeout.
"""

# The steps are run by their registered names (see :func:`register`): given a function,
# ``ctx.run`` wraps it in a new DurableFunction at every call and every replay (its
# signature and annotations: 6% of the worker's CPU per approval in the benchmark); a
# name finds the one built at registration. No ``from __future__ import annotations``
# either: string annotations would be evaluated in each wrapping.

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from resonate.context import Context, ResonateFuture
from resonate.error import Suspended
from resonate.promises import Promises
from resonate.resonate import Resonate
from resonate.retry import Exponential
from resonate.types import Value

from hitl import delivery
from hitl.client import runs
from hitl.clock import now_ms
from hitl.model import policy
from hitl.model.policy import RUN_MARGIN, WORKFLOW, RoundExpired
from hitl.model.records import Closed, Decision, Expired, RecordError, Result, Vote, VoteState, vote_state
from hitl.model.request import ApprovalRequest
from hitl.notify.dispatcher import Notifier

EXPIRY = "approval_expiry"
REMINDER = "approval_reminder"

#: The registered names of the steps.
SCHEDULE_ROUND = "approval.schedule_round"
NOTIFY = "approval.notify"
CLOSE = "approval.close"
EXPIRE = "approval.expire"
OPEN_VOTES = "approval.open_votes"

#: Retries of a notification step: 1 s doubling to 5 min, for about a day.
NOTIFY_RETRY = Exponential(delay=1, factor=2, max_delay=300, max_retries=300)


def started_at(run_timeout_at_ms: int, lay: policy.Layout) -> int:
    """When the run started (ms), derived from its fixed timeout."""
    return run_timeout_at_ms - 1000 * lay.total_seconds - int(RUN_MARGIN.total_seconds() * 1000)


async def _peek(future: ResonateFuture[Any]) -> tuple[bool, VoteState]:
    """``(settled, state)`` of a vote: ``(False, None)`` while open (the run will suspend on it)."""
    try:
        return True, vote_state(await future)
    except Suspended:
        return False, None
    except RecordError:
        raise
    except Exception:  # a promise that timed out: treat as expired
        return True, Expired(0)


async def approval(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    req = ApprovalRequest.from_json(request)
    lay = policy.layout(req)
    timeout_at = ctx.info.timeout_at
    start = started_at(timeout_at, lay)
    remaining = timedelta(milliseconds=max(timeout_at - now_ms(), 1))

    votes = [[ctx.options(timeout=remaining).promise() for _ in rnd.vote_ids] for rnd in lay.rounds]
    futures = [v for vs in votes for v in vs]
    created = [await f.id() for f in futures]
    assert created == lay.ids(), f"promise layout drifted: {created} != {lay.ids()}"

    final: Decision | None = None
    for rnd in lay.rounds:
        ends_at = lay.ends_at(start, rnd.index)
        await ctx.run(SCHEDULE_ROUND, req, rnd.index, ends_at, timeout_at)
        await _ask(ctx, req, rnd, ends_at, reminder=None)

        ended = policy.tally(rnd, [(await _peek(v))[1] for v in votes[rnd.index]])
        if ended is None:
            raise Suspended  # the run suspends on every open vote; any settle resumes it
        if isinstance(ended, RoundExpired):
            final = policy.at_deadline(req, rnd, ends_at)
            if final is None:  # escalated: the next round asks others
                continue
        else:
            final = ended
        break
    assert final is not None

    peeked = [await _peek(f) for f in futures]
    result = Result(final, policy.audit([state for _, state in peeked]))
    still_open = [id for id, (settled, _) in zip(created, peeked, strict=True) if not settled]
    if still_open:
        await ctx.run(CLOSE, still_open, final.to_json())
    if req.on_decision:  # the decision is final: deliver it to whoever asked (hitl.delivery)
        await ctx.run(delivery.DISPATCH, req.workflow_id, [t.to_json() for t in req.on_decision], result.to_json())
    return result.to_json()


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
    """Create the round's deferred runs: its expiry at ``ends_at``, its reminders before."""
    promises = ctx.get_dependency(Promises)
    group = ctx.get_dependency(runs.Group).name
    wf = req.workflow_id
    rnd = policy.layout(req).rounds[index]
    # The expiry run carries the vote ids alone, not the request: the server holds its
    # param for as long as the request waits (issue 5: server memory per waiting request).
    await runs.create(
        promises, f"{wf}:r{index}.expiry", EXPIRY, (list(rnd.vote_ids),),
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


async def close(ctx: Context, ids: Sequence[str], final: dict[str, Any]) -> None:
    """Settle every promise of the request still open, so its links show the outcome."""
    promises = ctx.get_dependency(Promises)
    marker = Value(data=Closed(Decision.from_json(final)).to_json())
    for id in ids:
        await promises.resolve(id, marker)


async def expire(ctx: Context, vote_ids: list[str]) -> None:
    """Settle the open votes as expired (a vote already cast keeps its decision)."""
    promises = ctx.get_dependency(Promises)
    value = Value(data=Expired(now_ms()).to_json())
    for id in vote_ids:
        await promises.resolve(id, value)


async def open_votes(ctx: Context, vote_ids: list[str]) -> list[str] | None:
    """The votes still open, or ``None`` once the round has ended."""
    promises = ctx.get_dependency(Promises)
    records = [await promises.get(id) for id in vote_ids]
    if any(not isinstance(vote_state(r.value.data), Vote) for r in records if r.state != "pending"):
        return None  # expired, canceled or closed
    return [r.id for r in records if r.state == "pending"]


# -- the deferred runs -----------------------------------------------------------------


async def approval_expiry(ctx: Context, vote_ids: list[str]) -> None:
    """Runs at a round's deadline: settle its open votes as expired (first settle wins)."""
    await ctx.run(EXPIRE, vote_ids)


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
    resonate.register(close, name=CLOSE)
    resonate.register(expire, name=EXPIRE)
    resonate.register(open_votes, name=OPEN_VOTES)
    delivery.register(resonate)
