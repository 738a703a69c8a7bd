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

A vote promise can be settled by anyone holding the server's token, so its
value is read strictly: it counts only as one of the shapes above, written for
that vote's own approver; anything else is :class:`Invalid`, which decides
nothing (the audit shows it, and the run logs it).
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


#: How the person who decided was identified.
Method = Literal["link", "iap", "cli"]
METHODS: tuple[Method, ...] = get_args(Method)


@dataclass(frozen=True, slots=True)
class Identity:
    """How the person behind a vote was identified.

    ``link``: whoever held the approver's signed link (the link names the approver;
    nothing proves who clicked). ``iap``: a person signed in through Identity-Aware
    Proxy, whose assertion ``unblock`` verified: ``email`` (the account signed in,
    the approver or one of their aliases) and ``subject`` (IAP's stable user id).
    ``cli``: an operator, through the server's token; ``principal`` says who the
    token (or the operator's account) names.
    """

    method: Method
    email: str | None = None
    subject: str | None = None
    principal: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        for key in ("email", "subject", "principal"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, value: object) -> Identity:
        if not isinstance(value, Mapping) or value.get("method") not in METHODS:
            raise RecordError(f"not an identity: {value!r}"[:120])
        if not frozenset(value) <= {"method", "email", "subject", "principal"}:
            raise RecordError("not an identity: unexpected fields")
        fields = [value.get(k) for k in ("email", "subject", "principal")]
        if any(f is not None and not isinstance(f, str) for f in fields):
            raise RecordError("not an identity: mistyped fields")
        method: Method = value["method"]
        if method == "iap" and not (value.get("email") and value.get("subject")):
            raise RecordError("an IAP identity names its email and subject")
        return cls(method, *fields)


LINK = Identity("link")

#: How an audit entry reads: a vote cast, or a value in a vote promise that is not one.
AuditKind = Literal["approved", "rejected", "invalid"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One vote as the result's audit trail shows it: who, what, when, the comment, where from.

    ``late``: the vote was recorded after its round had already ended (the run
    had frozen how it ended), so it decided nothing; it is shown, the same in
    every copy of the result. ``decision == "invalid"``: the approver's vote
    promise holds a value that is not a vote (``error`` says why); it decided nothing.
    """

    decision: AuditKind
    by: str
    comment: str
    #: ISO-8601 UTC; ``None`` for an invalid entry (no time can be trusted).
    decided_at: str | None
    ip: str
    user_agent: str
    late: bool = False
    error: str | None = None
    #: How the person was identified (``None`` for a vote stored before it was recorded).
    identity: Identity | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": self.decision, "by": self.by, "comment": self.comment, "decided_at": self.decided_at,
            "ip": self.ip, "user_agent": self.user_agent,
        }  # fmt: skip
        if self.identity is not None:
            out["identity"] = self.identity.to_json()
        if self.late:  # absent when false: an entry reads as it did before late votes were told apart
            out["late"] = True
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> AuditEntry:
        entry = value.get("decision")
        if entry not in ("approved", "rejected", "invalid"):
            raise RecordError(f"not an audit entry: {entry!r}")
        identity = value.get("identity")
        return cls(
            entry, _text(value.get("by")), _text(value.get("comment")), _text_or_none(value.get("decided_at")),
            _text(value.get("ip")), _text(value.get("user_agent")), value.get("late") is True,
            _text_or_none(value.get("error")), None if identity is None else Identity.from_json(identity),
        )  # fmt: skip

    @classmethod
    def invalid(cls, approver: str, reason: str) -> AuditEntry:
        return cls("invalid", approver, "", None, "", "", error=reason)


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
    #: How the person was identified (``None``: a vote stored before it was recorded).
    identity: Identity | None = None

    @classmethod
    def cast(
        cls, *, approve: bool, by: str, comment: str, at_ms: int, ip: str, user_agent: str, identity: Identity = LINK
    ) -> Vote:
        """A new vote (with a fresh ``click``)."""
        return cls(
            "approved" if approve else "rejected", by, comment, at_ms, ip, user_agent[:MAX_USER_AGENT_CHARS],
            secrets.token_hex(8), identity,
        )  # fmt: skip

    @property
    def decided_at(self) -> str:
        return iso(self.at_ms)

    def as_decision(self) -> Decision:
        return Decision(self.decision, self.by, self.comment, self.decided_at)

    def audit(self, *, late: bool = False) -> AuditEntry:
        return AuditEntry(
            self.decision, self.by, self.comment, self.decided_at, self.ip, self.user_agent, late,
            identity=self.identity,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        out = {
            "decision": self.decision, "by": self.by, "comment": self.comment, "decided_at": self.decided_at,
            "at": self.at_ms, "ip": self.ip, "user_agent": self.user_agent, "click": self.click,
        }  # fmt: skip
        if self.identity is not None:
            out["identity"] = self.identity.to_json()
        return out


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


@dataclass(frozen=True, slots=True)
class Invalid:
    """A settled vote promise whose value is not a vote for its approver, nor a marker hitl
    writes (someone else settled it: only a holder of the server's token can). It decides
    nothing, and that approver can no longer vote."""

    reason: str


#: A settled vote promise; ``None`` for one still open (or not yet created).
VoteState = Vote | Expired | Canceled | Closed | Invalid | None

_VOTE_KEYS = frozenset({"decision", "by", "comment", "decided_at", "at", "ip", "user_agent", "click", "identity"})
_CANCELED_KEYS = frozenset({"decision", "by", "comment", "decided_at", "at"})
_CLOSED_KEYS = frozenset({"closed", "decision", "by", "comment", "decided_at"})
_EXPIRED_KEYS = frozenset({"expired", "at"})


def vote_state(value: object, approver: str | None = None, *, signed_in_only: bool = False) -> VoteState:
    """The record a resolved vote promise holds (``None``: it holds none, the vote is open).

    Strict: a value counts only in exactly the shape its writer gives it, and a
    vote only when cast for ``approver`` (the approver whose promise it is; the
    edges that read one vote pass it, the tests of shapes may not). Anything
    else is :class:`Invalid`, never an error: a value nobody should have written
    must not stop the run that reads it. ``signed_in_only`` (a request requiring
    sign-in): a vote identified by its link alone is :class:`Invalid` too.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return Invalid(f"not a vote record: {type(value).__name__}")
    keys = frozenset(value)
    if value.get("closed") is True:
        if keys != _CLOSED_KEYS or not _texts(value, "by", "comment", "decided_at", optional=("by", "decided_at")):
            return Invalid("a malformed close marker")
        try:
            return Closed(Decision.from_json(value))
        except RecordError as exc:
            return Invalid(str(exc))
    if value.get("expired") is True:
        at = value.get("at")
        if keys != _EXPIRED_KEYS or not _whole(at, minimum=0):
            return Invalid("a malformed expiry marker")
        return Expired(_int(at))
    decision = value.get("decision")
    if decision == "canceled":
        if (
            not keys <= _CANCELED_KEYS
            or not isinstance(value.get("by"), str)
            or not _texts(value, "comment", "decided_at")
            or not _whole(value.get("at"), minimum=0)
        ):
            return Invalid("a malformed cancel marker")
        return Canceled(_text(value.get("by")), _text(value.get("comment")), _int(value.get("at")))
    if decision not in CHOICES:
        return Invalid(f"not a vote: {str(decision)[:40]!r}")
    if not keys <= _VOTE_KEYS:
        return Invalid(f"not a vote: unexpected fields {', '.join(sorted(map(str, keys - _VOTE_KEYS)))[:80]}")
    at = value.get("at")
    if (
        not _whole(at, minimum=1)
        or not value.get("by")
        or not _texts(value, "by", "comment", "decided_at", "ip", "user_agent", "click")
    ):
        return Invalid("not a vote: missing or mistyped fields")
    try:
        identity = None if value.get("identity") is None else Identity.from_json(value["identity"])
    except RecordError as exc:
        return Invalid(str(exc))
    vote = Vote(
        _choice(decision), _text(value.get("by")), _text(value.get("comment")), _int(at),
        _text(value.get("ip")), _text(value.get("user_agent")), _text(value.get("click")), identity,
    )  # fmt: skip
    if "decided_at" in value and value["decided_at"] != vote.decided_at:
        return Invalid("not a vote: its time and its decided_at differ")
    if approver is not None and vote.by != approver:
        return Invalid("a vote cast for someone else")
    if signed_in_only and (vote.identity is None or vote.identity.method == "link"):
        return Invalid("a vote by link alone, for a request that requires signing in")
    return vote


def promise_vote(state: str, value: object, approver: str, *, signed_in_only: bool = False) -> VoteState:
    """What ``approver``'s vote promise counts as, from its ``state`` (the server's word) and
    ``value``: ``None`` while pending; :class:`Invalid` when settled any way but resolved
    (hitl never rejects a vote); else :func:`vote_state`, strictly. Every reader of a vote
    promise (the run, the status, the page, the inbox) reads it through this."""
    if state == "pending":
        return None
    if state != "resolved":
        return Invalid(f"the promise was {state}, not resolved with a vote")
    return vote_state(value, approver, signed_in_only=signed_in_only)


def _texts(value: Mapping[str, Any], *names: str, optional: tuple[str, ...] = ()) -> bool:
    """Whether each of ``names`` present in ``value`` is a string (``optional`` ones may be null)."""
    return all(isinstance(value[n], str) or (n in optional and value[n] is None) for n in names if n in value)


def _whole(value: object, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True, slots=True)
class RoundEnd:
    """How a round ended, as the run first saw it, kept by a durable step so that every
    later execution of the run decides the same, whatever votes arrive after it.

    ``decision`` is ``None`` when the round's deadline came first (``on_expiry``
    then applies). ``counted``: the round's votes settled when it ended (a vote
    recorded later is shown ``late``). ``open``: the request's votes still open
    then, which the run closes with the outcome.
    """

    decision: Decision | None
    counted: tuple[str, ...] = ()
    open: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": None if self.decision is None else self.decision.to_json(),
            "counted": list(self.counted),
            "open": list(self.open),
        }

    @classmethod
    def from_json(cls, value: object) -> RoundEnd:
        if not isinstance(value, Mapping) or not isinstance(value.get("counted"), list):
            raise RecordError(f"not a round's end: {value!r}")
        decision = value.get("decision")
        return cls(
            None if decision is None else Decision.from_json(decision),
            tuple(str(i) for i in value["counted"]),
            tuple(str(i) for i in value.get("open") or ()),
        )


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


@dataclass(frozen=True, slots=True)
class Claim:
    """A caller's promise bound to the request that may settle it (``on_decision``), as its
    claim promise's param holds it. The first request to name the promise creates the
    claim; a param never changes, so the binding cannot be taken over."""

    owner: str
    target: str

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "target": self.target}

    @classmethod
    def from_json(cls, value: object) -> Claim:
        if not isinstance(value, Mapping) or not isinstance(value.get("owner"), str):
            raise RecordError(f"not a claim: {type(value).__name__}")
        return cls(value["owner"], _text(value.get("target")))


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
