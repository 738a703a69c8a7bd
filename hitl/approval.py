"""The approval workflow: one durable run per approval request.

    approval(request)
      1. create the decision promise (an external promise anyone with its id can settle)
      2. schedule ``approval_expiry`` as a run deferred to the deadline: it settles
         the decision as ``expired`` then (first decision wins)
      3. email each approver once, as a durable step per approver
      4. wait on the decision promise (the worker holds nothing while it waits)
      5. return the decision

Why a deferred run: a bare ``ctx.promise()`` carries no ``resonate:target``,
and neither the real server nor any simulation times such a promise out in
the background; only targeted promises fire by themselves. A ``ctx.sleep``
timer would fire, but the SDK re-delivers a pending timer's task to a worker
every lease period until it is due (60 s by default: a steady load for every
waiting request). A run created with ``resonate:delay`` (see :mod:`hitl.runs`)
is held by the server, costing nothing, until the deadline; then it settles
the decision promise like any approver would.

Deadlines are absolute and fixed at start: the run's own timeout is the
deadline plus :data:`RUN_MARGIN`, and every replay derives the deadline from
it, so no replay can move it. The SDK caps every child at a default of one
day unless told otherwise, so every child here names its timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from resonate.context import Context
from resonate.ids import origin_of
from resonate.promises import Promises
from resonate.resonate import Resonate
from resonate.retry import Exponential
from resonate.types import Value

from hitl import runs
from hitl.clock import iso, now_ms
from hitl.notifier import Notifier
from hitl.request import ApprovalRequest

#: How long a run outlives its deadline: room for the expiry to be applied
#: even if every worker was down at the deadline itself.
RUN_MARGIN = timedelta(days=1)

WORKFLOW = "approval"
EXPIRY = "approval_expiry"

@dataclass(frozen=True)
class Group:
    """The worker group runs are created on (a dependency of the workflow's steps)."""

    name: str


#: Retries of an email step: 1 s doubling to 5 min, for about a day.
EMAIL_RETRY = Exponential(delay=1, factor=2, max_delay=300, max_retries=300)


def run_timeout(request: ApprovalRequest) -> timedelta:
    """The run's own timeout: its deadline plus the margin."""
    return timedelta(seconds=request.deadline) + RUN_MARGIN


def deadline_of(run_timeout_at_ms: int) -> int:
    """The absolute deadline (ms since the epoch) of a run that times out at ``run_timeout_at_ms``."""
    return run_timeout_at_ms - int(RUN_MARGIN.total_seconds() * 1000)


def decision_value(decision: str, by: str | None, comment: str, at_ms: int, **extra: Any) -> dict[str, Any]:
    """The value a decision promise is resolved with (and the run's result)."""
    return {"decision": decision, "by": by, "comment": comment, "decided_at": iso(at_ms), **extra}


def result_of(value: Any) -> dict[str, Any]:
    """The public part of a decision value (drops bookkeeping such as the click id)."""
    if not isinstance(value, dict):
        return {"decision": "expired", "by": None, "comment": "", "decided_at": None}
    return {k: value.get(k) for k in ("decision", "by", "comment", "decided_at")}


async def approval(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    req = ApprovalRequest.from_json(request)
    deadline_at = deadline_of(ctx.info.timeout_at)
    remaining = timedelta(milliseconds=max(ctx.info.timeout_at - now_ms(), 1))

    decision = ctx.options(timeout=remaining).promise()
    promise_id = await decision.id()

    await ctx.run(schedule_expiry, promise_id, deadline_at, ctx.info.timeout_at)

    sends = [
        ctx.options(retry_policy=EMAIL_RETRY).run(send_approval_email, req, promise_id, approver, deadline_at)
        for approver in req.approvers
    ]
    for sent in sends:
        await sent

    try:
        value = await decision
    except Exception:  # the decision promise itself timed out: the deadline passed unnoticed
        return decision_value("expired", None, "", deadline_at)
    return result_of(value)


async def approval_expiry(ctx: Context, promise_id: str, deadline_at: int) -> None:
    """Runs at the deadline: settle the decision as expired (if nobody decided first)."""
    await ctx.run(settle_expired, promise_id, deadline_at)


async def schedule_expiry(ctx: Context, promise_id: str, deadline_at: int, run_timeout_at: int) -> None:
    await runs.create(
        ctx.get_dependency(Promises),
        f"{promise_id}.expiry",
        EXPIRY,
        (promise_id, deadline_at),
        group=ctx.get_dependency(Group).name,
        timeout_at=run_timeout_at,
        parent=origin_of(promise_id),
        not_before=deadline_at,
    )


async def send_approval_email(
    ctx: Context, req: ApprovalRequest, promise_id: str, approver: str, deadline_at: int
) -> None:
    await ctx.get_dependency(Notifier).approval_email(req, promise_id, approver, deadline_at)


async def settle_expired(ctx: Context, promise_id: str, deadline_at: int) -> None:
    promises = ctx.get_dependency(Promises)
    await promises.resolve(promise_id, Value(data=decision_value("expired", None, "", deadline_at)))


def register(resonate: Resonate) -> None:
    """Register the workflow and its expiry timer on a worker's client."""
    resonate.register(approval, name=WORKFLOW)
    resonate.register(approval_expiry, name=EXPIRY)
