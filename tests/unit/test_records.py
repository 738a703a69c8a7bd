"""The typed records: one JSON shape each, read back to the same record, and no other spelling."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.model.records import (
    DECISIONS,
    AuditEntry,
    Canceled,
    Closed,
    Decision,
    Expired,
    Invalid,
    RecordError,
    Result,
    RoundEnd,
    Vote,
    vote_state,
)

VOTE = Vote("approved", "alice@example.com", "ship it", 1_764_000_000_000, "10.0.0.1", "curl/8", "c0ffee")


def test_a_vote_is_stored_as_before_and_read_back() -> None:
    stored = VOTE.to_json()
    assert stored == {
        "decision": "approved", "by": "alice@example.com", "comment": "ship it",
        "decided_at": "2025-11-24T16:00:00Z", "at": 1_764_000_000_000, "ip": "10.0.0.1",
        "user_agent": "curl/8", "click": "c0ffee",
    }  # fmt: skip
    assert vote_state(stored) == VOTE


@pytest.mark.parametrize(
    "record",
    [VOTE, Expired(5), Canceled("ops", "moot", 7), Closed(Decision("rejected", "bob@example.com", "", "x"))],
)
def test_every_vote_state_round_trips(record: Any) -> None:
    assert vote_state(record.to_json()) == record


def test_the_markers_keep_their_stored_shapes() -> None:
    assert Expired(5).to_json() == {"expired": True, "at": 5}
    assert Canceled("ops", "moot", 0).to_json() == {
        "decision": "canceled", "by": "ops", "comment": "moot", "decided_at": "1970-01-01T00:00:00Z", "at": 0,
    }  # fmt: skip
    assert Closed(Decision("approved", "a", "c", "t")).to_json() == {
        "closed": True, "decision": "approved", "by": "a", "comment": "c", "decided_at": "t",
    }  # fmt: skip


def test_a_new_vote_gets_a_fresh_click_and_a_bounded_user_agent() -> None:
    a = Vote.cast(approve=True, by="a", comment="", at_ms=1, ip="", user_agent="x" * 1000)
    b = Vote.cast(approve=True, by="a", comment="", at_ms=1, ip="", user_agent="")
    assert a.click != b.click and len(a.user_agent) == 300
    assert Vote.cast(approve=False, by="a", comment="", at_ms=1, ip="", user_agent="").decision == "rejected"


@pytest.mark.parametrize("spelling", ["rejectd", "Approved", "", None, "pending"])
def test_no_other_decision_can_be_made(spelling: Any) -> None:
    with pytest.raises(RecordError):
        Decision(spelling)
    with pytest.raises(RecordError):
        Decision.from_json({"decision": spelling})
    assert spelling not in DECISIONS


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        3,
        [],
        {"decision": "maybe"},
        {"at": 1},
        # a request's result (what a delivery would write): not a vote, however it reads
        {"decision": "approved", "by": "alice@example.com", "comment": "", "decided_at": "x", "decisions": []},
        {**VOTE.to_json(), "decisions": []},
        {**VOTE.to_json(), "at": 0},
        {**VOTE.to_json(), "at": True},
        {**VOTE.to_json(), "by": ""},
        {**VOTE.to_json(), "ip": 7},
        {**VOTE.to_json(), "decided_at": "1970-01-01T00:00:00Z"},
        {"expired": True, "at": 5, "decision": "approved"},
        {"expired": True},
        {"closed": True, "decision": "approved"},
        {"decision": "canceled", "by": "ops", "at": "soon"},
    ],
)
def test_values_no_component_writes_are_invalid(value: Any) -> None:
    assert isinstance(vote_state(value), Invalid)


def test_a_vote_counts_only_for_its_own_approver() -> None:
    assert vote_state(VOTE.to_json(), "alice@example.com") == VOTE
    assert vote_state(VOTE.to_json(), "bob@example.com") == Invalid("a vote cast for someone else")
    # the markers are anybody's: a cancel or the deadline closes every vote
    assert vote_state(Expired(5).to_json(), "bob@example.com") == Expired(5)


def test_a_vote_stored_before_clicks_were_told_apart_still_reads() -> None:
    older = {k: v for k, v in VOTE.to_json().items() if k not in ("click", "ip", "user_agent")}
    assert vote_state(older, "alice@example.com") == Vote("approved", "alice@example.com", "ship it", VOTE.at_ms)


def test_a_round_end_round_trips() -> None:
    end = RoundEnd(VOTE.as_decision(), ("wf:1",), ("wf:2", "wf:3"))
    assert RoundEnd.from_json(end.to_json()) == end
    assert RoundEnd.from_json(RoundEnd(None, ()).to_json()) == RoundEnd(None)
    with pytest.raises(RecordError):
        RoundEnd.from_json({"decision": None})


def test_a_result_carries_the_decision_and_its_audit_trail() -> None:
    result = Result(VOTE.as_decision(), (VOTE.audit(),))
    stored = result.to_json()
    assert stored["decision"] == "approved" and stored["decisions"][0]["ip"] == "10.0.0.1"
    assert "click" not in stored["decisions"][0] and "at" not in stored["decisions"][0]
    assert Result.from_json(stored) == result
    assert isinstance(result.decisions[0], AuditEntry)
    with pytest.raises(RecordError):
        Result.from_json("expired")
