"""The runs hitl creates by hand pass the server's id and tag rules."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from resonate.codec import Codec, NoopEncryptor
from resonate.promises import Promises

from devstack.localserver import rules
from hitl.client import runs


class Recorder:
    """Stands in for the Sender: records the create request, answers nothing."""

    def __init__(self) -> None:
        self.req: Any = None

    async def promise_create(self, req: Any) -> Any:
        self.req = req
        raise _Stop


class _Stop(Exception):
    pass


def created(**kwargs: Any) -> dict[str, Any]:
    sender = Recorder()
    promises = Promises(sender, Codec(NoopEncryptor()))  # type: ignore[arg-type]
    with contextlib.suppress(_Stop):  # the recorder stops the call once it has the request
        asyncio.run(runs.create(promises, func="f", args=(1,), group="worker", timeout_at=10_000, **kwargs))
    req = sender.req
    return {"id": req.id, "timeoutAt": req.timeout_at, "tags": req.tags, "param": {}}


def test_a_root_run_is_its_own_origin() -> None:
    data = created(id="deploy-42")
    assert rules.promise_create(data)[3]["resonate:origin"] == "deploy-42"
    assert data["tags"]["resonate:target"] == "poll://any@worker"


def test_a_deferred_child_run_passes_the_rules() -> None:
    data = created(id="deploy-42:1.expiry", parent="deploy-42", not_before=5_000)
    _, _, _, tags = rules.promise_create(data)
    assert (tags["resonate:origin"], tags["resonate:delay"]) == ("deploy-42", "5000")


def test_the_target_is_the_sdks_anycast_address() -> None:
    from resonate.connections.sse import resolve_target

    for group in ("worker", "workers-eu", "a.b"):
        assert runs.target_of(group) == resolve_target(group)
