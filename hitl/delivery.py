"""Delivering a request's decision to its callers: a promise of theirs, or their webhook.

When an approval run ends it creates one run per target of the request's
``on_decision`` (:func:`dispatch`, a durable step): ``<id>:deliver<i>.1``. Each
such run makes one attempt (:func:`attempt`, a durable step):

- a ``promise`` target is resolved with the result (the JSON the status answer
  carries as ``result``): a caller's durable workflow awaiting it resumes;
- a ``webhook`` target is POSTed an ``approval.decided`` event, signed as the
  notification webhooks are (``X-Hitl-Signature``), with an
  ``X-Hitl-Idempotency-Key`` that is the same on every attempt.

A failure that may mend (a 5xx, 408, 429, a timeout, a refused connection, an
unreachable server) schedules the next attempt ``<id>:deliver<i>.<k+1>``
as a run deferred by :func:`hitl.model.policy.delivery_backoff_ms` (or by the
``Retry-After`` of a 429 or 503), until
``HITL_DELIVERY_RETRY_FOR`` (a day by default) after the first: waiting holds
nothing, the server keeps the deferred run. Any other failure (a 4xx, a promise
that does not exist or was already settled by someone else, a URL off the
allowlist, a promise not bound to this request or belonging to a request: see
:mod:`hitl.bindings`) ends the target as ``failed``, logged once as an error. Each attempt
run's result (:class:`~hitl.model.records.Attempt`) says what it did, so the
status answer follows a target's chain of attempts to where it stands.

Invariants: delivery starts once the decision is final and never changes it
(the run's result is computed before, and nothing here writes to the request's
own promises); one target never waits on another (a run each); exactly once
per target, whatever crashes or replays happen: the runs are created by id, a
promise is settled by id (the server keeps the first settle, and ours is known
by its value), and a webhook receiver drops a repeated key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from resonate.context import Context
from resonate.error import ServerError
from resonate.promises import Promises
from resonate.resonate import Resonate
from resonate.retry import Never
from resonate.types import Value
from resonate_base.error import ResonateError

from hitl import bindings, logs
from hitl.client import runs
from hitl.clock import now_ms
from hitl.model.policy import FIRST_RETRY_MS, RUN_MARGIN, delivery_backoff_ms, delivery_id
from hitl.model.records import Attempt
from hitl.model.request import Target
from hitl.notify.urls import NotifyError, check_url
from hitl.notify.webhook import decided_event, post_webhook

logger = logging.getLogger("hitl.delivery")

#: The registered names of the delivery run and its steps.
DELIVERY = "approval_delivery"
DISPATCH = "delivery.dispatch"
ATTEMPT = "delivery.attempt"

#: How long an attempt waits for the request's own result to be readable before it
#: delivers anyway (the approval run fulfils right after it dispatches; a crash between
#: the two leaves the result unreadable until another worker replays the run).
RESULT_READABLE_WITHIN = timedelta(seconds=5)


@dataclass(frozen=True)
class Deliverer:
    """What the delivery steps need (a worker dependency): where webhooks may go, how to sign them."""

    retry_for: timedelta = timedelta(days=1)
    webhook_hosts: frozenset[str] = frozenset()
    webhook_secret: bytes | None = None
    timeout: float = 10.0
    #: Waits between polls of the request's result; tests pass a faster one.
    sleep: Any = field(default=asyncio.sleep)

    async def send(
        self, promises: Promises, workflow_id: str, index: int, target: Target, result: dict[str, Any]
    ) -> None:
        """Deliver once. Raises :class:`Undelivered` (``retry``: whether another attempt may succeed)."""
        if target.type == "promise":
            await _resolve(promises, workflow_id, target.address, result)
            return
        try:
            url = check_url(target.address, allowed_hosts=self.webhook_hosts)
            event = decided_event(
                workflow_id=workflow_id, result=result, idempotency_key=idempotency_key(workflow_id, index)
            )
            await post_webhook(url, event, secret=self.webhook_secret, timeout=self.timeout)
        except NotifyError as exc:
            raise Undelivered(str(exc), retry=not exc.permanent, retry_after=exc.retry_after) from None


class Undelivered(Exception):
    def __init__(self, reason: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        #: Seconds the receiver asked to wait (``Retry-After``), when it did.
        self.retry_after = retry_after


def next_attempt_at(failed_at: int, attempt: int, retry_until: int, retry_after: float | None) -> int | None:
    """When to try again after attempt ``attempt`` failed at ``failed_at`` (ms), or ``None``: no more.

    The backoff (:func:`hitl.model.policy.delivery_backoff_ms`), or the wait the receiver
    asked for with ``Retry-After`` (at least a second), capped by the retry window: a
    receiver asking for more than is left gets one last try at its end.
    """
    if retry_after is None:
        at = failed_at + delivery_backoff_ms(attempt)
    else:
        at = min(failed_at + max(int(retry_after * 1000), FIRST_RETRY_MS), retry_until - 1)
    return at if failed_at < at < retry_until else None


def idempotency_key(workflow_id: str, index: int) -> str:
    """The ``X-Hitl-Idempotency-Key`` of a target's event: the same on every attempt, opaque."""
    return "hitl-" + hashlib.sha256(f"{workflow_id}\0decided\0{index}".encode()).hexdigest()[:32]


async def _resolve(promises: Promises, workflow_id: str, id: str, result: dict[str, Any]) -> None:
    """Resolve the caller's promise ``id`` with ``result``, if it is bound to this request
    and belongs to no request (:func:`hitl.bindings.check`); never another's."""
    try:
        await bindings.check(promises, workflow_id, id)
        record = await promises.resolve(id, Value(data=result))
    except bindings.NotBound as exc:
        raise Undelivered(f"promise {id} may not be settled by this request: {exc}", retry=False) from None
    except ServerError as exc:
        if exc.code == 404:
            raise Undelivered(f"promise {id} does not exist", retry=False) from None
        raise Undelivered(f"the server answered {exc.code}", retry=exc.code >= 500 or exc.code in (408, 429)) from None
    except ResonateError as exc:
        raise Undelivered(f"the server is unreachable: {type(exc).__name__}", retry=True) from None
    if record.state != "resolved" or record.value.data != result:
        raise Undelivered(f"promise {id} was already settled ({record.state})", retry=False)


# -- the approval run's last step ------------------------------------------------------


async def dispatch(ctx: Context, workflow_id: str, targets: list[dict[str, str]], result: dict[str, Any]) -> None:
    """Create the first attempt run of every target (idempotent, by id)."""
    promises = ctx.get_dependency(Promises)
    group = ctx.get_dependency(runs.Group).name
    retry_until = now_ms() + int(ctx.get_dependency(Deliverer).retry_for.total_seconds() * 1000)
    for index, target in enumerate(targets):
        await runs.create(
            promises, delivery_id(workflow_id, index, 1), DELIVERY, (workflow_id, index, target, result, 1, retry_until),
            group=group, timeout_at=retry_until + int(RUN_MARGIN.total_seconds() * 1000), parent=workflow_id,
        )  # fmt: skip


# -- a delivery run: one attempt ----------------------------------------------------------


async def approval_delivery(
    ctx: Context, workflow_id: str, index: int, target: dict[str, str], result: dict[str, Any], attempt: int,
    retry_until: int,
) -> dict[str, Any]:  # fmt: skip
    """Attempt ``attempt`` at delivering ``result`` to ``on_decision[index]``; its outcome is the run's result."""
    outcome: dict[str, Any] = await ctx.options(retry_policy=Never()).run(
        ATTEMPT, workflow_id, index, target, result, attempt, retry_until
    )
    return outcome


async def attempt_once(
    ctx: Context, workflow_id: str, index: int, target: dict[str, str], result: dict[str, Any], attempt: int,
    retry_until: int,
) -> dict[str, Any]:  # fmt: skip
    """One attempt, and the next one scheduled when this one failed in a way that may mend."""
    with logs.bind(workflow_id=workflow_id, promise_id=delivery_id(workflow_id, index, attempt)):
        return await _attempt(ctx, workflow_id, index, target, result, attempt, retry_until)


async def _attempt(
    ctx: Context, workflow_id: str, index: int, target: dict[str, str], result: dict[str, Any], attempt: int,
    retry_until: int,
) -> dict[str, Any]:  # fmt: skip
    deliverer = ctx.get_dependency(Deliverer)
    promises = ctx.get_dependency(Promises)
    parsed = Target("promise", target["id"]) if target["type"] == "promise" else Target("webhook", target["url"])
    await _result_readable(promises, workflow_id, deliverer)
    try:
        await deliverer.send(promises, workflow_id, index, parsed, result)
    except Undelivered as exc:
        at = now_ms()
        next_at = next_attempt_at(at, attempt, retry_until, exc.retry_after)
        fields = {"target": index, "type": parsed.type, "attempt": attempt, "error": exc.reason}
        if exc.retry and next_at is not None:
            logger.warning(
                "decision not delivered; retrying", extra={"fields": {**fields, "retry_in_ms": next_at - at}}
            )
            await runs.create(
                promises, delivery_id(workflow_id, index, attempt + 1), DELIVERY,
                (workflow_id, index, target, result, attempt + 1, retry_until),
                group=ctx.get_dependency(runs.Group).name, timeout_at=retry_until + int(RUN_MARGIN.total_seconds() * 1000),
                parent=workflow_id, not_before=next_at,
            )  # fmt: skip
            return Attempt("retrying", attempt, at, exc.reason).to_json()
        logger.error("decision not delivered, for good", extra={"fields": fields})
        return Attempt("failed", attempt, at, exc.reason).to_json()
    logger.info("decision delivered", extra={"fields": {"target": index, "type": parsed.type, "attempt": attempt}})
    return Attempt("delivered", attempt, now_ms()).to_json()


async def _result_readable(promises: Promises, workflow_id: str, deliverer: Deliverer) -> None:
    """Wait (briefly, bounded) until the request's own result is readable, so whoever the
    delivery wakes finds the request done when they ask."""
    waited = 0.0
    while waited < RESULT_READABLE_WITHIN.total_seconds():
        try:
            if (await promises.get(workflow_id)).state != "pending":
                return
        except (ServerError, ResonateError):
            return  # deliver anyway: the result is in hand
        await deliverer.sleep(0.05)
        waited += 0.05


def register(resonate: Resonate) -> None:
    resonate.register(approval_delivery, name=DELIVERY)
    resonate.register(dispatch, name=DISPATCH)
    resonate.register(attempt_once, name=ATTEMPT)
