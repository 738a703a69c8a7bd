"""The caller's workflow: deploy a service, but only once a person approved it.

    deploy(ctx, service, version, approvers)
      1. a durable promise of its own (``ctx.promise(timeout=...)``, outliving the approval's
         deadline): hitl resolves it when the request ends
      2. a durable step starts the approval over HTTP, naming that promise in ``on_decision``;
         a replay re-sends the same ``workflow_id`` and body, which starts nothing new
      3. ``await`` the promise: the run suspends, holding no process, thread or connection,
         for seconds or months, and resumes on whichever worker is up when the person decides
      4. deploy (a durable step, once) if approved; the result says what happened

This file is the whole pattern; :mod:`examples.caller_workflow.worker` runs it.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate

from hitl.model.request import parse_duration

DEPLOY = "deploy"
REQUEST_APPROVAL = "deploy.request_approval"
SHIP = "deploy.ship"


@dataclass(frozen=True)
class Hitl:
    """Where hitl's ``start`` function answers (a dependency of the steps)."""

    start_url: str
    #: Extra headers, e.g. ``Authorization: Bearer <identity token>`` for a Cloud Run ``start``.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Ledger:
    """Where the deploy step writes what it shipped (stands in for the real deploy)."""

    path: Path


async def deploy(
    ctx: Context, service: str, version: str, approvers: list[str], deadline: str = "24h"
) -> dict[str, Any]:
    # hitl resolves it with the result when the request ends. It must outlive the approval:
    # the SDK's default timeout is a day, and hitl refuses (400) a promise that times out
    # before the request's deadline plus an hour. A day's margin also covers workers down.
    decision = ctx.promise(timeout=timedelta(seconds=parse_duration(deadline)) + timedelta(days=1))
    promise_id = await decision.id()
    approval_id = f"{ctx.info.id}-approval"  # one approval per deploy run; no ':' (hitl ids forbid it)
    await ctx.run(REQUEST_APPROVAL, approval_id, promise_id, service, version, approvers, deadline)
    result: dict[str, Any] = await decision
    if result["decision"] != "approved":
        return {"deployed": False, "decision": result["decision"], "by": result["by"], "comment": result["comment"]}
    await ctx.run(SHIP, ctx.info.id, service, version)
    return {"deployed": True, "decision": "approved", "by": result["by"], "comment": result["comment"]}


async def request_approval(
    ctx: Context, approval_id: str, promise_id: str, service: str, version: str, approvers: list[str], deadline: str
) -> None:
    """Start the approval (idempotent by ``workflow_id``: a replay or a retry starts nothing new)."""
    hitl = ctx.get_dependency(Hitl)
    body = {
        "workflow_id": approval_id,
        "approvers": approvers,
        "subject": f"Deploy {service} {version} ({approval_id})",
        "details": {"service": service, "version": version},
        "deadline": deadline,
        "on_decision": [{"type": "promise", "id": promise_id}],
    }
    status, answer = await asyncio.to_thread(_post, hitl, body)
    if status not in (200, 202):  # 4xx: the request is wrong and no retry mends it
        raise ValueError(f"hitl refused the approval request: {status} {answer}")


def _post(hitl: Hitl, body: dict[str, Any]) -> tuple[int, str]:
    if not hitl.start_url.startswith(("https://", "http://")):
        raise ValueError(f"HITL_START_URL must be an http(s) URL, got {hitl.start_url!r}")
    request = urllib.request.Request(  # noqa: S310 - checked above: the operator's own http(s) URL
        hitl.start_url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **dict(hitl.headers)},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - as above
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise  # the step is retried (the SDK's default policy)
        return exc.code, exc.read().decode()


async def ship(ctx: Context, run_id: str, service: str, version: str) -> None:
    """The deploy itself: here, a line in the ledger."""
    ledger = ctx.get_dependency(Ledger)
    line = json.dumps({"run": run_id, "service": service, "version": version, "at": datetime.now(UTC).isoformat()})
    await asyncio.to_thread(_append, ledger.path, line)


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


def register(resonate: Resonate) -> None:
    resonate.register(deploy, name=DEPLOY)
    resonate.register(request_approval, name=REQUEST_APPROVAL)
    resonate.register(ship, name=SHIP)
