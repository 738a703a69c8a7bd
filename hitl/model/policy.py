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
A value that is not a vote (:class:`~hitl.model.records.Invalid`) is no event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from hitl.clock import iso
from hitl.model.records import AuditEntry, Canceled, Decision, Expired, Invalid, Vote, VoteState
from hitl.model.request import CLAIM_ID_SUFFIX, ApprovalRequest

#: The registered name of the approval workflow.
WORKFLOW = "approval"

#: How long a run outlives its last deadline: room for the expiry to be applied
#: even if every worker was down at the deadline itself.
RUN_MARGIN = timedelta(days=1)

#: Longest comment a vote may carry.
MAX_COMMENT_CHARS = 2000

#: The comment of a default decision (``on_expiry``: ``approve`` or ``reject``).
DEFAULT_COMMENT = "default decision at the deadline"


@dataclass(frozen=True, slots=True)
class RoundExpired:
    """What :func:`tally` answers when a round's deadline came before a decision."""


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

    def approver_of(self) -> dict[str, str]:
        """Each vote id's approver."""
        return {v: a for r in self.rounds for a, v in zip(r.approvers, r.vote_ids, strict=True)}

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


def delivery_id(workflow_id: str, target: int, attempt: int) -> str:
    """The run of ``attempt`` (1, 2, ...) at delivering the decision to ``on_decision[target]``.

    Beside the votes (``<id>:<n>``) and the rounds' runs (``<id>:r<i>.expiry``), below
    the request's origin, so one credential prefix covers the whole request.
    """
    return f"{workflow_id}:deliver{target}.{attempt}"


#: What a claim's id adds to the id of the caller's promise it binds (see :func:`claim_id`).
CLAIM_SUFFIX = CLAIM_ID_SUFFIX

#: How long a caller's promise must outlive a request's last deadline to be its target.
TARGET_MARGIN = timedelta(hours=1)


def claim_id(target: str) -> str:
    """The promise that binds the caller's promise ``target`` to the one request that may settle it.

    Beside ``target``, in its lineage's namespace (same origin), so it is found from the
    target alone, and a credential narrowed to a caller's prefix covers both. No SDK makes
    an id with ``#``.
    """
    return target + CLAIM_SUFFIX


def target_deadline_ms(request: ApprovalRequest, now_ms: int) -> int:
    """The earliest a caller's promise may time out to be ``request``'s target, if it starts at
    ``now_ms``: after every round's deadline (escalation included), plus :data:`TARGET_MARGIN`."""
    return now_ms + 1000 * layout(request).total_seconds + int(TARGET_MARGIN.total_seconds() * 1000)


#: Backoff between delivery attempts: 1 s, doubling, at most an hour.
FIRST_RETRY_MS = 1_000
LONGEST_RETRY_MS = 3_600_000


def delivery_backoff_ms(failed_attempt: int) -> int:
    """How long after attempt ``failed_attempt`` (1, 2, ...) failed the next one runs."""
    return min(FIRST_RETRY_MS << min(failed_attempt - 1, 40), LONGEST_RETRY_MS)


def started_at(run_timeout_at_ms: int, lay: Layout) -> int:
    """When a run started (ms), derived from its fixed timeout (:func:`run_timeout`)."""
    return run_timeout_at_ms - 1000 * lay.total_seconds - int(RUN_MARGIN.total_seconds() * 1000)


def run_timeout(request: ApprovalRequest) -> timedelta:
    """A run's own timeout: every round plus the margin."""
    return timedelta(seconds=layout(request).total_seconds) + RUN_MARGIN


def clean_comment(raw: str) -> str:
    """A vote's comment as the approver typed it: line breaks as ``\\n`` (browsers send a
    textarea's as CRLF), no surrounding blanks. Raises :class:`ValueError` when too long."""
    comment = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(f"the comment must be at most {MAX_COMMENT_CHARS} characters")
    return comment


def tally(rnd: Round, states: Sequence[VoteState]) -> Decision | RoundExpired | None:
    """How the round ended, once it has: a decision, :class:`RoundExpired`, or ``None`` while open.

    Events count in the order they happened (``at``, ms): a cancel ends the
    request; the deadline ends the round; votes decide once ``required``
    approvals are in, on the first rejection with a veto, or without one once
    too few approvers are left to reach ``required``. Later events change nothing.
    """
    events = sorted(
        (s for s in states if isinstance(s, Vote | Canceled | Expired)),
        key=lambda s: (s.at_ms, s.by if isinstance(s, Vote | Canceled) else ""),
    )
    approvals = rejections = 0
    for event in events:
        if isinstance(event, Canceled):
            return event.as_decision()
        if isinstance(event, Expired):
            return RoundExpired()
        if event.decision == "approved":
            approvals += 1
        else:
            rejections += 1
        if approvals >= rnd.required:
            return Decision("approved", event.by, event.comment, event.decided_at)
        if rnd.veto and rejections:
            return Decision("rejected", event.by, event.comment, event.decided_at)
        if len(rnd.approvers) - rejections < rnd.required:
            return Decision("rejected", event.by, event.comment, event.decided_at)
    return None


def at_deadline(req: ApprovalRequest, rnd: Round, ends_at_ms: int) -> Decision | None:
    """What ``on_expiry`` makes of round ``rnd`` ending undecided at ``ends_at_ms``:
    a decision, or ``None`` when the request escalates to its next round."""
    action = req.on_expiry.action
    if action == "escalate" and rnd.index == 0:
        return None
    if action == "approve":
        return Decision("approved", "system", DEFAULT_COMMENT, iso(ends_at_ms))
    if action == "reject":
        return Decision("rejected", "system", DEFAULT_COMMENT, iso(ends_at_ms))
    return Decision.expired(ends_at_ms)


@dataclass(frozen=True, slots=True)
class Progress:
    """For the page and the CLI: how many decided what, and who has not."""

    required: int
    approved: int
    rejected: int
    waiting: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"required": self.required, "approved": self.approved, "rejected": self.rejected,
                "waiting": list(self.waiting)}  # fmt: skip


class Asking(Protocol):
    """What :func:`progress` needs of a round: how many approvals count, and whom it asks
    (in the order of its votes). A :class:`Round`; an inbox's entry of one."""

    @property
    def required(self) -> int: ...
    @property
    def approvers(self) -> Sequence[str]: ...


def progress(rnd: Asking, states: Sequence[VoteState]) -> Progress:
    """Who decided what in ``rnd``, and who still can (an approver whose vote promise holds
    something else, an :class:`Invalid` value, can no longer vote and is not waited for)."""
    cast = {s.by: s.decision for s in states if isinstance(s, Vote)}
    return Progress(
        rnd.required,
        sum(1 for d in cast.values() if d == "approved"),
        sum(1 for d in cast.values() if d == "rejected"),
        tuple(a for a, s in zip(rnd.approvers, states, strict=False) if s is None and a not in cast),
    )


def audit(lay: Layout, states: Mapping[str, VoteState], counted: Collection[str]) -> tuple[AuditEntry, ...]:
    """Every vote cast, in order (who, what, when, the comment, where from), then every
    vote promise that holds something else (``invalid``).

    A vote whose id is not in ``counted`` (the votes its round had when it ended)
    came too late to count: it is shown ``late``. Pure, from settled values only:
    every execution of a run that ended computes the same trail.
    """
    approver_of = lay.approver_of()
    cast = sorted(
        ((vote_id, s) for vote_id, s in states.items() if isinstance(s, Vote)), key=lambda x: (x[1].at_ms, x[0])
    )
    invalid = [
        AuditEntry.invalid(approver_of[i], s.reason) for i in lay.ids() if isinstance(s := states.get(i), Invalid)
    ]
    return (*(v.audit(late=vote_id not in counted) for vote_id, v in cast), *invalid)
