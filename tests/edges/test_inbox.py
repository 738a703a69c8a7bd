"""The inbox's searches over the local server's engine: what they find, and that each one
stops inside the person's region or the request, whatever else the server holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from resonate.types import Value

from hitl import inboxes
from hitl.model import inbox, policy
from hitl.model.records import Vote
from hitl.model.request import parse_start

from .conftest import Server

ME = "me@example.com"


@pytest.fixture
def answers(server: Server) -> list[tuple[dict[str, Any], Any]]:
    """Every ``promise.search`` the engine answers: ``(request, answer)``."""
    seen: list[tuple[dict[str, Any], Any]] = []
    apply = server.engine.apply

    def recording(kind: str, corr_id: str, data: dict[str, Any], now: int) -> tuple[int, Any]:
        status, out = apply(kind, corr_id, data, now)
        if kind == "promise.search":
            seen.append((data, out))
        return status, out

    server.engine.apply = recording  # type: ignore[method-assign]
    return seen


def asked(server: Server, wf: str, approvers: list[str], required: int) -> list[inbox.Entry]:
    """A request as the worker's first step leaves it: its votes (the SDK's tags of a global
    promise of the run) and, for each, an entry in its approver's inbox."""
    body = {"workflow_id": wf, "approvers": approvers, "subject": f"Deploy {wf}", "required": required}
    req = parse_start(json.dumps(body).encode(), "application/json")
    timeout = server.now_ms + 3_600_000
    tags = {"resonate:scope": "global", "resonate:parent": wf, "resonate:origin": wf, "resonate:external": "true"}
    for vote in policy.layout(req).ids():
        server.run(server.client.promises.create(vote, timeout, Value(), {**tags, "resonate:branch": vote}))
    entries = inbox.entries(req, server.now_ms)
    server.run(inboxes.ask(server.client.promises, entries, timeout))
    return entries


def test_every_search_of_a_view_stops_inside_the_region_or_the_request_from_the_first(
    server: Server, answers: list[tuple[dict[str, Any], Any]]
) -> None:
    entries = asked(server, "deploy-1", [ME, "bob@example.com", "carol@example.com"], required=2)
    asked(server, "deploy-2", [ME], required=1)
    # Others' requests, and ids that sort right after the request's own and after the region.
    for i in range(300):
        asked(server, f"deploy-1{i}", [f"other{i}@example.com"], required=1)
    for i in range(300):
        server.run(server.client.promises.create(f"deploy-1:zz{i}", server.now_ms + 60_000, Value(), {}))
        server.run(server.client.promises.create(f"hitl.inbox/~{i}", server.now_ms + 60_000, Value(), {}))
    bob = entries[1].vote_id
    vote = Vote.cast(approve=True, by="bob@example.com", comment="", at_ms=server.now_ms, ip="", user_agent="")
    server.run(server.client.promises.resolve(bob, Value(data=vote.to_json())))

    answers.clear()
    listing = server.run(inboxes.listing(server.client.promises, [ME], now_ms=server.now_ms))  # the first view

    assert sorted(r.entry.workflow_id for r in listing.pending) == ["deploy-1", "deploy-2"]
    [two_of_three] = [r.progress for r in listing.pending if r.entry.workflow_id == "deploy-1"]
    assert two_of_three is not None and (two_of_three.approved, two_of_three.rejected) == (1, 0)
    assert len(answers) == 3
    # The server stops at the match after the limit and answers with a cursor; an answer
    # without one walked every id after its cursor.
    for request, answer in answers:
        assert "cursor" in answer, f"walked to the end of the server's ids: {request}"


def test_a_region_is_fenced_when_its_approver_is_first_asked(server: Server) -> None:
    asked(server, "deploy-7", [ME], required=1)
    fences = [server.promise(id) for id in inbox.fence_ids(inbox.key(ME))]
    assert all(f["state"] == "pending" and f["tags"][inbox.FENCE_TAG] == "true" for f in fences)
    server.network.sent.clear()
    asked(server, "deploy-8", [ME], required=1)  # asked again: the last fence is read, nothing more made
    assert server.network.sent.count("promise.create") == 1 + 1  # the vote and the entry
    assert server.network.sent.count("promise.get") == 1 + 1  # the last fence, and the vote (still open)


def test_a_rows_progress_counts_votes_as_the_run_does(server: Server) -> None:
    entries = asked(server, "deploy-9", [ME, "bob@example.com", "carol@example.com"], required=2)
    bob, carol = entries[1].vote_id, entries[2].vote_id

    def cast(by: str) -> Value:
        return Value(
            data=Vote.cast(approve=True, by=by, comment="", at_ms=server.now_ms, ip="", user_agent="").to_json()
        )

    server.run(server.client.promises.resolve(bob, cast("bob@example.com")))
    server.run(server.client.promises.resolve(carol, cast("mallory@example.com")))  # written with a token: not carol's
    listing = server.run(inboxes.listing(server.client.promises, [ME], now_ms=server.now_ms))
    [row] = listing.pending
    assert row.progress is not None and (row.progress.approved, row.progress.rejected) == (1, 0)
    assert row.progress.waiting == (ME,)  # carol can no longer vote; only I am waited for


def test_a_cancel_settles_the_entries_and_where_none_were_kept_costs_one_read(server: Server) -> None:
    from hitl import operations
    from hitl.client import runs

    approvers = [ME, "bob@example.com", "carol@example.com"]
    for wf, with_inbox in (("deploy-c1", True), ("deploy-c2", False)):
        body = {"workflow_id": wf, "approvers": approvers, "subject": f"Deploy {wf}"}
        req = parse_start(json.dumps(body).encode(), "application/json")
        timeout_at = server.now_ms + int(policy.run_timeout(req).total_seconds() * 1000)
        server.run(runs.create(server.client.promises, wf, policy.WORKFLOW, (req.to_json(),), group="g",
                               timeout_at=timeout_at))  # fmt: skip
        for vote in policy.layout(req).ids():
            server.run(server.client.promises.create(vote, timeout_at, Value(), {}))
        entries = inbox.entries(req, policy.started_at(timeout_at, policy.layout(req)))
        if with_inbox:
            server.run(inboxes.ask(server.client.promises, entries, timeout_at))
        server.network.sent.clear()
        cancel = operations.cancel(server.client, wf, by="ops", reason="", timeout=5, inboxes_on=True)
        assert server.run(cancel) is not None
        settles = server.network.sent.count("promise.settle")
        if with_inbox:
            assert settles == 3 + 3 and all(server.promise(e.id)["state"] == "resolved" for e in entries)
        else:
            assert settles == 3, server.network.sent  # the votes alone: no settle per missing entry


def test_a_vote_settled_before_its_entry_was_made_leaves_no_entry_pending(server: Server) -> None:
    # a cancel (or an operator's `hitl decide`) can land between start and the run's first step
    body = {"workflow_id": "deploy-e1", "approvers": [ME], "subject": "Deploy deploy-e1"}
    req = parse_start(json.dumps(body).encode(), "application/json")
    timeout = server.now_ms + 3_600_000
    [vote] = policy.layout(req).ids()
    server.run(server.client.promises.create(vote, timeout, Value(), {}))
    server.run(server.client.promises.resolve(vote, Value(data={"expired": True, "at": server.now_ms})))
    [entry] = inbox.entries(req, server.now_ms)
    server.run(inboxes.ask(server.client.promises, [entry], timeout))
    assert server.promise(entry.id)["state"] == "resolved"
    listing = server.run(inboxes.listing(server.client.promises, [ME], now_ms=server.now_ms))
    assert listing.pending == ()


def test_a_delivery_never_settles_an_inbox_entry_even_with_a_forged_claim(server: Server) -> None:
    from hitl import bindings
    from hitl.model.records import Claim

    [entry] = asked(server, "deploy-v1", [ME], required=1)
    claim = Claim("attacker-1", entry.id)
    server.run(server.client.promises.create(policy.claim_id(entry.id), server.now_ms + 60_000,
                                             Value(data=claim.to_json()), {}))  # fmt: skip
    with pytest.raises(bindings.NotBound, match="approval request"):
        server.run(bindings.check(server.client.promises, "attacker-1", entry.id))
    assert server.promise(entry.id)["state"] == "pending"
