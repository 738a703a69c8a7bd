"""Approvals end to end: local server, SMTP sink, worker and both functions as processes."""

from __future__ import annotations

import time

import pytest
from support.api import Api, Target, claims_of, token_of, unique
from support.server_records import server_call
from support.stacks import make_stack

from devstack.stack import wait_until
from hitl.security import tokens


def test_approve(api: Api) -> None:
    body = api.request_body()
    r = api.start(body)
    assert r.status_code == 202
    assert r.json() == {"workflow_id": body["workflow_id"], "status": "pending"}

    links = api.wait_email(body["workflow_id"])
    page = api.open(links["approve"])
    assert page.status_code == 200
    assert body["subject"] in page.text and "v42" in page.text

    done = api.decide(links["approve"], "approve", comment="ship it")
    assert done.status_code == 200, done.text
    result = api.wait_done(body["workflow_id"])["result"]
    assert result["decision"] == "approved"
    assert result["by"] == "alice@example.com"
    assert result["comment"] == "ship it"
    assert result["decided_at"].endswith("Z")


def test_reject_with_comment(api: Api) -> None:
    body = api.request_body()
    api.start(body)
    links = api.wait_email(body["workflow_id"])
    assert api.decide(links["reject"], "reject", comment="not on a Friday").status_code == 200
    result = api.wait_done(body["workflow_id"])["result"]
    assert (result["decision"], result["comment"]) == ("rejected", "not on a Friday")


def test_the_email_has_both_parts_and_links(api: Api, local: None) -> None:
    body = api.request_body()
    api.start(body)
    api.wait_email(body["workflow_id"])
    [message] = api.emails(body["workflow_id"])
    assert message.is_multipart()
    types = {part.get_content_type() for part in message.walk()}
    assert {"text/plain", "text/html"} <= types
    html = message.get_body(("html",)).get_content()
    assert "Approve" in html and "Reject" in html
    links = api.wait_email(body["workflow_id"])
    vote = api.vote_id(body["workflow_id"], "alice@example.com")
    assert claims_of(token_of(links["approve"]))[:3] == [vote, "alice@example.com", "approve"]


def test_duplicate_start_is_one_run_and_one_email(api: Api, local: None) -> None:
    body = api.request_body()
    first = api.start(body)
    second = api.start(body)
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json() == {"workflow_id": body["workflow_id"], "status": "pending"}
    links = api.wait_email(body["workflow_id"])
    api.decide(links["approve"])
    api.wait_done(body["workflow_id"])
    again = api.start(body)
    assert again.status_code == 200
    assert again.json()["result"]["decision"] == "approved"
    assert len(api.emails(body["workflow_id"])) == 1


def test_same_id_with_another_request_is_a_conflict(api: Api) -> None:
    body = api.request_body()
    api.start(body)
    r = api.start({**body, "subject": body["subject"] + " (changed)"})
    assert r.status_code == 409
    assert r.json()["field"] == "workflow_id"


def test_first_decision_wins(api: Api) -> None:
    body = api.request_body()
    api.start(body)
    links = api.wait_email(body["workflow_id"])
    page = api.page_tokens(links["approve"])
    assert api.submit(page["approve"], "yes").status_code == 200
    double = api.submit(page["approve"], "yes again")
    conflicting = api.submit(page["reject"], "no")
    assert (double.status_code, conflicting.status_code) == (409, 409)
    assert "Approved" in conflicting.text and "alice@example.com" in conflicting.text
    result = api.wait_done(body["workflow_id"])["result"]
    assert (result["decision"], result["comment"]) == ("approved", "yes")
    # the decided link now shows the first decision
    shown = api.open(links["reject"])
    assert shown.status_code == 409 and "Approved" in shown.text


def test_get_and_head_change_nothing(api: Api) -> None:
    body = api.request_body()
    api.start(body)
    links = api.wait_email(body["workflow_id"])
    for link in links.values():
        for method in ("GET", "HEAD", "GET"):
            assert api.open(link, method).status_code == 200
    assert api.status(body["workflow_id"]).json()["status"] == "pending"


def test_bad_tokens_are_refused_and_change_nothing(api: Api) -> None:
    body = api.request_body()
    api.start(body)
    links = api.wait_email(body["workflow_id"])
    token = token_of(links["approve"])
    payload, mac = token.split(".")
    tampered_claims = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    bad = {
        "tampered signature": f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",
        "tampered claims": f"{tampered_claims}.{mac}",
        "truncated": token[: len(token) // 2],
        "empty": "",
        "garbage": "%%%not-a-token%%%",
        "expired": tokens.sign(
            api.target.signing_key.encode(),
            tokens.Claims(
                api.vote_id(body["workflow_id"], "alice@example.com"),
                "alice@example.com",
                "approve",
                int(time.time()) - 1,
            ),
        ),
        "other key": tokens.sign(
            b"k" * 48,
            tokens.Claims(
                api.vote_id(body["workflow_id"], "alice@example.com"),
                "alice@example.com",
                "approve",
                int(time.time()) + 600,
            ),
        ),
    }
    for name, value in bad.items():
        shown = api.open(f"{api.unblock_url}?token={value}")
        assert shown.status_code == 403, name
        assert value not in shown.text or not value, name
        assert api.submit(value).status_code == 403, name
    assert api.status(body["workflow_id"]).json()["status"] == "pending"


def test_unknown_promise_is_404(api: Api) -> None:
    claims = tokens.Claims(f"{unique()}:3", "alice@example.com", "approve", int(time.time()) + 600)
    token = tokens.sign(api.target.signing_key.encode(), claims)
    assert api.open(f"{api.unblock_url}?token={token}").status_code == 404
    assert api.submit(token).status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"workflow_id": ""}, 400, "workflow_id"),
        ({"workflow_id": "a:b"}, 400, "workflow_id"),
        ({"workflow_id": "x" * 201}, 400, "workflow_id"),
        ({"workflow_id": 7}, 400, "workflow_id"),
        ({"approvers": ["not-an-address"]}, 400, "approvers[0]"),
        ({"approvers": []}, 400, "approvers"),
        ({"subject": None}, 400, "subject"),
        ({"deadline": "400x"}, 400, "deadline"),
        ({"deadline": 0}, 400, "deadline"),
        ({"deadline": "401d"}, 400, "deadline"),
        ({"surprise": 1}, 400, "surprise"),
    ],
)
def test_bad_start_requests(api: Api, change: dict, status: int, field: str) -> None:
    r = api.start({**api.request_body(), **change})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field


def test_missing_field_not_json_and_too_large(api: Api) -> None:
    body = api.request_body()
    del body["approvers"]
    r = api.start(body)
    assert (r.status_code, r.json()["field"]) == (400, "approvers")
    assert api.start(b"workflow_id=x", headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    assert api.start(b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    huge = api.request_body(details={"blob": "x" * 70_000})
    assert api.start(huge).status_code == 413


def test_status_of_unknown_and_invalid_ids(api: Api) -> None:
    assert api.status(unique()).status_code == 404
    assert api.status("a:b").status_code == 400


def test_deadline_expires_without_anyone_touching_it(api: Api) -> None:
    body = api.request_body(deadline=2)
    api.start(body)
    links = api.wait_email(body["workflow_id"])
    result = api.wait_done(body["workflow_id"], timeout=15)["result"]
    assert result["decision"] == "expired"
    assert result["by"] is None
    # the links are dead now: the emailed ones expired with the deadline (403); a link
    # minted for a deployment run outlives it and shows the expiry as the decision (409)
    assert api.open(links["approve"]).status_code == (403 if api.target.inbox else 409)


def test_every_vote_lives_as_long_as_its_request(api: Api, target: Target, local: None) -> None:
    """A vote promise must not time out before its request can end: resonate-sdk 0.8.1's
    ``ctx.promise()`` takes its timeout as an argument (``ctx.options(timeout=...)`` is ignored
    there) and defaults to a day, which ended a 7-day request's votes after one day."""
    body = api.request_body(
        approvers=["alice@example.com", "bob@example.com"],
        deadline="3d",
        on_expiry={"action": "escalate", "to": ["carol@example.com"], "deadline": "2d"},
    )
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    api.wait_email(wf)
    assert target.server_url is not None
    root = server_call(target.server_url, "promise.get", {"id": wf})[1]["promise"]
    for n in (1, 2, 3):
        vote = server_call(target.server_url, "promise.get", {"id": f"{wf}:{n}"})[1]["promise"]
        assert vote["timeoutAt"] == root["timeoutAt"], (n, vote["timeoutAt"] - vote["createdAt"])


def test_server_down_answers_503_quickly(tmp_path, local: None) -> None:
    stack = make_stack(tmp_path)
    try:
        api = Api(Target.local(stack))
        assert stack.server is not None
        stack.server.stop()
        began = time.monotonic()
        r = api.start(api.request_body())
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert time.monotonic() - began < 5.5
        stack.start_server()
        wait_until(lambda: api.start(api.request_body()).status_code == 202, timeout=10, what="recovery")
    finally:
        stack.stop()


def test_no_secret_or_token_in_any_log(api: Api, local: None) -> None:
    """Runs last in this module: every component has logged a whole session by now."""
    body = api.request_body()
    api.start(body)
    links = api.wait_email(body["workflow_id"])
    api.open(links["approve"])
    api.decide(links["approve"])
    api.wait_done(body["workflow_id"])
    token = token_of(links["approve"])
    assert api.target.inbox is not None
    for log in (api.target.inbox.parent / "logs").glob("*.log"):
        if log.name == "smtpsink.log":
            continue  # the dev inbox prints the links on purpose
        text = log.read_text()
        assert api.target.signing_key not in text, log.name
        assert token not in text and "token=" not in text, log.name
