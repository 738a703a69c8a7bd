"""The unblock function in-process: the page, the decision, and what a click costs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from resonate.types import Value
from starlette.testclient import TestClient

from hitl.client import runs
from hitl.edges.signin import Gate
from hitl.model.records import Expired, Identity, vote_state
from hitl.security import tokens
from hitl.settings import ResonateSettings, UnblockSettings

from .conftest import Server, test_client

KEY = b"k" * 32
SETTINGS = UnblockSettings(ResonateSettings("http://resonate.test"), signing_key=KEY)
REQUEST = {
    "workflow_id": "wf", "approvers": ["alice@example.com", "bob@example.com"], "subject": "Deploy v42",
    "details": {"service": "api"}, "deadline": 3600, "required": 2, "veto": True, "remind": [],
    "on_expiry": "expire", "notify": [{"type": "email"}],
}  # fmt: skip


@pytest.fixture
def http(server: Server) -> TestClient:
    from hitl.edges.unblock import Unblock

    # the request as start stores it, and the votes as the worker's first step creates them
    timeout = server.now_ms + 3_600_000
    server.run(runs.create(server.client.promises, "wf", "approval", (REQUEST,), group="worker", timeout_at=timeout))
    for vote in ("wf:1", "wf:2"):
        server.run(server.client.promises.create(vote, timeout, Value(), {}))
    return test_client(Unblock(SETTINGS, server.client, clock=lambda: server.now_ms / 1000).router())


def token(server: Server, decision: str = "approve", vote: str = "wf:1", approver: str = "alice@example.com") -> str:
    claims = tokens.Claims(vote, approver, decision, server.now_ms // 1000 + 600)  # type: ignore[arg-type]
    return tokens.sign(KEY, claims)


def test_the_page_changes_nothing(http: TestClient, server: Server) -> None:
    for method in ("GET", "HEAD"):
        r = http.request(method, "/", params={"token": token(server)})
        assert r.status_code == 200
    page = http.get("/", params={"token": token(server)}).text
    assert "Deploy v42" in page and "0 of 2 required approvals" in page
    assert server.promise("wf:1")["state"] == "pending"


def test_a_click_records_the_vote_with_one_settle_and_one_read(http: TestClient, server: Server) -> None:
    server.network.sent.clear()
    r = http.post("/", data={"token": token(server), "comment": "ship it"}, headers={"user-agent": "pytest"})
    assert r.status_code == 200 and "Approved" in r.text and "Deploy v42" in r.text
    assert sorted(server.network.sent) == ["promise.get", "promise.settle"]
    vote = vote_state(server.run(server.client.promises.get("wf:1")).value.data)
    assert (vote.decision, vote.by, vote.comment, vote.user_agent) == (
        "approved",
        "alice@example.com",
        "ship it",
        "pytest",
    )


def test_a_second_click_sees_the_first(http: TestClient, server: Server) -> None:
    http.post("/", data={"token": token(server, "reject")})
    again = http.post("/", data={"token": token(server, "approve")})
    assert again.status_code == 409 and "already rejected" in again.text
    assert http.get("/", params={"token": token(server)}).status_code == 409


def test_a_round_that_expired_answers_409(http: TestClient, server: Server) -> None:
    server.run(server.client.promises.resolve("wf:2", Value(data=Expired(server.now_ms).to_json())))
    r = http.post("/", data={"token": token(server, vote="wf:2", approver="bob@example.com")})
    assert r.status_code == 409 and "expired" in r.text


@pytest.mark.parametrize(
    ("tamper", "status"),
    [(lambda t: t[:-2], 403), (lambda t: "", 403), (lambda t: t.replace(".", "x", 1), 403)],
)
def test_bad_links_are_403(http: TestClient, server: Server, tamper, status: int) -> None:  # type: ignore[no-untyped-def]
    assert http.get("/", params={"token": tamper(token(server))}).status_code == status
    assert http.post("/", data={"token": tamper(token(server))}).status_code == status


def test_unknown_requests_are_404(http: TestClient, server: Server) -> None:
    assert http.get("/", params={"token": token(server, vote="nope:1")}).status_code == 404
    assert http.post("/", data={"token": token(server, vote="nope:1")}).status_code == 404


def test_forms_and_methods(http: TestClient, server: Server) -> None:
    assert http.post("/", content=b"token=x", headers={"content-type": "text/plain"}).status_code == 415
    assert http.post("/", data={"token": token(server), "comment": "x" * 2001}).status_code == 400
    put = http.put("/")
    assert (put.status_code, put.headers["allow"]) == (405, "GET, HEAD, POST")
    assert put.headers["content-type"].startswith("text/html")


def test_a_link_requiring_sign_in_is_refused_where_there_is_none_and_writes_nothing(
    http: TestClient, server: Server
) -> None:
    claims = tokens.Claims("wf:1", "alice@example.com", "approve", server.now_ms // 1000 + 600, sign_in=True)
    required = tokens.sign(KEY, claims)
    server.network.sent.clear()
    assert http.get("/", params={"token": required}).status_code == 403
    r = http.post("/", data={"token": required, "comment": ""})
    assert r.status_code == 403 and "signed-in approver" in r.text
    assert server.network.sent == []  # refused before any server call
    assert server.promise("wf:1")["state"] == "pending"


# -- sign-in on: the gate, in-process (IAP's assertion minted with a test key) ------------------


def signed_in_unblock(server: Server) -> tuple[TestClient, Any]:
    """Unblock with sign-in on, its verifier over a test key; and a minting function."""
    import json
    import time as _time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from hitl.edges.unblock import Unblock
    from hitl.security.iap import KeySet, Verifier
    from hitl.settings import SignIn

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "t1", "alg": "ES256", "use": "sig"}
    keys = KeySet("https://keys.test", fetch=lambda url: json.dumps({"keys": [jwk]}).encode())
    sign_in = SignIn("aud-unblock", aliases={"alice@example.com": frozenset({"al@corp.example.com"})})
    unblock = Unblock(dataclasses.replace(SETTINGS, sign_in=sign_in), server.client)
    unblock.__dict__["gate"] = Gate(sign_in, Verifier(keys, "aud-unblock"))  # the gate, with the test key set

    def mint(email: str) -> dict[str, str]:
        now = int(_time.time())
        claims = {"iss": "https://cloud.google.com/iap", "aud": "aud-unblock", "iat": now, "exp": now + 600,
                  "email": email, "sub": f"accounts.google.com:{email}"}  # fmt: skip
        return {"X-Goog-IAP-JWT-Assertion": jwt.encode(claims, key, algorithm="ES256", headers={"kid": "t1"})}

    return test_client(unblock.router()), mint


def test_with_sign_in_only_the_approver_or_an_alias_decides_and_the_vote_says_how(
    server: Server, http: TestClient
) -> None:
    signed, mint = signed_in_unblock(server)
    link = token(server)
    assert signed.get("/", params={"token": link}).status_code == 401  # no assertion
    wrong = signed.get("/", params={"token": link}, headers=mint("bob@example.com"))
    assert wrong.status_code == 403 and "bob@example.com" in wrong.text and "alice@example.com" in wrong.text
    assert signed.post("/", data={"token": link}, headers=mint("bob@example.com")).status_code == 403
    assert server.promise("wf:1")["state"] == "pending"
    r = signed.post("/", data={"token": link, "comment": "yes"}, headers=mint("AL@corp.example.com"))
    assert r.status_code == 200
    vote = vote_state(server.run(server.client.promises.get("wf:1")).value.data)
    assert vote.identity == Identity(
        "iap", email="AL@corp.example.com", subject="accounts.google.com:AL@corp.example.com"
    )
