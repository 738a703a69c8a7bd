"""The records an approval is made of, typed, and the one place they turn into JSON and back.

What the promises hold (their JSON is the stored format; keep it stable):

    a vote, settled by its approver   Vote      {"decision": "approved"|"rejected", "by", "comment",
                                                 "decided_at", "at", "ip", "user_agent", "click"}
    ... by the round's deadline       Expired   {"expired": true, "at"}
    ... by a cancel                   Canceled  {"decision": "canceled", "by", "comment", "decided_at", "at"}
    ... by the run, as it ended       Closed    {"closed": true, "decision", "by", "comment", "decided_at"}
    the run's result                  Result    {"decision", "by", "comment", "decided_at", "decisions": [...]}

A request ends with a :class:`Decision` whose ``decision`` is one of
:data:`DECISIONS`, the four values the README documents; the type refuses any
other spelling. :func:`vote_state` is the one reader of a stored vote value;
each record's ``to_json`` is its one writer. Pure: times are given in
milliseconds since the epoch (``at``) and shown as ISO-8601 UTC (``decided_at``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from hitl.clock import iso

#: How a request ends.
Verdict = Literal["approved", "rejected", "expired", "canceled"]
#: Every decision a request can end with, as the README documents them.
DECISIONS: tuple[Verdict, ...] = get_args(Verdict)
#: What an approver can vote.
Choice = Literal["approved", "rejected"]
CHOICES: tuple[Choice, ...] = get_args(Choice)

#: Longest user agent kept in an audit entry.
MAX_USER_AGENT_CHARS = 300


class RecordError(ValueError):
    """A stored value is not the record it should be."""


@dataclass(frozen=True, slots=True)
class Decision:
    """How a request, or one of its rounds, ended: what, by whom, when, with which comment."""

    decision: Verdict
    #: The approver, ``"system"`` for a default decision, the canceller; ``None`` when it expired.
    by: str | None = None
    comment: str = ""
    #: ISO-8601 UTC; ``None`` only for a result stored without a time.
    decided_at: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise RecordError(f"not a decision: {self.decision!r} (one of {', '.join(DECISIONS)})")

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "by": self.by, "comment": self.comment, "decided_at": self.decided_at}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Decision:
        return cls(
            _verdict(value.get("decision")), _text_or_none(value.get("by")), _text(value.get("comment")),
            _text_or_none(value.get("decided_at")),
        )  # fmt: skip

    @classmethod
    def expired(cls, at_ms: int) -> Decision:
        return cls("expired", None, "", iso(at_ms))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One vote as the result's audit trail shows it: who, what, when, the comment, where from."""

    decision: Choice
    by: str
    comment: str
    decided_at: str
    ip: str
    user_agent: str

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision, "by": self.by, "comment": self.comment, "decided_at": self.decided_at,
            "ip": self.ip, "user_agent": self.user_agent,
        }  # fmt: skip

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> AuditEntry:
        return cls(
            _choice(value.get("decision")), _text(value.get("by")), _text(value.get("comment")),
            _text(value.get("decided_at")), _text(value.get("ip")), _text(value.get("user_agent")),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Vote:
    """An approver's vote, as their vote promise holds it."""

    decision: Choice
    by: str
    comment: str
    at_ms: int
    ip: str = ""
    user_agent: str = ""
    #: Tells two submissions apart, so an edge knows whether the stored vote is the one it sent.
    click: str = ""

    @classmethod
    def cast(cls, *, approve: bool, by: str, comment: str, at_ms: int, ip: str, user_agent: str) -> Vote:
        """A new vote (with a fresh ``click``)."""
        return cls(
            "approved" if approve else "rejected", by, comment, at_ms, ip, user_agent[:MAX_USER_AGENT_CHARS],
            secrets.token_hex(8),
        )  # fmt: skip

    @property
    def decided_at(self) -> str:
        return iso(self.at_ms)

    def as_decision(self) -> Decision:
        return Decision(self.decision, self.by, self.comment, self.decided_at)

    def audit(self) -> AuditEntry:
        return AuditEntry(self.decision, self.by, self.comment, self.decided_at, self.ip, self.user_agent)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision, "by": self.by, "comment": self.comment, "decided_at": self.decided_at,
            "at": self.at_ms, "ip": self.ip, "user_agent": self.user_agent, "click": self.click,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Expired:
    """A round's deadline settled this open vote."""

    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"expired": True, "at": self.at_ms}


@dataclass(frozen=True, slots=True)
class Canceled:
    """A cancel settled this open vote: the request ends ``canceled``."""

    by: str
    reason: str
    at_ms: int

    def as_decision(self) -> Decision:
        return Decision("canceled", self.by, self.reason, iso(self.at_ms))

    def to_json(self) -> dict[str, Any]:
        return {**self.as_decision().to_json(), "at": self.at_ms}


@dataclass(frozen=True, slots=True)
class Closed:
    """The run ended and closed this open vote with its outcome (so the link shows it)."""

    outcome: Decision

    def to_json(self) -> dict[str, Any]:
        return {"closed": True, **self.outcome.to_json()}


#: A settled vote promise; ``None`` for one still open (or not yet created).
VoteState = Vote | Expired | Canceled | Closed | None


def vote_state(value: object) -> VoteState:
    """The record a vote promise's value holds (``None``: it holds none, the vote is open).

    Raises :class:`RecordError` for a value no hitl component writes.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RecordError(f"not a vote record: {type(value).__name__}")
    if value.get("closed"):
        return Closed(Decision.from_json(value))
    if value.get("expired"):
        return Expired(_int(value.get("at")))
    decision = value.get("decision")
    if decision == "canceled":
        return Canceled(_text(value.get("by")), _text(value.get("comment")), _int(value.get("at")))
    return Vote(
        _choice(decision), _text(value.get("by")), _text(value.get("comment")), _int(value.get("at")),
        _text(value.get("ip")), _text(value.get("user_agent")), _text(value.get("click")),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Result:
    """What a finished run returns: its decision and the audit trail of every vote cast."""

    decision: Decision
    decisions: tuple[AuditEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.decision.to_json(), "decisions": [d.to_json() for d in self.decisions]}

    @classmethod
    def from_json(cls, value: object) -> Result:
        if not isinstance(value, Mapping):
            raise RecordError(f"not a result: {type(value).__name__}")
        entries = value.get("decisions") or []
        if not isinstance(entries, list):
            raise RecordError("the result's decisions must be a list")
        return cls(Decision.from_json(value), tuple(AuditEntry.from_json(e) for e in entries))


def _verdict(value: object) -> Verdict:
    for d in DECISIONS:
        if value == d:
            return d
    raise RecordError(f"not a decision: {value!r}")


def _choice(value: object) -> Choice:
    for c in CHOICES:
        if value == c:
            return c
    raise RecordError(f"not a vote: {value!r}")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


#: Where a delivery stands: ``pending`` (not yet delivered, maybe retrying), or done for good.
DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt did, as its run's result holds it.

    ``retrying``: it failed in a way another attempt may mend, and the next is
    scheduled; ``delivered`` and ``failed`` end the target's deliveries.
    """

    outcome: Literal["delivered", "retrying", "failed"]
    #: 1 for the first attempt.
    attempt: int
    at_ms: int
    #: Why it failed (the host and status at most: never a URL's path or query).
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "attempt": self.attempt, "at": self.at_ms, "error": self.error}

    @classmethod
    def from_json(cls, value: object) -> Attempt:
        if not isinstance(value, Mapping) or value.get("outcome") not in ("delivered", "retrying", "failed"):
            raise RecordError(f"not a delivery attempt: {value!r}")
        return cls(
            value["outcome"], _int(value.get("attempt")), _int(value.get("at")), _text_or_none(value.get("error"))
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One target of a request's ``on_decision``, as the status answer shows it."""

    #: The target as shown (``{"type": "promise", "id"}`` or ``{"type": "webhook", "host"}``).
    target: Mapping[str, str]
    state: DeliveryState
    attempts: int = 0
    error: str | None = None
    #: ISO-8601 UTC of the last attempt.
    last_attempt_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.target, "state": self.state, "attempts": self.attempts, "error": self.error,
            "last_attempt_at": self.last_attempt_at,
        }  # fmt: skip
