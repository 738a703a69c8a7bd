"""What the edges (functions, CLI) ask of the Resonate server, over a send-only client.

Every call is bounded by ``timeout`` seconds; an unreachable, slow or failing
server raises :class:`ServerUnavailable` (the edges answer 503), so no
request hangs and no stack trace reaches a caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal

from resonate.error import ServerError
from resonate.ids import origin_of
from resonate.resonate import Resonate
from resonate.types import PromiseRecord, Value
from resonate_base.error import ResonateError

from hitl import approval, runs
from hitl.clock import now_ms
from hitl.request import ApprovalRequest

RunState = Literal["pending", "done", "failed"]


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
            return cls(record.id, "done", approval.result_of(record.value.data))
        return cls(record.id, "failed", {"state": record.state})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"workflow_id": self.workflow_id, "status": self.status}
        if self.result is not None:
            out["result"] = self.result
        return out


@dataclass(frozen=True, slots=True)
class Approval:
    """A decision promise and the request it decides."""

    record: PromiseRecord
    request: ApprovalRequest

    @property
    def decided(self) -> dict[str, Any] | None:
        if self.record.state == "pending":
            return None
        return approval.result_of(self.record.value.data)


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


async def _get(client: Resonate, id: str, timeout: float) -> PromiseRecord | None:
    try:
        return await _bounded(client.promises.get(id), timeout)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise


async def start(client: Resonate, group: str, req: ApprovalRequest, *, timeout: float) -> RunStatus:
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
            approval.WORKFLOW,
            (payload,),
            group=group,
            timeout_at=now_ms() + int(approval.run_timeout(req).total_seconds() * 1000),
        ),
        timeout,
    )
    stored = record.param.data if isinstance(record.param.data, dict) else {}
    if stored.get("func") != approval.WORKFLOW or list(stored.get("args") or [])[:1] != [payload]:
        raise IdConflict(id)
    return RunStatus.of(record)


async def status(client: Resonate, workflow_id: str, *, timeout: float) -> RunStatus | None:
    record = await _get(client, workflow_id, timeout)
    if record is None or "resonate:target" not in record.tags or ":" in record.id:
        return None
    return RunStatus.of(record)


async def read(client: Resonate, promise_id: str, *, timeout: float) -> Approval | None:
    """The decision promise ``promise_id`` and its request, or ``None`` when there is none."""
    record = await _get(client, promise_id, timeout)
    if record is None or record.tags.get("resonate:external") != "true":
        return None
    root = await _get(client, origin_of(promise_id), timeout)
    args = root.param.data.get("args") if root is not None and isinstance(root.param.data, dict) else None
    if not args:
        return None
    return Approval(record, ApprovalRequest.from_json(args[0]))


async def decide(
    client: Resonate, promise_id: str, value: dict[str, Any], *, timeout: float
) -> tuple[bool, dict[str, Any]] | None:
    """Settle the decision with ``value``: ``(True, value)`` if it was first, ``(False, first)``
    if another decision came before, ``None`` if there is no such promise."""
    try:
        record = await _bounded(client.promises.resolve(promise_id, Value(data=value)), timeout)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise
    return record.value.data == value, approval.result_of(record.value.data)
