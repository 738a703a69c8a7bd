"""The rules of an approval, as pure functions: its promises, and who decided.

An approval run waits on one durable promise per approver and round: the
vote. It creates them first, in a fixed order, so every id follows from the
request alone (:func:`layout`) and the functions find a request's votes
without asking the worker:

    <id>:1 ... <id>:n           round 0: one vote per approver
    <id>:n+1 ...                round 1 (when ``on_expiry`` escalates): one per escalation approver

Everything that can end a round settles votes, so the run waits on votes
alone: an approver's click settles theirs with a decision; the deadline
settles the round's open votes as expired; a cancel settles every open vote
as canceled; the run itself closes what is left when it ends. :func:`tally`
reads the events in the order they happened; the first that decides wins.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from hitl.clock import iso
from hitl.model.request import ApprovalRequest

#: The registered name of the approval workflow.
WORKFLOW = "approval"

#: How long a run outlives its last deadline: room for the expiry to be applied
#: even if every worker was down at the deadline itself.
RUN_MARGIN = timedelta(days=1)

#: Longest comment a vote may carry.
MAX_COMMENT_CHARS = 2000

#: Keys marking the values votes are settled with by anything but their approver.
CLOSED = "closed"
EXPIRED = "expired"

#: Every decision a request can end with (the README documents exactly these).
DECISIONS = ("approved", "rejected", "expired", "canceled")

#: The decision ``on_expiry`` records for its default actions.
DEFAULT_DECISIONS = {"approve": "approved", "reject": "rejected"}

#: What :func:`tally` answers when a round's deadline came first.
Expired = Literal["expired"]


@dataclass(frozen=True, slots=True)
class Round:
    index: int
    approvers: tuple[str, ...]
    vote_ids: tuple[str, ...]
    required: int
    veto: bool
    #: Seconds this round lasts, from the end of the previous one (or the start).
    seconds: int
    #: Seconds before this round's deadline at which to remind.
    remind: tuple[int, ...]

    def vote_of(self, approver: str) -> str:
        return self.vote_ids[self.approvers.index(approver)]


@dataclass(frozen=True, slots=True)
class Layout:
    workflow_id: str
    rounds: tuple[Round, ...]

    def ids(self) -> list[str]:
        """Every vote id, in creation order."""
        return [v for r in self.rounds for v in r.vote_ids]

    def round_of(self, vote_id: str) -> Round | None:
        return next((r for r in self.rounds if vote_id in r.vote_ids), None)

    def ends_at(self, started_at_ms: int, index: int) -> int:
        """Deadline of round ``index`` (ms) of a run started at ``started_at_ms``."""
        return started_at_ms + 1000 * sum(r.seconds for r in self.rounds[: index + 1])

    @property
    def total_seconds(self) -> int:
        return sum(r.seconds for r in self.rounds)


def layout(req: ApprovalRequest) -> Layout:
    wf = req.workflow_id
    groups = [(req.approvers, req.required, req.veto, req.deadline, req.remind)]
    if req.on_expiry.action == "escalate":
        esc = req.on_expiry
        groups.append((esc.to, esc.required, req.veto, esc.deadline, tuple(s for s in req.remind if s < esc.deadline)))
    seq = 1
    rounds = []
    for i, (approvers, required, veto, seconds, remind) in enumerate(groups):
        votes = tuple(f"{wf}:{seq + j}" for j in range(len(approvers)))
        seq += len(approvers)
        rounds.append(Round(i, approvers, votes, required, veto, seconds, remind))
    return Layout(wf, tuple(rounds))


def run_timeout(request: ApprovalRequest) -> timedelta:
    """A run's own timeout: every round plus the margin."""
    return timedelta(seconds=layout(request).total_seconds) + RUN_MARGIN


def result_of(value: Any) -> dict[str, Any]:
    """The public part of a run's result (or of any stored decision)."""
    if not isinstance(value, dict):
        return {"decision": "expired", "by": None, "comment": "", "decided_at": None}
    out = {k: value.get(k) for k in ("decision", "by", "comment", "decided_at")}
    if "decisions" in value:
        out["decisions"] = value["decisions"]
    return out


def clean_comment(raw: str) -> str:
    """A vote's comment as the approver typed it: line breaks as ``\\n`` (browsers send a
    textarea's as CRLF), no surrounding blanks. Raises :class:`ValueError` when too long."""
    comment = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(f"the comment must be at most {MAX_COMMENT_CHARS} characters")
    return comment


def vote_value(*, approve: bool, by: str, comment: str, at_ms: int, ip: str, user_agent: str) -> dict[str, Any]:
    """An approver's vote as stored in their vote promise: the decision and its audit trail.

    ``click`` makes two submissions distinguishable, so the edge can tell
    whether the stored vote is the one it just sent.
    """
    return {
        "decision": "approved" if approve else "rejected",
        "by": by,
        "comment": comment,
        "decided_at": iso(at_ms),
        "at": at_ms,
        "ip": ip,
        "user_agent": user_agent[:300],
        "click": secrets.token_hex(8),
    }


def canceled_value(*, by: str, reason: str, at_ms: int) -> dict[str, Any]:
    """What a cancel settles every open vote with."""
    return {"decision": "canceled", "by": by, "comment": reason, "decided_at": iso(at_ms), "at": at_ms}


def expired_value(at_ms: int) -> dict[str, Any]:
    """What a round's deadline settles its open votes with."""
    return {EXPIRED: True, "at": at_ms}


def is_vote(value: Any) -> bool:
    """Whether a settled vote holds its approver's decision (not a marker)."""
    return isinstance(value, dict) and value.get("decision") in ("approved", "rejected") and not value.get(CLOSED)


def is_canceled(value: Any) -> bool:
    return isinstance(value, dict) and value.get("decision") == "canceled" and not value.get(CLOSED)


def is_expired(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get(EXPIRED))


def tally(rnd: Round, values: list[Any]) -> dict[str, Any] | Expired | None:
    """How the round ended, once it has: a decision, ``"expired"``, or ``None`` while open.

    Events count in the order they happened (``at``, ms): a cancel ends the
    request; the deadline ends the round; votes decide once ``required``
    approvals are in, on the first rejection with a veto, or without one once
    too few approvers are left to reach ``required``. Later events change nothing.
    """
    events = sorted((v for v in values if isinstance(v, dict) and "at" in v), key=lambda v: (v["at"], str(v.get("by"))))
    approvals = rejections = 0
    for event in events:
        if is_canceled(event):
            return outcome("canceled", event)
        if is_expired(event):
            return "expired"
        if not is_vote(event):
            continue
        if event["decision"] == "approved":
            approvals += 1
        else:
            rejections += 1
        if approvals >= rnd.required:
            return outcome("approved", event)
        if rnd.veto and rejections:
            return outcome("rejected", event)
        if len(rnd.approvers) - rejections < rnd.required:
            return outcome("rejected", event)
    return None


def outcome(decision: str, vote: dict[str, Any]) -> dict[str, Any]:
    return {
        "decision": decision,
        "by": vote.get("by"),
        "comment": vote.get("comment", ""),
        "decided_at": vote.get("decided_at"),
    }


def progress(rnd: Round, values: list[Any]) -> dict[str, Any]:
    """For the page and the CLI: how many decided what, and who has not."""
    cast = {v["by"]: v["decision"] for v in values if is_vote(v)}
    return {
        "required": rnd.required,
        "approved": sum(1 for d in cast.values() if d == "approved"),
        "rejected": sum(1 for d in cast.values() if d == "rejected"),
        "waiting": [a for a in rnd.approvers if a not in cast],
    }


def audit(values: list[Any]) -> list[dict[str, Any]]:
    """Every decision made, in order: who, what, when, the comment, and where from."""
    keys = ("decision", "by", "comment", "decided_at", "ip", "user_agent")
    return [
        {k: v.get(k) for k in keys} for v in sorted((v for v in values if is_vote(v)), key=lambda v: v.get("at", 0))
    ]
