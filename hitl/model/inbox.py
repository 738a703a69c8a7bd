"""An approver's inbox on the Resonate server: one entry promise per vote they are asked for.

With sign-in on, ``unblock``'s inbox lists what waits for the signed-in person.
It asks the Resonate server's own search (no second store), and the search
must stay cheap whatever the server holds. The real server answers
``promise.search`` with ``... WHERE state = $1 AND tags @> $2 AND id > $cursor
ORDER BY id LIMIT $n`` over an index on ``id`` alone (resonatehq/resonate main
at c8d7c7ba: ``PromiseSearchData`` in ``src/types.rs``, ``promise_search`` in
``src/persistence/persistence_postgres.rs``): it walks ids in order from the
cursor until it has ``limit`` matches. So the layout:

- each approver has a region of ids, ``hitl.inbox/<key>/``: ``key`` is a hash of
  their address (casefolded), so a search starts at its cursor;
- an entry is ``hitl.inbox/<key>/<inverted deadline>/<vote id>``, tagged
  ``hitl:inbox=<key>``: newest deadlines first, so the region's first entries are
  the recent ones; its param is everything a row shows (:class:`Entry`);
- it is pending while the vote is open, and settled with what the vote was
  settled with (a vote, an expiry, a cancel, the run's close) by whoever settles
  the vote: one search (``state=pending``) lists what waits;
- the region ends with :data:`FENCES` fence promises (tagged alike, pending
  forever), so a walk never leaves the region: it stops at the latest after the
  fences, whatever comes after the region. A search costs the region: one
  person's entries, not the server's promises. The worker makes the fences
  when it first asks the person (the inbox too, if it finds them missing: entries
  made before inboxes were on).

Pure: ids, the record and its JSON, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hitl.model import policy
from hitl.model.records import RecordError
from hitl.model.request import INBOX_ID_PREFIX, ApprovalRequest

#: The tag naming an entry's (or a fence's) approver key.
TAG = "hitl:inbox"
#: The tag marking a fence.
FENCE_TAG = "hitl:inbox-fence"
#: Fences per region: at least the largest limit an inbox search uses.
FENCES = 40
#: Rows of pending requests an inbox shows (more: a link to the next page).
PENDING_ROWS = 25
#: Entries the "recently ended" part looks through (newest deadlines first).
RECENT_ROWS = 30
#: A fence never times out (year 9999, in ms).
FOREVER_MS = 253_402_300_799_000

_PREFIX = INBOX_ID_PREFIX
#: Deadlines are inverted against this (seconds): newer sorts first, for ten digits.
_EPOCH_END_S = 10**10


def key(approver: str) -> str:
    """The approver's region key: a hash of their address, casefolded (an address is case-insensitive)."""
    return hashlib.sha256(approver.casefold().encode()).hexdigest()[:24]


def region(approver_key: str) -> str:
    """The prefix of every id in an approver's region, and a search's cursor (ids sort after it)."""
    return f"{_PREFIX}{approver_key}/"


def entry_id(approver: str, deadline_s: int, vote_id: str) -> str:
    """The entry of ``approver``'s vote ``vote_id`` whose round ends at ``deadline_s`` (unix seconds,
    the link tokens' expiry: so ``unblock`` finds the entry from a link alone)."""
    return f"{region(key(approver))}{_EPOCH_END_S - deadline_s:010d}/{vote_id}"


def is_inbox(id: str) -> bool:
    """Whether ``id`` is an inbox's (an entry or a fence): hitl's own, never a caller's."""
    return id.startswith(_PREFIX)


def fence_ids(approver_key: str) -> list[str]:
    """The fences ending a region (``~`` sorts after every entry's digits)."""
    return [f"{region(approver_key)}~{i:03d}" for i in range(FENCES)]


@dataclass(frozen=True, slots=True)
class Entry:
    """What an inbox row shows of one vote: a request asking ``approver``."""

    workflow_id: str
    vote_id: str
    approver: str
    subject: str
    #: Who asks, as the requester says (``None`` when they did not say).
    requester: str | None
    #: When this approver was asked (the round's start), and the round's deadline (ms).
    asked_at_ms: int
    deadline_ms: int
    round: int
    #: Approvals needed in this round, and whom it asks (in the order of its votes).
    required: int
    approvers: tuple[str, ...]
    sign_in_required: bool = False
    #: The round's vote ids (its progress), and how many votes the request has in all.
    round_votes: tuple[str, ...] = ()
    all_votes: int = 0

    @property
    def deadline_s(self) -> int:
        return self.deadline_ms // 1000

    @property
    def id(self) -> str:
        return entry_id(self.approver, self.deadline_s, self.vote_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id, "vote_id": self.vote_id, "approver": self.approver,
            "subject": self.subject, "requester": self.requester, "asked_at": self.asked_at_ms,
            "deadline": self.deadline_ms, "round": self.round, "required": self.required,
            "approvers": list(self.approvers), "sign_in": self.sign_in_required, "round_votes": list(self.round_votes),
            "all_votes": self.all_votes,
        }  # fmt: skip

    @classmethod
    def from_json(cls, value: object) -> Entry:
        if not isinstance(value, Mapping):
            raise RecordError("not an inbox entry")
        try:
            return cls(
                str(value["workflow_id"]), str(value["vote_id"]), str(value["approver"]), str(value["subject"]),
                None if value.get("requester") is None else str(value["requester"]), int(value["asked_at"]),
                int(value["deadline"]), int(value["round"]), int(value["required"]), tuple(str(a) for a in value["approvers"]),
                value.get("sign_in") is True, tuple(str(v) for v in value.get("round_votes") or ()),
                int(value.get("all_votes") or 0),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise RecordError("not an inbox entry") from None


def entries(req: ApprovalRequest, started_at_ms: int) -> list[Entry]:
    """The entry of every vote of ``req`` (all rounds), for a run started at ``started_at_ms``."""
    lay = policy.layout(req)
    total = len(lay.ids())
    out: list[Entry] = []
    for rnd in lay.rounds:
        ends_at = lay.ends_at(started_at_ms, rnd.index)
        asked_at = ends_at - 1000 * rnd.seconds
        out += [
            Entry(
                req.workflow_id, vote_id, approver, req.subject, req.requester, asked_at, ends_at, rnd.index,
                rnd.required, rnd.approvers, req.sign_in_required, rnd.vote_ids, total,
            )
            for approver, vote_id in zip(rnd.approvers, rnd.vote_ids, strict=True)
        ]  # fmt: skip
    return out
