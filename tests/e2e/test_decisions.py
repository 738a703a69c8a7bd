"""Every path to every final decision, through the real stack.

Each path starts a request, acts as the people (or the clock) would, and checks
the result the status answer carries. The decisions are held to the documented
set (:data:`hitl.model.records.DECISIONS`), and the table below must reach every one of
them, so a new path cannot invent a spelling unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from support.api import Api

from hitl.model.records import DECISIONS

pytestmark = pytest.mark.usefixtures("local")

ESCALATE = {"action": "escalate", "to": ["boss@example.com"], "deadline": "2s"}


@dataclass(frozen=True)
class Path:
    name: str
    #: Request fields beyond the defaults (one approver, alice).
    fields: dict[str, Any]
    #: What happens, in order: ``(approver, "approve"|"reject")`` or ``("requester", "cancel")``;
    #: nothing means the deadline passes.
    acts: tuple[tuple[str, str], ...]
    decision: str
    by: str | None
    extra: dict[str, Any] = field(default_factory=dict)


PATHS = [
    Path("one approval", {}, (("alice", "approve"),), "approved", "alice@example.com"),
    Path("k of n", {"approvers": ["alice@example.com", "bob@example.com"], "required": 2},
         (("alice", "approve"), ("bob", "approve")), "approved", "bob@example.com"),
    Path("default approve at the deadline", {"deadline": 2, "on_expiry": "approve"}, (), "approved", "system"),
    Path("approved after escalation", {"deadline": 2, "on_expiry": ESCALATE}, (("boss", "approve"),),
         "approved", "boss@example.com"),
    Path("veto", {"approvers": ["alice@example.com", "bob@example.com"], "required": 2},
         (("bob", "reject"),), "rejected", "bob@example.com"),
    Path("quorum out of reach", {"approvers": ["alice@example.com", "bob@example.com"], "veto": False},
         (("alice", "reject"), ("bob", "reject")), "rejected", "bob@example.com"),
    Path("default reject at the deadline", {"deadline": 2, "on_expiry": "reject"}, (), "rejected", "system"),
    Path("rejected after escalation", {"deadline": 2, "on_expiry": ESCALATE}, (("boss", "reject"),),
         "rejected", "boss@example.com"),
    Path("expired", {"deadline": 2}, (), "expired", None),
    Path("expired after escalation", {"deadline": 2, "on_expiry": ESCALATE}, (("boss", "wait"),), "expired", None),
    Path("canceled", {}, (("requester", "cancel"),), "canceled", "requester"),
]  # fmt: skip


def test_the_paths_reach_every_documented_decision() -> None:
    assert {p.decision for p in PATHS} == set(DECISIONS)


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_every_path_ends_in_a_documented_decision(api: Api, path: Path) -> None:
    body = api.request_body(**path.fields)
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    for who, act in path.acts:
        if act == "cancel":
            assert api.start({"workflow_id": wf}, path="cancel").status_code == 202
            continue
        links = api.wait_email(wf, f"{who}@example.com", timeout=20)
        if act != "wait":
            assert api.decide(links[act], act).status_code == 200
    result = api.wait_done(wf, timeout=30)["result"]
    assert result["decision"] in DECISIONS
    assert (result["decision"], result["by"]) == (path.decision, path.by)
