"""The start function in-process: every answer it can give, from its routing table down."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
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
