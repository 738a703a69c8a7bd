"""Creating a durable run by hand: the promise a worker group executes.

The SDK builds these requests inside ``rpc``; hitl builds two itself so it
can choose what the SDK does not expose: a root run created by a stateless
function with no in-memory subscription, and a run whose first dispatch is
deferred with ``resonate:delay`` (the server holds its task, costing nothing,
until that instant; an SDK ``ctx.sleep`` timer is instead re-delivered to a
worker every lease period while it waits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resonate.ids import origin_of
from resonate.promises import Promises
from resonate.types import PromiseRecord, TaskData, Value

#: Tag naming the function a hitl run executes, so runs can be searched by kind.
KIND_TAG = "hitl:func"


@dataclass(frozen=True)
class Group:
    """The worker group runs are created on (a dependency of the worker's steps)."""

    name: str


def target_of(group: str) -> str:
    """The address that reaches any one worker of ``group``: ``poll://any@<group>``.

    The same string as the SDK's ``resonate.connections.sse.resolve_target``
    (a unit test holds them equal), written here because importing that module
    imports aiohttp, which the functions never need.
    """
    return f"poll://any@{group}"


async def create(
    promises: Promises,
    id: str,
    func: str,
    args: tuple[Any, ...],
    *,
    group: str,
    timeout_at: int,
    parent: str | None = None,
    not_before: int | None = None,
) -> PromiseRecord:
    """Create (idempotently, by ``id``) a run of ``func(*args)`` on ``group``.

    A root run (``parent`` None) is its own origin; a run below ``parent``
    shares its origin. ``not_before`` (ms since the epoch) defers the first
    dispatch until then.
    """
    origin = origin_of(parent or id)
    tags = {
        "resonate:origin": origin,
        "resonate:branch": id,
        "resonate:parent": parent or id,
        "resonate:scope": "global",
        "resonate:target": target_of(group),
        KIND_TAG: func,
    }
    if not_before is not None:
        tags["resonate:delay"] = str(not_before)
    return await promises.create(id, timeout_at, Value(data=TaskData(func=func, args=args, kwargs={}, version=1)), tags)
