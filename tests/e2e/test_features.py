"""Quorum and veto, reminders, escalation and default decisions, audit, cancel, Slack and webhooks.

Real processes; short durations (seconds, as request parameters), never sleeps of real hours.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.api import Api, Target, token_of, unique
from support.receivers import Receiver
from support.server_records import server_call, wait_ran_again, wait_suspended
from support.stacks import targets

from devstack.smtpsink import links_in
from devstack.stack import wait_until
from hitl.security import signatures as webhook

NOTIFY_SECRET = secrets.token_urlsafe(32)

#: These tests read the local inbox and receive Slack/webhook posts on this machine.
pytestmark = pytest.mark.usefixtures("local")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    channels = {
        "HITL_SLACK_ALLOWED_HOSTS": "127.0.0.1",
        "HITL_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "HITL_NOTIFY_WEBHOOK_SECRET": NOTIFY_SECRET,
    }
    yield from targets(tmp_path_factory, "features", env=channels)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def people(*names: str) -> list[str]:
    return [f"{n}@example.com" for n in names]


def decide_and_wait_for_the_tally(api: Api, workflow_id: str, link: str, decision: str, **kwargs: str) -> None:
    """Press ``decision`` on ``link`` and return once the run has counted the vote.

    The click only settles the vote; the run counts it later, on a worker. So
    a status read right after the click says "pending" whatever the vote does:
    wait until the run (waiting, its task suspended) has been resumed by the
    vote and is at rest again, waiting or done.
    """
    assert api.target.server_url is not None
    waiting = wait_suspended(api.target.server_url, workflow_id)
    assert api.decide(link, decision, **kwargs).status_code == 200
    wait_ran_again(api.target.server_url, workflow_id, since=waiting)


def test_quorum_two_of_three_with_progress_and_audit(api: Api) -> None:
    body = api.request_body(approvers=people("alice", "bob", "carol"), required=2)
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    alice, bob, carol = (api.wait_email(wf, a) for a in people("alice", "bob", "carol"))

    decide_and_wait_for_the_tally(api, wf, alice["approve"], "approve", comment="fine by me")
    assert api.status(wf).json()["status"] == "pending"
    page = api.open(bob["approve"]).text
    assert "1 of 2 required approvals so far" in page

    assert api.decide(bob["approve"], comment="ok").status_code == 200
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["by"]) == ("approved", "bob@example.com")
    audit = result["decisions"]
    assert [d["by"] for d in audit] == ["alice@example.com", "bob@example.com"]
    assert all(d["ip"] == "127.0.0.1" and "python-requests" in d["user_agent"] for d in audit)
    assert audit[0]["comment"] == "fine by me"

    # carol's links now show the outcome; her click changes nothing
    late = api.open(carol["reject"])
    assert late.status_code == 409 and "Approved" in late.text
    assert api.submit(token_of(carol["reject"])).status_code == 409
    assert api.wait_done(wf)["result"]["decision"] == "approved"


def test_one_rejection_vetoes(api: Api) -> None:
    body = api.request_body(approvers=people("alice", "bob", "carol"), required=2)
    api.start(body)
    links = api.wait_email(body["workflow_id"], "carol@example.com")
    api.decide(links["reject"], "reject", comment="no")
    result = api.wait_done(body["workflow_id"])["result"]
    assert (result["decision"], result["by"], result["comment"]) == ("rejected", "carol@example.com", "no")


def test_without_veto_rejected_only_when_quorum_is_out_of_reach(api: Api) -> None:
    body = api.request_body(approvers=people("alice", "bob", "carol"), required=2, veto=False)
    wf = body["workflow_id"]
    api.start(body)
    decide_and_wait_for_the_tally(api, wf, api.wait_email(wf, "alice@example.com")["reject"], "reject")
    assert api.status(wf).json()["status"] == "pending"
    api.decide(api.wait_email(wf, "bob@example.com")["reject"], "reject")
    assert api.wait_done(wf)["result"]["decision"] == "rejected"


def test_reminders_go_to_who_has_not_decided(api: Api) -> None:
    body = api.request_body(approvers=people("alice", "bob"), required=2, deadline=8, remind=["5s"])
    wf = body["workflow_id"]
    api.start(body)
    api.decide(api.wait_email(wf, "alice@example.com")["approve"])

    def reminders(approver: str) -> list[Any]:
        return [m for m in api.emails(wf, approver) if str(m["Subject"]).startswith("Reminder")]

    wait_until(lambda: reminders("bob@example.com"), timeout=15, what="bob's reminder")
    assert reminders("alice@example.com") == []
    [reminder] = reminders("bob@example.com")
    api.decide(links_in(reminder)["approve"])  # the reminder carries the same links
    assert api.wait_done(wf)["result"]["decision"] == "approved"


def test_no_reminder_after_the_decision(api: Api) -> None:
    body = api.request_body(deadline=6, remind=["4s"])
    wf = body["workflow_id"]
    api.start(body)
    api.decide(api.wait_email(wf)["approve"])
    api.wait_done(wf)
    reminder_due = time.monotonic() + 3
    wait_until(lambda: time.monotonic() > reminder_due + 1, timeout=10, what="the reminder's time to pass")
    assert len(api.emails(wf)) == 1


def test_default_decision_at_the_deadline(api: Api) -> None:
    body = api.request_body(deadline=2, on_expiry="approve")
    api.start(body)
    result = api.wait_done(body["workflow_id"], timeout=20)["result"]
    assert (result["decision"], result["by"]) == ("approved", "system")


def test_escalation_asks_others_with_a_new_deadline(api: Api) -> None:
    body = api.request_body(deadline=2, on_expiry={"action": "escalate", "to": people("boss"), "deadline": "60s"})
    wf = body["workflow_id"]
    api.start(body)
    first = api.wait_email(wf, "alice@example.com")
    boss = api.wait_email(wf, "boss@example.com", timeout=20)
    assert api.status(wf).json()["status"] == "pending"
    assert api.open(first["approve"]).status_code == 403  # the first links stopped working
    api.decide(boss["approve"], comment="escalated and approved")
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["by"]) == ("approved", "boss@example.com")


def test_cancel_ends_the_request_and_its_links(api: Api) -> None:
    body = api.request_body(approvers=people("alice", "bob"))
    wf = body["workflow_id"]
    api.start(body)
    links = api.wait_email(wf, "alice@example.com")
    r = api.start({"workflow_id": wf, "reason": "no longer needed"}, path="cancel")
    assert r.status_code == 202, r.text
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["comment"]) == ("canceled", "no longer needed")
    page = api.open(links["approve"])
    assert page.status_code == 410 and "canceled" in page.text
    assert api.submit(token_of(links["approve"])).status_code == 410
    again = api.start({"workflow_id": wf}, path="cancel")
    assert again.status_code == 409
    assert api.start({"workflow_id": unique()}, path="cancel").status_code == 404


def test_webhook_channel_gets_signed_events_with_the_links(api: Api, receiver: Receiver) -> None:
    body = api.request_body(notify=[{"type": "webhook", "url": f"{receiver.url}/hook"}])
    wf = body["workflow_id"]
    api.start(body)
    events = wait_until(
        lambda: [(h, e) for h, e in receiver.bodies("/hook") if e["workflow_id"] == wf], timeout=15, what="the event"
    )
    headers, event = events[0]
    sent = next(b for p, h, b in receiver.calls if p == "/hook" and json.loads(b)["workflow_id"] == wf)
    webhook.verify(NOTIFY_SECRET.encode(), sent, headers["X-Hitl-Signature"], now=time.time())  # the exact bytes sent
    assert event["type"] == "approval.requested" and event["approver"] == "alice@example.com"
    assert api.emails(wf) == []  # only the channels the request named
    api.decide(event["links"]["reject"], "reject")
    assert api.wait_done(wf)["result"]["decision"] == "rejected"


def test_slack_channel_gets_buttons(api: Api, receiver: Receiver) -> None:
    body = api.request_body(notify=[{"type": "email"}, {"type": "slack", "url": f"{receiver.url}/slack"}])
    wf = body["workflow_id"]
    api.start(body)
    payloads = wait_until(
        lambda: [p for _, p in receiver.bodies("/slack") if wf in json.dumps(p)], timeout=15, what="the Slack post"
    )
    buttons = [e for block in payloads[0]["blocks"] if block["type"] == "actions" for e in block["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Approve", "Reject"]
    api.wait_email(wf)  # and the email, too: both channels were named
    api.decide(buttons[0]["url"])
    assert api.wait_done(wf)["result"]["decision"] == "approved"


def test_channel_urls_must_be_allowlisted(api: Api) -> None:
    r = api.start(api.request_body(notify=[{"type": "webhook", "url": "https://evil.example/hook"}]))
    assert r.status_code == 400 and r.json()["field"] == "notify[0].url"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"required": 2}, "required"),
        ({"remind": ["8d"]}, "remind[0]"),
        ({"on_expiry": "maybe"}, "on_expiry"),
        ({"on_expiry": {"action": "escalate", "to": ["x"], "deadline": "1h"}}, "on_expiry.to[0]"),
        ({"veto": "yes"}, "veto"),
        ({"notify": [{"type": "pigeon"}]}, "notify[0]"),
    ],
)
def test_bad_feature_options(api: Api, change: dict[str, Any], field: str) -> None:
    r = api.start({**api.request_body(), **change})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


def test_the_deadline_run_holds_the_vote_ids_not_the_request(api: Api) -> None:
    """The server keeps a waiting request's expiry run (and its param) for days: it carries only what it needs."""
    assert api.target.server_url is not None
    wid = unique()
    assert api.start(api.request_body(wid, approvers=["alice@example.com", "bob@example.com"])).status_code == 202
    api.wait_email(wid)
    status, data = server_call(api.target.server_url, "promise.get", {"id": f"{wid}:r0.expiry"})
    assert status == 200, data
    record = data["promise"]
    call = json.loads(base64.b64decode(record["param"]["data"]))
    assert call["args"] == [[api.vote_id(wid, "alice@example.com"), api.vote_id(wid, "bob@example.com")]]
