"""The approval rules as pure functions: layout, tally, progress, audit."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.model import policy
from hitl.model.request import ApprovalRequest


def request(**fields: Any) -> ApprovalRequest:
    return ApprovalRequest.from_json(
        {
            "workflow_id": "wf",
            "approvers": ["a@example.com", "b@example.com", "c@example.com"],
            "subject": "s",
            **fields,
        }
    )


def vote(by: str, approve: bool, at: int) -> dict[str, Any]:
    return policy.vote_value(approve=approve, by=f"{by}@example.com", comment=by, at_ms=at, ip="", user_agent="")


def test_layout_ids_follow_from_the_request() -> None:
    lay = policy.layout(request(on_expiry={"action": "escalate", "to": ["boss@example.com"], "deadline": 60}))
    assert lay.ids() == ["wf:1", "wf:2", "wf:3", "wf:4"]
    assert lay.rounds[1].vote_of("boss@example.com") == "wf:4"
    assert lay.round_of("wf:2") is lay.rounds[0]
    assert lay.ends_at(0, 1) == 1000 * (7 * 86400 + 60)


def test_k_of_n() -> None:
    rnd = policy.layout(request(required=2)).rounds[0]
    assert policy.tally(rnd, [vote("a", True, 1), None, None]) is None
    decided = policy.tally(rnd, [vote("a", True, 1), None, vote("c", True, 2)])
    assert decided is not None and decided != "expired"
    assert (decided["decision"], decided["by"]) == ("approved", "c@example.com")


def test_the_first_decisive_event_wins() -> None:
    rnd = policy.layout(request()).rounds[0]
    # b rejected before a approved: with a veto, the rejection came first
    decided = policy.tally(rnd, [vote("a", True, 5), vote("b", False, 3), None])
    assert decided != "expired" and decided is not None and decided["decision"] == "rejected"


def test_without_veto_rejected_when_out_of_reach() -> None:
    rnd = policy.layout(request(required=2, veto=False)).rounds[0]
    assert policy.tally(rnd, [vote("a", False, 1), None, None]) is None
    decided = policy.tally(rnd, [vote("a", False, 1), vote("b", False, 2), None])
    assert decided != "expired" and decided is not None and decided["decision"] == "rejected"


def test_cancel_and_expiry_end_the_round_when_they_come_first() -> None:
    rnd = policy.layout(request(required=2)).rounds[0]
    canceled = policy.canceled_value(by="ops", reason="moot", at_ms=2)
    decided = policy.tally(rnd, [vote("a", True, 1), canceled, canceled])
    assert (
        decided != "expired"
        and decided is not None
        and (decided["decision"], decided["comment"]) == ("canceled", "moot")
    )
    assert policy.tally(rnd, [vote("a", True, 1), policy.expired_value(2), policy.expired_value(2)]) == "expired"
    # a vote cast before the deadline still counts toward a decision reached before it
    decided = policy.tally(policy.layout(request()).rounds[0], [vote("a", True, 1), policy.expired_value(2), None])
    assert decided != "expired" and decided is not None and decided["decision"] == "approved"


@pytest.mark.parametrize("marker", [{"closed": True, "decision": "approved"}, None, "garbage", {"at": 1}])
def test_markers_and_garbage_are_not_votes(marker: Any) -> None:
    rnd = policy.layout(request()).rounds[0]
    assert policy.tally(rnd, [marker, None, None]) is None
    assert policy.audit([marker]) == []


def test_progress_and_audit() -> None:
    rnd = policy.layout(request(required=2)).rounds[0]
    values = [vote("a", True, 2), vote("b", False, 1), None]
    assert policy.progress(rnd, values) == {"required": 2, "approved": 1, "rejected": 1, "waiting": ["c@example.com"]}
    assert [d["by"] for d in policy.audit(values)] == ["b@example.com", "a@example.com"]


def test_clean_comment() -> None:
    assert policy.clean_comment(" a\r\nb\rc ") == "a\nb\nc"
    policy.clean_comment("x\r\n" * 1000)  # 2000 characters once the line breaks are counted as typed
    with pytest.raises(ValueError):
        policy.clean_comment("x" * 2001)


@pytest.mark.parametrize(
    ("on_expiry", "decision", "by"),
    [("expire", "expired", None), ("approve", "approved", "system"), ("reject", "rejected", "system")],
)
def test_every_on_expiry_action_ends_in_a_documented_decision(on_expiry: str, decision: str, by: str | None) -> None:
    from hitl import approval

    req = request(on_expiry=on_expiry)
    final = approval._on_expiry(req, policy.layout(req).rounds[0], 1_000)
    assert final is not None
    assert (final["decision"], final["by"]) == (decision, by)
    assert final["decision"] in policy.DECISIONS


def test_the_documented_decisions_are_the_readme_s() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = '"approved"|"rejected"|"expired"|"canceled"'
    assert documented in readme
    assert policy.DECISIONS == ("approved", "rejected", "expired", "canceled")
