"""The start function in-process: every answer it can give, from its routing table down."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from resonate.types import Value
from resonate_base.error import ConnectorError
from starlette.testclient import TestClient

from hitl.client.sendonly import SendOnlyClient
from hitl.edges.start import Start
from hitl.security import signatures
from hitl.settings import ResonateSettings, StartSettings

from .conftest import Server, test_client

SETTINGS = StartSettings(ResonateSettings("http://resonate.test"))
BODY = {"workflow_id": "deploy-42", "approvers": ["alice@example.com"], "subject": "Deploy v42"}


@pytest.fixture
def http(server: Server) -> TestClient:
    return test_client(Start(SETTINGS, server.client).router())


def post(http: TestClient, body: Any, path: str = "/", **headers: str) -> Any:
    return http.post(path, content=json.dumps(body), headers={"content-type": "application/json", **headers})


def test_start_creates_one_run_and_answers_its_status(http: TestClient, server: Server) -> None:
    r = post(http, BODY)
    assert (r.status_code, r.json()) == (202, {"workflow_id": "deploy-42", "status": "pending"})
    root = server.promise("deploy-42")
    assert root["tags"]["resonate:target"] == "poll://any@worker" and root["state"] == "pending"
    again = post(http, BODY)
    assert (again.status_code, again.json()["status"]) == (202, "pending")
    assert post(http, {**BODY, "subject": "Other"}).status_code == 409
    status = http.get("/", params={"workflow_id": "deploy-42"})
    assert (status.status_code, status.json()["status"]) == (202, "pending")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ({**BODY, "approvers": []}, "application/json", 400, "approvers"),
        ({**BODY, "deadline": "soon"}, "application/json", 400, "deadline"),
        (BODY, "text/plain", 415, None),
        ({**BODY, "details": "x" * 70_000}, "application/json", 413, None),
    ],
)
def test_bad_requests_are_refused_with_the_field(
    http: TestClient, body: Any, content_type: str, status: int, field: str | None
) -> None:
    r = http.post("/", content=json.dumps(body), headers={"content-type": content_type})
    assert r.status_code == status
    assert r.json().get("field") == field


def test_status_of_unknown_and_invalid_ids(http: TestClient) -> None:
    assert http.get("/", params={"workflow_id": "nope"}).status_code == 404
    bad = http.get("/", params={"workflow_id": "a:b"})
    assert (bad.status_code, bad.json()["field"]) == (400, "workflow_id")


def test_cancel_then_cancel_again(http: TestClient, server: Server) -> None:
    post(http, BODY)
    for vote in ("deploy-42:1",):  # the worker's first step: the vote promises
        server.run(server.client.promises.create(vote, server.now_ms + 60_000, _no_value(), {}))
    r = post(http, {"workflow_id": "deploy-42", "reason": "moot"}, "/cancel")
    assert (r.status_code, r.json()["status"]) == (202, "canceling")
    assert server.promise("deploy-42:1")["state"] == "resolved"
    assert post(http, {"workflow_id": "nope"}, "/cancel").status_code == 404


def test_routing_is_a_table(http: TestClient) -> None:
    put = http.put("/", content=b"{}")
    assert (put.status_code, put.headers["allow"]) == (405, "GET, POST")
    assert http.get("/cancel").headers["allow"] == "POST"
    assert http.get("/elsewhere").status_code == 404


def test_a_signature_is_required_when_a_secret_is_set(server: Server) -> None:
    secret = b"s" * 32
    http = test_client(Start(StartSettings(SETTINGS.resonate, webhook_secret=secret), server.client).router())
    assert post(http, BODY).status_code == 401
    raw = json.dumps(BODY).encode()
    signed = http.post(
        "/", content=raw,
        headers={"content-type": "application/json", signatures.HEADER: signatures.sign(secret, raw, int(time.time()))},
    )  # fmt: skip
    assert signed.status_code == 202
    # a status read carries the audit trail: with a secret, its query string is signed too
    query = "workflow_id=deploy-42&wait=0"
    assert http.get(f"/?{query}").status_code == 401
    good = {signatures.HEADER: signatures.sign(secret, query.encode(), int(time.time()))}
    assert http.get(f"/?{query}", headers=good).status_code == 202
    assert http.get("/?workflow_id=deploy-43&wait=0", headers=good).status_code == 401  # another query


class DeadNetwork:
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        raise ConnectorError(ConnectionRefusedError("refused"))


def test_an_unreachable_server_is_a_503_with_retry_after() -> None:
    http = test_client(Start(SETTINGS, SendOnlyClient(DeadNetwork(), None)).router())
    r = post(http, BODY)
    assert (r.status_code, r.headers["retry-after"]) == (503, "5")
    assert http.get("/", params={"workflow_id": "x"}).status_code == 503


def _no_value() -> Any:
    from resonate.types import Value

    return Value()


def caller_promise(server: Server, id: str, *, lives_ms: int = 30 * 86_400_000) -> str:
    status, _ = server.engine.apply(
        "promise.create", "t", {"id": id, "timeoutAt": server.now_ms + lives_ms, "param": {}, "tags": {}}, server.now_ms
    )
    assert status == 200
    return id


def test_a_promise_target_is_read_and_bound_before_the_run_exists(http: TestClient, server: Server) -> None:
    a, b = caller_promise(server, "deploys-1:1"), caller_promise(server, "deploys-2:1")
    server.network.sent.clear()
    body = {**BODY, "on_decision": [{"type": "promise", "id": a}, {"type": "promise", "id": b}]}
    assert post(http, body).status_code == 202
    # the run (is it there already: a retried start?) and each target read at once, each claimed,
    # and the run created
    assert server.network.sent == ["promise.get", "promise.get", "promise.get", "promise.create", "promise.create",
                                   "promise.create"]  # fmt: skip
    for target in (a, b):
        claim = server.promise(f"{target}#hitl.claim")
        assert claim["tags"] == {"hitl:claim": target}
    server.network.sent.clear()
    assert post(http, body).status_code == 202  # retried: the same reads, nothing claimed or created
    assert server.network.sent == ["promise.get", "promise.get", "promise.get"]
    # once a target is settled (delivered to), a retried start still answers the run, not a 400
    server.run(server.client.promises.resolve(a, Value()))
    assert post(http, body).status_code == 202


def test_a_promise_named_by_another_request_is_409_and_starts_nothing(http: TestClient, server: Server) -> None:
    taken = caller_promise(server, "deploys-3:1")
    assert post(http, {**BODY, "on_decision": [{"type": "promise", "id": taken}]}).status_code == 202
    other = {**BODY, "workflow_id": "deploy-43", "on_decision": [{"type": "promise", "id": taken}]}
    r = post(http, other)
    assert (r.status_code, r.json()) == (
        409, {"error": "this promise is already the target of another request", "field": "on_decision[0].id"},
    )  # fmt: skip
    assert server.engine.promises.get("deploy-43") is None


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("nobody:1", "no promise has this id"),
        ("deploy-41", "names a promise of an approval request"),
        ("deploy-41:r0.expiry", "names a promise of an approval request"),
        ("short:1", "before the request can end"),
        ("settled:1", "already settled (resolved)"),
        ("hitl.inbox/k/9999999999/deploy-41:1", "names a promise of an approval request"),
        ("hitl.inbox/k/~039", "names a promise of an approval request"),
    ],
)
def test_a_promise_target_it_can_never_deliver_to_is_400(
    http: TestClient, server: Server, target: str, says: str
) -> None:
    assert post(http, {**BODY, "workflow_id": "deploy-41"}).status_code == 202
    caller_promise(server, "short:1", lives_ms=86_400_000)
    caller_promise(server, "settled:1")
    server.engine.apply("promise.settle", "t", {"id": "settled:1", "state": "resolved", "value": {}}, server.now_ms)
    server.engine.apply("promise.create", "t", {"id": "deploy-41:r0.expiry", "timeoutAt": server.now_ms + 10**9,
                                                "param": {}, "tags": {"hitl:func": "approval_expiry"}}, server.now_ms)  # fmt: skip
    for entry in ("hitl.inbox/k/9999999999/deploy-41:1", "hitl.inbox/k/~039"):  # an inbox entry, a fence
        server.engine.apply("promise.create", "t", {"id": entry, "timeoutAt": 253_402_300_799_000, "param": {},
                                                    "tags": {"hitl:inbox": "k"}}, server.now_ms)  # fmt: skip
    r = post(http, {**BODY, "on_decision": [{"type": "promise", "id": target}]})
    assert (r.status_code, r.json()["field"]) == (400, "on_decision[0].id"), r.text
    assert says in r.json()["error"]
    assert server.engine.promises.get("deploy-42") is None


def test_a_request_may_require_sign_in_only_where_there_is_sign_in(server: Server) -> None:
    none = test_client(Start(SETTINGS, server.client).router())
    r = post(none, {**BODY, "sign_in": "required"})
    assert (r.status_code, r.json()["field"]) == (400, "sign_in")
    assert server.engine.promises.get("deploy-42") is None
    iap = test_client(Start(StartSettings(SETTINGS.resonate, sign_in="iap"), server.client).router())
    assert post(iap, {**BODY, "sign_in": "required"}).status_code == 202
    assert server.promise("deploy-42")["param"]  # stored with the requirement (the run reads it)
