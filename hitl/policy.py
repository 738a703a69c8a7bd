"""The rules of an approval, as pure functions: which promises it has, and who decided.

An approval run creates its durable promises first, in a fixed order, so
every id follows from the request alone (:func:`layout`); the functions use
the same layout to find a request's votes without asking the worker:

    <id>:1                      cancel: settled by the requester's cancel
    <id>:2, <id>:3              one deadline per round, settled at expiry
    <id>:4 ...                  one vote per approver, round by round

Round 0 asks ``approvers``; round 1 exists when ``on_expiry`` escalates and
asks ``on_expiry.to`` with its own deadline.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from hitl.clock import iso
from hitl.request import ApprovalRequest

#: Longest comment a vote may carry.
MAX_COMMENT_CHARS = 2000

#: Keys of the values the promises are settled with.
CLOSED = "closed"
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Round:
    index: int
    deadline_id: str
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
    cancel_id: str
    rounds: tuple[Round, ...]

    def ids(self) -> list[str]:
        """Every promise id, in creation order."""
        return [self.cancel_id, *(r.deadline_id for r in self.rounds), *(v for r in self.rounds for v in r.vote_ids)]

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
    seq = 2 + len(groups)
    rounds = []
    for i, (approvers, required, veto, seconds, remind) in enumerate(groups):
        votes = tuple(f"{wf}:{seq + j}" for j in range(len(approvers)))
        seq += len(approvers)
        rounds.append(Round(i, f"{wf}:{2 + i}", approvers, votes, required, veto, seconds, remind))
    return Layout(wf, f"{wf}:1", tuple(rounds))


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


def is_vote(value: Any) -> bool:
    """Whether a settled vote promise holds an approver's decision (not a closing marker)."""
    return isinstance(value, dict) and value.get("decision") in ("approved", "rejected") and not value.get(CLOSED)


def tally(rnd: Round, votes: list[Any]) -> dict[str, Any] | None:
    """The round's decision once its votes decide it, else ``None``.

    Votes count in the order they were made (``at``, ms): the first moment
    the rule is met decides, and later votes cannot change it. Approved when
    ``required`` approvals are in; rejected on the first rejection with a
    veto, or without one once too few approvers are left to reach
    ``required``.
    """
    cast = sorted((v for v in votes if is_vote(v)), key=lambda v: (v.get("at", 0), v.get("by", "")))
    approvals = rejections = 0
    for vote in cast:
        if vote["decision"] == "approved":
            approvals += 1
        else:
            rejections += 1
        if approvals >= rnd.required:
            return outcome("approved", vote)
        if rnd.veto and rejections:
            return outcome("rejected", vote)
        if len(rnd.approvers) - rejections < rnd.required:
            return outcome("rejected", vote)
    return None


def outcome(decision: str, vote: dict[str, Any]) -> dict[str, Any]:
    return {"decision": decision, "by": vote.get("by"), "comment": vote.get("comment", ""), "decided_at": vote.get("decided_at")}


def progress(rnd: Round, votes: list[Any]) -> dict[str, Any]:
    """For the page and the CLI: who decided what, and who has not."""
    cast = {v["by"]: v["decision"] for v in votes if is_vote(v)}
    return {
        "required": rnd.required,
        "approved": sum(1 for d in cast.values() if d == "approved"),
        "rejected": sum(1 for d in cast.values() if d == "rejected"),
        "waiting": [a for a in rnd.approvers if a not in cast],
    }


def audit(votes: list[Any]) -> list[dict[str, Any]]:
    """Every decision made, in order: who, what, when, comment, and where from."""
    keys = ("decision", "by", "comment", "decided_at", "ip", "user_agent")
    return [{k: v.get(k) for k in keys} for v in sorted((v for v in votes if is_vote(v)), key=lambda v: v.get("at", 0))]
