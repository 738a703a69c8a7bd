"""Getting the decision (``on_decision``), end to end: a caller's promise and a caller's webhook.

Real processes: the stack, and a local HTTP receiver that verifies every signature,
answers what each test scripts, and accepts each event once by its idempotency key.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from resonate.types import Value
from support.api import Api, unique
from support.server_records import on_server
from support.stacks import local_stack, make_stack

from devstack.stack import PYTHON, ROOT, Proc, Stack, wait_until
from hitl.security import signatures

SECRET = secrets.token_urlsafe(32)
ENV = {
    "HITL_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "HITL_NOTIFY_WEBHOOK_SECRET": SECRET,
}


@dataclass
class Call:
    path: str
    key: str
    signed: bool
    body: dict[str, Any]
    answered: int
    at: float = 0.0


@dataclass
class Receiver:
    """An ``approval.decided`` receiver: answers each path's script, then 200; verifies signatures;
    accepts an event once (by ``X-Hitl-Idempotency-Key``), as a careful receiver does."""

    #: Per path, the answers to give in turn: a status, or (status, headers).
    scripts: dict[str, list[int | tuple[int, dict[str, str]]]] = field(default_factory=dict)
    #: Paths whose next call is held open until ``release`` is set (a receiver that hangs).
    hold: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    calls: list[Call] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("X-Hitl-Idempotency-Key", "")
                try:
                    signatures.verify(SECRET.encode(), raw, self.headers.get(signatures.HEADER), now=time.time())
                    signed = True
                except signatures.SignatureError:
                    signed = False
                if self.path in receiver.hold:
                    receiver.hold.discard(self.path)
                    receiver.calls.append(Call(self.path, key, signed, json.loads(raw), 0, time.monotonic()))
                    receiver.release.wait(60)
                    return  # the connection is dropped without an answer
                script = receiver.scripts.get(self.path, [])
                answer = script.pop(0) if script else 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                if not signed:
                    status = 401
                receiver.calls.append(Call(self.path, key, signed, json.loads(raw), status, time.monotonic()))
                if status == 200:
                    receiver.accepted.setdefault(key, json.loads(raw))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[Call]:
        return [c for c in list(self.calls) if c.path == path]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from local_stack(tmp_path_factory, "delivery", env=ENV)


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.server.shutdown()


def run(stack: Stack, call: Any) -> Any:
    return on_server(stack.server.url, call)


#: A caller's promise outlives the request it is given to (7 days by default): a month.
MONTH_MS = 30 * 86_400_000


def caller_promise(stack: Stack, timeout_ms: int = MONTH_MS) -> str:
    """A promise of a caller's own (another origin), pending, as their workflow would hold it."""
    id = f"{unique('caller')}:1"
    run(stack, lambda p: p.create(id, int(time.time() * 1000) + timeout_ms, Value(), {}))
    return id


def deliveries(api: Api, wf: str) -> list[dict[str, Any]]:
    return api.status(wf).json().get("on_decision", [])


def settled(api: Api, wf: str, n: int = 1) -> list[dict[str, Any]]:
    """The deliveries once ``n`` of them are no longer pending."""
    return wait_until(
        lambda: (d := deliveries(api, wf)) and sum(x["state"] != "pending" for x in d) >= n and d,
        timeout=30,
        what=f"{wf}'s deliveries",
    )


def test_a_webhook_answering_503_twice_gets_the_event_three_times_and_accepts_it_once(
    api: Api, receiver: Receiver, stack: Stack
) -> None:
    receiver.scripts["/flaky"] = [503, 503]
    body = api.request_body(on_decision=[{"type": "webhook", "url": receiver.url + "/flaky"}])
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    assert deliveries(api, wf) == [
        {"type": "webhook", "host": "127.0.0.1", "state": "pending", "attempts": 0, "error": None,
         "last_attempt_at": None}
    ]  # fmt: skip
    api.decide(api.wait_email(wf)["approve"])
    result = api.wait_done(wf)["result"]

    [delivery] = settled(api, wf)
    calls = receiver.on("/flaky")
    assert [c.answered for c in calls] == [503, 503, 200]
    assert all(c.signed for c in calls)
    assert len({c.key for c in calls}) == 1 and len(receiver.accepted) == 1
    event = receiver.accepted[calls[0].key]
    assert (event["type"], event["workflow_id"], event["result"]) == ("approval.decided", wf, result)
    assert (delivery["state"], delivery["attempts"], delivery["error"]) == ("delivered", 3, None)

    # the operator sees the same through the CLI
    cli = {**os.environ, "RESONATE_URL": stack.server.url}
    shown = subprocess.run(
        [PYTHON, "-m", "hitl.edges.cli", "status", wf], env=cli, capture_output=True, text=True, timeout=30, cwd=ROOT
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^webhook\s+127\.0\.0\.1\s+delivered\s+3\s", shown.stdout, re.M), shown.stdout


def test_a_429_or_503_with_retry_after_is_tried_again_no_sooner(api: Api, receiver: Receiver) -> None:
    set_at = time.monotonic()
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 6))
    receiver.scripts["/busy"] = [(429, {"Retry-After": "2"}), (503, {"Retry-After": later})]
    body = api.request_body(on_decision=[{"type": "webhook", "url": receiver.url + "/busy"}])
    wf = body["workflow_id"]
    api.start(body)
    api.decide(api.wait_email(wf)["approve"])
    [delivery] = settled(api, wf)
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 3)
    first, second, third = receiver.on("/busy")
    assert [c.answered for c in (first, second, third)] == [429, 503, 200]
    # the backoff alone would have tried again after 1 s, then 2 s more (about set_at + 3.5)
    assert second.at - first.at >= 2.0
    assert third.at >= set_at + 6.0 - 1.0  # the HTTP date counts whole seconds


def test_a_4xx_is_not_retried_and_the_target_fails(api: Api, receiver: Receiver, stack: Stack) -> None:
    receiver.scripts["/gone"] = [410]
    body = api.request_body(on_decision=[{"type": "webhook", "url": receiver.url + "/gone"}])
    wf = body["workflow_id"]
    api.start(body)
    api.decide(api.wait_email(wf)["reject"], "reject")
    [delivery] = settled(api, wf)
    assert (delivery["state"], delivery["attempts"]) == ("failed", 1)
    assert "HTTP 410" in delivery["error"] and "/gone" not in delivery["error"]
    # no second attempt: the next would have come 1 s later
    time.sleep(2.5)  # an absence check: nothing to poll for
    assert len(receiver.on("/gone")) == 1
    assert deliveries(api, wf)[0]["attempts"] == 1


def test_a_callers_promise_is_resolved_with_the_result(api: Api, stack: Stack) -> None:
    promise = caller_promise(stack)
    body = api.request_body(on_decision=[{"type": "promise", "id": promise}])
    wf = body["workflow_id"]
    api.start(body)
    api.decide(api.wait_email(wf)["approve"], comment="ok")
    result = api.wait_done(wf)["result"]
    record = wait_until(
        lambda: (r := run(stack, lambda p: p.get(promise))).state != "pending" and r, timeout=15, what="the promise"
    )
    assert (record.state, record.value.data) == ("resolved", result)
    assert settled(api, wf)[0] == {
        "type": "promise", "id": promise, "state": "delivered", "attempts": 1, "error": None,
        "last_attempt_at": settled(api, wf)[0]["last_attempt_at"],
    }  # fmt: skip


def test_a_missing_settled_or_short_lived_promise_is_refused_at_start(api: Api, stack: Stack) -> None:
    taken = caller_promise(stack)
    run(stack, lambda p: p.resolve(taken, Value(data={"mine": True})))
    short = caller_promise(stack, timeout_ms=86_400_000)  # the SDK's default: a day, for a 7-day request
    for target, says in [
        (f"{unique('nobody')}:1", "no promise has this id"),
        (taken, "already settled"),
        (short, "before the request can end"),
    ]:
        wf = unique()
        r = api.start(api.request_body(wf, on_decision=[{"type": "webhook", "url": "http://127.0.0.1:9/x"},
                                                        {"type": "promise", "id": target}]))  # fmt: skip
        assert (r.status_code, r.json()["field"]) == (400, "on_decision[1].id"), r.text
        assert says in r.json()["error"]
        assert api.status(wf).status_code == 404  # nothing was started
    assert run(stack, lambda p: p.get(taken)).value.data == {"mine": True}
    # a promise that outlives the request's deadline (escalation included) plus an hour is taken
    hour = caller_promise(stack, timeout_ms=(2 * 3600 + 60) * 1000 + 3_600_000)
    body = api.request_body(
        deadline="1h", on_expiry={"action": "escalate", "to": ["bob@example.com"], "deadline": "1h"},
        on_decision=[{"type": "promise", "id": hour}],
    )  # fmt: skip
    assert api.start(body).status_code == 202


def test_a_promise_settled_after_start_fails_once_and_changes_nothing(
    api: Api, stack: Stack, receiver: Receiver
) -> None:
    mine = caller_promise(stack)
    body = api.request_body(
        on_decision=[{"type": "promise", "id": mine}, {"type": "webhook", "url": receiver.url + "/ok"}]
    )
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    run(stack, lambda p: p.resolve(mine, Value(data={"gave up": True})))  # its owner settled it meanwhile
    api.decide(api.wait_email(wf)["approve"])
    assert api.wait_done(wf)["result"]["decision"] == "approved"
    first, second = settled(api, wf, 2)
    assert (first["state"], first["attempts"]) == ("failed", 1) and "already settled" in first["error"]
    assert second["state"] == "delivered"  # one failing target holds back no other
    assert run(stack, lambda p: p.get(mine)).value.data == {"gave up": True}
    errors = [line for line in stack.workers[0].output().splitlines() if "for good" in line and wf in line]
    assert len(errors) == 1, errors


@pytest.mark.parametrize(
    ("on_decision", "field"),
    [
        ([{"type": "promise", "id": f"c{i}:1"} for i in range(11)], "on_decision"),
        ([{"type": "promise", "id": ""}], "on_decision[0].id"),
        ([{"type": "promise", "id": "x\u0000y"}], "on_decision[0].id"),
        ([{"type": "promise", "id": "SELF:1"}], "on_decision[0].id"),
        ([{"type": "promise", "id": "a:1"}, {"type": "promise", "id": "a:1"}], "on_decision[1]"),
        ([{"type": "webhook", "url": "https://elsewhere.example.com/hook"}], "on_decision[0].url"),
        ([{"type": "webhook", "url": "ftp://127.0.0.1/hook"}], "on_decision[0].url"),
        ([{"type": "email"}], "on_decision[0]"),
        ([{"type": "promise", "id": "a:1", "url": "x"}], "on_decision[0].url"),
        ("promise", "on_decision"),
    ],
)
def test_bad_targets_are_400_with_the_field(api: Api, on_decision: Any, field: str) -> None:
    wf = unique()
    if isinstance(on_decision, list):
        on_decision = json.loads(json.dumps(on_decision).replace("SELF", wf))
    r = api.start(api.request_body(wf, on_decision=on_decision))
    assert (r.status_code, r.json().get("field")) == (400, field), r.text


def test_a_worker_killed_between_the_decision_and_the_delivery_delivers_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    stack = make_stack(tmp_path, env=ENV)
    try:
        api = Api(stack)
        promise = caller_promise(stack)
        receiver.hold.add("/slow")
        body = api.request_body(
            on_decision=[{"type": "webhook", "url": receiver.url + "/slow"}, {"type": "promise", "id": promise}]
        )
        wf = body["workflow_id"]
        api.start(body)
        api.decide(api.wait_email(wf)["approve"])
        wait_until(lambda: receiver.on("/slow"), timeout=20, what="the first delivery to arrive")
        stack.workers[0].kill()  # mid-delivery: the POST is in flight, its step unrecorded
        receiver.release.set()
        stack.add_worker("worker2")
        [webhook, settled_promise] = settled(api, wf, 2)
        calls = receiver.on("/slow")
        assert len(calls) == 2 and len({c.key for c in calls}) == 1  # sent again, under the same key
        assert len(receiver.accepted) == 1
        assert (webhook["state"], settled_promise["state"]) == ("delivered", "delivered")
        assert run(stack, lambda p: p.get(promise)).value.data == api.wait_done(wf)["result"]
    finally:
        stack.stop()


def test_the_receiver_example_verifies_and_acts_once(api: Api, stack: Stack, tmp_path: Path) -> None:
    """examples/webhook_receiver, as it ships: signed events acted on once, anything else refused."""
    receiver = Proc(
        "receiver", [PYTHON, "-m", "examples.webhook_receiver.receiver", "--port", "0", "--seen", str(tmp_path / "seen")],
        log_dir=tmp_path, env={"HITL_NOTIFY_WEBHOOK_SECRET": SECRET},
    )  # fmt: skip
    try:
        url = receiver.wait_for_line("listening on ").split()[-1]
        body = api.request_body(on_decision=[{"type": "webhook", "url": url + "hitl"}])
        wf = body["workflow_id"]
        api.start(body)
        api.decide(api.wait_email(wf)["reject"], "reject")
        assert settled(api, wf)[0]["state"] == "delivered"
        acted = wait_until(lambda: [json.loads(x) for x in receiver.output().splitlines() if x.startswith("{")],
                           what="the receiver to act")  # fmt: skip
        assert acted == [{"workflow_id": wf, "decision": "rejected", "by": "alice@example.com"}]

        # the same event again (a retry after a lost answer): 200, not acted on twice
        event = json.dumps({"type": "approval.decided", "id": "k1", "workflow_id": wf, "result": {}}).encode()
        key = (tmp_path / "seen").read_text().split()[0]
        signed = {signatures.HEADER: signatures.sign(SECRET.encode(), event, int(time.time())),
                  "X-Hitl-Idempotency-Key": key, "Content-Type": "application/json"}  # fmt: skip
        assert requests.post(url + "hitl", data=event, headers=signed, timeout=10).status_code == 200
        forged = {**signed, signatures.HEADER: signatures.sign(b"not the secret", event, int(time.time()))}
        assert requests.post(url + "hitl", data=event, headers=forged, timeout=10).status_code == 401
        assert len([x for x in receiver.output().splitlines() if x.startswith("{")]) == 1
    finally:
        receiver.stop()
