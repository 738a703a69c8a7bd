"""The approval rules as pure functions: layout, tally, progress, audit."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.model import policy
from hitl.model.policy import RoundExpired
from hitl.model.records import DECISIONS, AuditEntry, Canceled, Closed, Decision, Expired, Invalid, Vote
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


def vote(by: str, approve: bool, at: int) -> Vote:
    return Vote.cast(approve=approve, by=f"{by}@example.com", comment=by, at_ms=at, ip="", user_agent="")


def decided(outcome: Decision | RoundExpired | None) -> Decision:
    assert isinstance(outcome, Decision), outcome
    return outcome


def test_layout_ids_follow_from_the_request() -> None:
    lay = policy.layout(request(on_expiry={"action": "escalate", "to": ["boss@example.com"], "deadline": 60}))
    assert lay.ids() == ["wf:1", "wf:2", "wf:3", "wf:4"]
    assert lay.rounds[1].vote_of("boss@example.com") == "wf:4"
    assert lay.round_of("wf:2") is lay.rounds[0]
    assert lay.ends_at(0, 1) == 1000 * (7 * 86400 + 60)


def test_k_of_n() -> None:
    rnd = policy.layout(request(required=2)).rounds[0]
    assert policy.tally(rnd, [vote("a", True, 1), None, None]) is None
    d = decided(policy.tally(rnd, [vote("a", True, 1), None, vote("c", True, 2)]))
    assert (d.decision, d.by) == ("approved", "c@example.com")


def test_the_first_decisive_event_wins() -> None:
    rnd = policy.layout(request()).rounds[0]
    # b rejected before a approved: with a veto, the rejection came first
    assert decided(policy.tally(rnd, [vote("a", True, 5), vote("b", False, 3), None])).decision == "rejected"


def test_without_veto_rejected_when_out_of_reach() -> None:
    rnd = policy.layout(request(required=2, veto=False)).rounds[0]
    assert policy.tally(rnd, [vote("a", False, 1), None, None]) is None
    assert decided(policy.tally(rnd, [vote("a", False, 1), vote("b", False, 2), None])).decision == "rejected"


def test_cancel_and_expiry_end_the_round_when_they_come_first() -> None:
    rnd = policy.layout(request(required=2)).rounds[0]
    canceled = Canceled(by="ops", reason="moot", at_ms=2)
    d = decided(policy.tally(rnd, [vote("a", True, 1), canceled, canceled]))
    assert (d.decision, d.by, d.comment) == ("canceled", "ops", "moot")
    assert policy.tally(rnd, [vote("a", True, 1), Expired(2), Expired(2)]) == RoundExpired()
    # a vote cast before the deadline still counts toward a decision reached before it
    one = policy.layout(request()).rounds[0]
    assert decided(policy.tally(one, [vote("a", True, 1), Expired(2), None])).decision == "approved"


def test_a_closed_vote_is_not_a_vote() -> None:
    rnd = policy.layout(request()).rounds[0]
    closed = Closed(Decision("approved", "b@example.com"))
    assert policy.tally(rnd, [closed, None, None]) is None
    lay = policy.layout(request())
    assert policy.audit(lay, {"wf:1": closed, "wf:2": None}, counted={"wf:1"}) == ()


def test_progress_and_audit() -> None:
    req = request(required=2)
    rnd = policy.layout(req).rounds[0]
    states = [vote("a", True, 2), vote("b", False, 1), None]
    assert policy.progress(rnd, states) == policy.Progress(2, 1, 1, ("c@example.com",))
    trail = policy.audit(policy.layout(req), dict(zip(rnd.vote_ids, states, strict=True)), counted=rnd.vote_ids)
    assert [d.by for d in trail] == ["b@example.com", "a@example.com"]


def test_a_value_that_is_not_a_vote_decides_nothing_and_is_shown_invalid() -> None:
    req = request()
    lay = policy.layout(req)
    rnd = lay.rounds[0]
    bogus = Invalid("not a vote: unexpected fields decisions")
    states = [bogus, None, None]
    assert policy.tally(rnd, states) is None  # the round goes on
    # b and c can still vote; a no longer can, and is not waited for
    assert policy.progress(rnd, states) == policy.Progress(1, 0, 0, ("b@example.com", "c@example.com"))
    assert decided(policy.tally(rnd, [bogus, vote("b", True, 3), None])).by == "b@example.com"
    trail = policy.audit(lay, {"wf:1": bogus, "wf:2": vote("b", True, 3), "wf:3": None}, counted={"wf:1", "wf:2"})
    assert trail == (vote("b", True, 3).audit(), AuditEntry.invalid("a@example.com", bogus.reason))
    assert trail[1].to_json() == {
        "decision": "invalid", "by": "a@example.com", "comment": "", "decided_at": None, "ip": "", "user_agent": "",
        "error": bogus.reason,
    }  # fmt: skip


def test_a_vote_recorded_after_its_round_ended_is_shown_late_and_only_then() -> None:
    lay = policy.layout(request())
    states = {"wf:1": vote("a", True, 5), "wf:2": vote("b", False, 3), "wf:3": None}
    trail = policy.audit(lay, states, counted={"wf:1"})  # b's vote, stamped earlier, came after the freeze
    assert [(d.by, d.late) for d in trail] == [("b@example.com", True), ("a@example.com", False)]
    assert trail[0].to_json()["late"] is True and "late" not in trail[1].to_json()


def test_clean_comment() -> None:
    assert policy.clean_comment(" a\r\nb\rc ") == "a\nb\nc"
    policy.clean_comment("x\r\n" * 1000)  # 2000 characters once the line breaks are counted as typed
    with pytest.raises(ValueError, match="at most 2000"):
        policy.clean_comment("x" * 2001)


@pytest.mark.parametrize(
    ("on_expiry", "decision", "by"),
    [("expire", "expired", None), ("approve", "approved", "system"), ("reject", "rejected", "system")],
)
def test_every_on_expiry_action_ends_in_a_documented_decision(on_expiry: str, decision: str, by: str | None) -> None:
    req = request(on_expiry=on_expiry)
    final = policy.at_deadline(req, policy.layout(req).rounds[0], 1_000)
    assert final is not None
    assert (final.decision, final.by) == (decision, by)
    assert final.decision in DECISIONS


def test_escalation_asks_the_next_round_then_expires() -> None:
    req = request(on_expiry={"action": "escalate", "to": ["boss@example.com"], "deadline": 60})
    first, second = policy.layout(req).rounds
    assert policy.at_deadline(req, first, 1_000) is None
    assert policy.at_deadline(req, second, 2_000) == Decision.expired(2_000)


def test_the_documented_decisions_are_the_readme_s() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = '"approved"|"rejected"|"expired"|"canceled"'
    assert documented in readme
    assert DECISIONS == ("approved", "rejected", "expired", "canceled")
