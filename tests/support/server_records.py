"""The local Resonate server's own records, read directly: what the public API cannot show.

A run's task tells where the run is: ``acquired`` (a worker is running it),
``suspended`` (waiting for a vote, held by no worker), ``pending`` (due to a
worker) or ``fulfilled`` (done). Its ``version`` moves each time a worker
acquires it, so a larger version means the run was run again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import requests

from devstack.localserver.engine import PROTOCOL_VERSION
from devstack.stack import wait_until
from hitl.client.sendonly import send_only
from hitl.settings import ResonateSettings


def server_call(server_url: str, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
    """One request to the server in its own protocol: (status, data)."""
    envelope = {"kind": kind, "head": {"corrId": "tests", "version": PROTOCOL_VERSION}, "data": data}
    reply = requests.post(server_url.rstrip("/") + "/", json=envelope, timeout=5).json()
    return reply["head"]["status"], reply["data"]


def on_server(server_url: str, call: Any) -> Any:
    """``call(promises)`` with a client of the server itself (what an operator's token allows)."""

    async def go() -> Any:
        client = send_only(ResonateSettings(server_url))
        try:
            return await call(client.promises)
        finally:
            await client.close()

    return asyncio.run(go())


def task(server_url: str, id: str) -> dict[str, Any] | None:
    """The task of run ``id`` (``state``, ``version``, ...), or ``None`` if there is none."""
    status, data = server_call(server_url, "task.get", {"id": id})
    return data["task"] if status == 200 else None


def task_state(server_url: str, id: str) -> str | None:
    found = task(server_url, id)
    return found["state"] if found else None


def wait_suspended(server_url: str, workflow_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Until the run is waiting for a decision (its task suspended, no worker holds it); its task."""
    return wait_until(
        lambda: (t := task(server_url, workflow_id)) and t["state"] == "suspended" and t,
        timeout=timeout,
        what=f"{workflow_id} to suspend",
    )


def wait_ran_again(server_url: str, workflow_id: str, since: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Until the run, whose task was ``since``, has been run again and is at rest (suspended or done); its task.

    After a vote settles, this is the moment the run has tallied it: the vote
    resumes the suspended run, a worker runs it, and it suspends again (or finishes).
    """

    def at_rest_again() -> dict[str, Any] | None:
        t = task(server_url, workflow_id)
        if t is None or t["state"] not in ("suspended", "fulfilled"):
            return None
        return t if t["state"] == "fulfilled" or t["version"] > since["version"] else None

    return wait_until(at_rest_again, timeout=timeout, what=f"{workflow_id} to run again")
