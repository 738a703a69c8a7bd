"""Only the right party decides: the attacks of issue 15, over real processes.

Whoever may call ``start`` can name any promise id in ``on_decision``, and the
Resonate server lets hitl settle any promise. These tests try every way a
``start`` caller could turn a request for approval into an approval of something
else, and check that nothing but the right approver's click decides.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from resonate.types import Value
from support import server_records
from support.api import Api, unique
from support.server_records import server_call
from support.stacks import local_stack

from devstack.stack import Stack, wait_until
from hitl.client import runs
from hitl.clock import now_ms
from hitl.model import policy
from hitl.model.records import Vote
from hitl.model.request import ApprovalRequest

MONTH_MS = 30 * 86_400_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from local_stack(tmp_path_factory, "trust", env={"HITL_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"})


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack)


def on_server(stack: Stack, call: Any) -> Any:
    return server_records.on_server(stack.server.url, call)


def record(stack: Stack, id: str) -> dict[str, Any]:
    status, data = server_call(stack.server.url, "promise.get", {"id": id})
    assert status == 200, data
    promise = data["promise"]
    raw = promise["value"].get("data")
    promise["decoded"] = json.loads(base64.b64decode(raw)) if raw else None
    return promise


def caller_promise(stack: Stack, timeout_ms: int = MONTH_MS) -> str:
    id = f"{unique('deploys')}:1"  # as a caller's workflow's ctx.promise() names it: predictable
    on_server(stack, lambda p: p.create(id, now_ms() + timeout_ms, Value(), {}))
    return id


def targets(*ids: str) -> list[dict[str, str]]:
    return [{"type": "promise", "id": id} for id in ids]


def victim(api: Api) -> str:
    """A pending request whose approver has not clicked."""
    body = api.request_body(approvers=["victim-approver@example.com"])
    assert api.start(body).status_code == 202
    api.wait_email(body["workflow_id"], "victim-approver@example.com")
    return str(body["workflow_id"])


def attacker(api: Api, on_decision: list[dict[str, str]], **fields: Any) -> tuple[str, Any]:
    """A request whose approver is the attacker themself; its start's answer."""
    body = api.request_body(approvers=["attacker@example.com"], on_decision=on_decision, **fields)
    return str(body["workflow_id"]), api.start(body)


def decide_own(api: Api, wf: str, decision: str = "approve") -> dict[str, Any]:
    api.decide(api.wait_email(wf, "attacker@example.com")[decision], decision)
    return api.wait_done(wf)


def deliveries_settled(api: Api, wf: str) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (d := api.status(wf).json().get("on_decision", [])) and all(x["state"] != "pending" for x in d) and d,
        timeout=30,
        what=f"{wf}'s deliveries",
    )


def still_pending_and_decidable(api: Api, wf: str) -> None:
    """The victim is untouched: pending, and its own approver's link still decides it."""
    assert api.status(wf).json()["status"] == "pending"
    assert api.decide(api.wait_email(wf, "victim-approver@example.com")["approve"], comment="mine").status_code == 200
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["by"]) == ("approved", "victim-approver@example.com")


def test_another_requests_root_is_refused_at_start(api: Api) -> None:
    b = victim(api)
    _, r = attacker(api, targets(b))
    assert (r.status_code, r.json()["field"]) == (400, "on_decision[0].id")
    assert "approval request" in r.json()["error"]
    still_pending_and_decidable(api, b)


def test_another_requests_vote_is_never_settled(api: Api, stack: Stack) -> None:
    b = victim(api)
    a, r = attacker(api, targets(f"{b}:1"))
    assert r.status_code == 202, r.text  # a vote carries no mark of hitl's: start cannot tell, delivery does
    assert decide_own(api, a, "reject")["result"]["decision"] == "rejected"
    [delivery] = deliveries_settled(api, a)
    assert delivery["state"] == "failed" and "belongs to an approval request" in delivery["error"]
    assert record(stack, f"{b}:1")["state"] == "pending"
    logged = [line for w in stack.workers for line in w.output().splitlines() if "for good" in line and a in line]
    assert len(logged) == 1, logged
    still_pending_and_decidable(api, b)


def test_a_requests_deferred_and_delivery_runs_are_refused_at_start(api: Api, stack: Stack) -> None:
    b = victim(api)
    expiry = f"{b}:r0.expiry"
    wait_until(lambda: server_call(stack.server.url, "promise.get", {"id": expiry})[0] == 200, what="the expiry run")
    hooked = api.request_body(on_decision=[{"type": "webhook", "url": "http://127.0.0.1:9/gone"}])
    assert api.start(hooked).status_code == 202
    decide_own_alice = api.decide(api.wait_email(hooked["workflow_id"])["approve"])
    assert decide_own_alice.status_code == 200
    delivery = policy.delivery_id(hooked["workflow_id"], 0, 1)
    wait_until(lambda: server_call(stack.server.url, "promise.get", {"id": delivery})[0] == 200, what="delivery run")
    for target in (expiry, delivery, policy.claim_id(f"{b}:1")):
        _, r = attacker(api, targets(target))
        assert (r.status_code, r.json()["field"]) == (400, "on_decision[0].id"), (target, r.text)
    still_pending_and_decidable(api, b)


def test_a_callers_promise_is_bound_to_the_first_request_that_names_it(api: Api, stack: Stack) -> None:
    promise = caller_promise(stack)
    owner = api.request_body(on_decision=targets(promise))
    assert api.start(owner).status_code == 202
    assert api.start(owner).status_code == 202  # the same request again: still its own
    other, r = attacker(api, targets(promise))
    assert (r.status_code, r.json()["field"]) == (409, "on_decision[0].id"), r.text
    assert api.status(other).status_code == 404  # nothing was started
    same_id_other_body = api.request_body(owner["workflow_id"], subject="else", on_decision=targets(promise))
    assert api.start(same_id_other_body).status_code == 409
    api.decide(api.wait_email(owner["workflow_id"])["approve"], comment="ship")
    result = api.wait_done(owner["workflow_id"])["result"]
    assert wait_until(lambda: record(stack, promise)["decoded"], what="the promise") == result


def test_a_stranger_who_names_a_promise_first_makes_its_owners_start_fail_loudly(api: Api, stack: Stack) -> None:
    # The caller's workflow created its promise (predictable: <run>:1) and is about to start its
    # request; a stranger names it first. The owner's start is refused, never answered silently.
    promise = caller_promise(stack)
    stranger, r = attacker(api, targets(promise))
    assert r.status_code == 202
    owner = api.request_body(on_decision=targets(promise))
    r = api.start(owner)
    assert (r.status_code, r.json()["field"]) == (409, "on_decision[0].id")
    assert "another request" in r.json()["error"]
    assert api.status(owner["workflow_id"]).status_code == 404
    # and a promise that does not exist yet cannot be taken ahead of its owner at all
    _, r = attacker(api, targets(f"{unique('deploys')}:1"))
    assert (r.status_code, r.json()["field"]) == (400, "on_decision[0].id")
    assert "no promise has this id" in r.json()["error"]
    decide_own(api, stranger)


def test_a_target_created_after_start_is_never_settled(api: Api, stack: Stack) -> None:
    """start refuses a promise that does not exist; and a request that names one anyway (created
    on the server directly, by an operator, or a start whose check was raced) still cannot settle
    a request's promise created later, whether or not it holds the promise's claim."""
    later = unique("later")
    for forge_claim in (False, True):
        forged_id = unique("forged")
        forged = ApprovalRequest.from_json(
            {"workflow_id": forged_id, "approvers": ["attacker@example.com"], "subject": f"Approve {forged_id}",
             "on_decision": targets(f"{later}:1")}
        )  # fmt: skip
        timeout_at = now_ms() + int(policy.run_timeout(forged).total_seconds() * 1000)
        on_server(
            stack,
            lambda p, forged=forged, timeout_at=timeout_at: runs.create(
                p, forged.workflow_id, policy.WORKFLOW, (forged.to_json(),), group="worker", timeout_at=timeout_at
            ),
        )
        api.started[forged.workflow_id] = forged.to_json()
        if forge_claim:  # an operator who knows how bindings work, claiming it for the forged request
            claim = {"owner": forged.workflow_id, "target": f"{later}:1"}
            on_server(
                stack, lambda p, c=claim: p.create(policy.claim_id(c["target"]), now_ms() + MONTH_MS, Value(data=c), {})
            )
        if not forge_claim:
            body = api.request_body(later, approvers=["victim-approver@example.com"])
            assert api.start(body).status_code == 202
            api.wait_email(later, "victim-approver@example.com")
        api.decide(api.wait_email(forged.workflow_id, "attacker@example.com")["approve"])
        [delivery] = deliveries_settled(api, forged.workflow_id)
        assert delivery["state"] == "failed", delivery
        says = "belongs to an approval request" if forge_claim else "not bound to this request"
        assert says in delivery["error"], delivery
        assert record(stack, f"{later}:1")["state"] == "pending"
    still_pending_and_decidable(api, later)


def test_the_same_target_twice_in_one_request_is_refused(api: Api, stack: Stack) -> None:
    promise = caller_promise(stack)
    _, r = attacker(api, targets(promise, promise))
    assert (r.status_code, r.json()["field"]) == (400, "on_decision[1]")


def test_a_vote_that_is_not_a_vote_decides_nothing(api: Api, stack: Stack) -> None:
    """A holder of the server's token writes into approvers' vote promises: a request's result
    (what a delivery would have written), and a vote cast for somebody else. Neither decides;
    the audit shows them invalid, the worker logs each once, and the deadline still applies."""
    body = api.request_body(approvers=["alice@example.com", "bob@example.com"], deadline="4s")
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    api.wait_email(wf, "bob@example.com")
    a_result = {"decision": "approved", "by": "alice@example.com", "comment": "", "decided_at": None, "decisions": []}
    someone_elses = Vote.cast(approve=True, by="mallory@example.com", comment="", at_ms=now_ms(), ip="", user_agent="")
    on_server(stack, lambda p: p.resolve(f"{wf}:1", Value(data=a_result)))
    on_server(stack, lambda p: p.resolve(f"{wf}:2", Value(data=someone_elses.to_json())))
    result = api.wait_done(wf, timeout=30)["result"]
    assert (result["decision"], result["by"]) == ("expired", None)  # nothing decided it but the deadline
    assert [(d["by"], d["decision"]) for d in result["decisions"]] == [
        ("alice@example.com", "invalid"), ("bob@example.com", "invalid"),
    ]  # fmt: skip
    assert "someone else" in result["decisions"][1]["error"]
    logged = [line for w in stack.workers for line in w.output().splitlines() if "not a vote" in line and wf in line]
    assert len(logged) == 2, logged
