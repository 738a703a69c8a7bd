"""JWT auth (spec §9): ``head.auth`` on ``POST /``, a bearer header on ``GET /poll``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import PYTHON, LocalServerProc, Proc, wait_until

from .conftest import HOUR_MS, VERSION, Api, ServerFactory, Sse, action, now_ms, uid


def _pem_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("keys")
    private, public = _pem_pair()
    other_private, _ = _pem_pair()
    (tmp / "public.pem").write_bytes(public)
    return {"private": private, "public": public, "other": other_private, "path": tmp / "public.pem"}


@pytest.fixture(scope="module")
def auth_server(keys: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServerProc]:
    proc = LocalServerProc(tmp_path_factory.mktemp("authserver"), extra=["--auth-publickey", str(keys["path"])])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def aapi(auth_server: LocalServerProc) -> Api:
    return Api(auth_server.url)


def token(
    keys: dict[str, Any], *, key: str = "private", alg: str = "RS256", exp: int | None = 3600, **claims: Any
) -> str:
    body = dict(claims)
    if exp is not None:
        body["exp"] = int(time.time()) + exp
    return jwt.encode(body, keys[key], algorithm=alg)


def create(aapi: Api, id: str, auth: str | None, **kw: Any) -> Any:
    return aapi.call(
        "promise.create", {"id": id, "timeoutAt": now_ms() + HOUR_MS, "tags": kw.get("tags", {})}, auth=auth
    )


def test_no_auth_is_401(aapi: Api) -> None:
    r = create(aapi, uid(), None)
    assert (r.status, r.data) == (401, "Unauthorized")


def test_authorization_header_is_ignored_on_post(aapi: Api, keys: dict[str, Any]) -> None:
    body = json.dumps(
        {"kind": "promise.get", "head": {"corrId": "h", "version": VERSION}, "data": {"id": "x"}}
    ).encode()
    status, _, raw = aapi.http("POST", "/", body, {"Authorization": f"Bearer {token(keys, role='admin')}"})
    reply = json.loads(raw)
    assert status == reply["head"]["status"] == 401 and reply["data"] == "Unauthorized"


def test_envelope_is_checked_before_auth(aapi: Api) -> None:
    r = aapi.call("promise.get", {"id": "x"}, version="1999-01-01")
    assert r.status == 400
    r = aapi.call("promise.get", [])
    assert r.status == 400


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-jwt",
        "",
        "bad-signature",
        "no-exp",
        "expired",
        "hs256-with-public-key",
        "alg-none",
    ],
)
def test_invalid_tokens_are_401(aapi: Api, keys: dict[str, Any], bad: str) -> None:
    if bad == "bad-signature":
        t = token(keys, key="other", role="admin")
    elif bad == "no-exp":
        t = token(keys, exp=None, role="admin")
    elif bad == "expired":
        t = token(keys, exp=-120, role="admin")
    elif bad == "hs256-with-public-key":

        def b64(b: bytes) -> str:
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = b64(json.dumps({"role": "admin", "exp": int(time.time()) + 3600}).encode())
        sig = b64(hmac.new(keys["public"], f"{head}.{payload}".encode(), hashlib.sha256).digest())
        t = f"{head}.{payload}.{sig}"
    elif bad == "alg-none":
        t = jwt.encode({"role": "admin", "exp": int(time.time()) + 3600}, None, algorithm="none")
    else:
        t = bad
    r = create(aapi, uid(), t)
    assert (r.status, r.data) == (401, "Unauthorized")


@pytest.mark.parametrize("role", ["admin", "ADMIN", "Admin"])
def test_admin_may_do_anything(aapi: Api, keys: dict[str, Any], role: str) -> None:
    t = token(keys, role=role)
    id = uid()
    assert create(aapi, id, t).status == 200
    assert aapi.call("promise.search", {}, auth=t).status == 200
    assert aapi.call("promise.frobnicate", {}, auth=t).status == 400


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_rsa_algorithms(aapi: Api, keys: dict[str, Any], alg: str) -> None:
    assert create(aapi, uid(), token(keys, alg=alg, role="admin")).status == 200


def test_prefix_claim(aapi: Api, keys: dict[str, Any]) -> None:
    mine = uid("team")
    t = token(keys, prefix=mine)
    inside, outside = f"{mine}:1", uid("other")
    assert create(aapi, inside, t).status == 200
    r = create(aapi, outside, t)
    assert (r.status, r.data) == (403, "Forbidden")
    assert aapi.call("promise.get", {"id": inside}, auth=t).status == 200
    assert aapi.call("promise.get", {"id": outside}, auth=t).status == 403
    assert aapi.call("promise.get", {"id": f"{mine}:404"}, auth=t).status == 404  # allowed, then not found
    assert aapi.call("promise.settle", {"id": outside, "state": "resolved"}, auth=t).status == 403
    # register_listener is judged by the awaited id
    assert (
        aapi.call("promise.register_listener", {"awaited": inside, "address": "poll://uni@g/a"}, auth=t).status == 200
    )
    assert (
        aapi.call("promise.register_listener", {"awaited": outside, "address": "poll://uni@g/a"}, auth=t).status == 403
    )
    # task.create by action.data.id
    tags = {"resonate:target": "poll://any@nobody"}
    r = aapi.call(
        "task.create",
        {
            "pid": "w",
            "ttl": 1000,
            "action": action("promise.create", {"id": f"{mine}:wf", "timeoutAt": now_ms() + HOUR_MS, "tags": tags}),
        },
        auth=t,
    )
    assert r.status == 200
    r = aapi.call(
        "task.create",
        {
            "pid": "w",
            "ttl": 1000,
            "action": action("promise.create", {"id": uid("x"), "timeoutAt": now_ms() + HOUR_MS, "tags": tags}),
        },
        auth=t,
    )
    assert r.status == 403
    # heartbeat: every task id must match
    assert (
        aapi.call("task.heartbeat", {"pid": "w", "tasks": [{"id": f"{mine}:wf", "version": 1}]}, auth=t).status == 200
    )
    r = aapi.call(
        "task.heartbeat",
        {"pid": "w", "tasks": [{"id": f"{mine}:wf", "version": 1}, {"id": f"x{mine}:wf", "version": 1}]},
        auth=t,
    )
    assert r.status == 403
    # searches and unknown kinds count as the id "": forbidden for a non-empty prefix
    assert aapi.call("promise.search", {}, auth=t).status == 403
    assert aapi.call("promise.frobnicate", {"id": inside}, auth=t).status == 403
    # a missing resource field is allowed through (and then fails validation)
    assert aapi.call("promise.get", {}, auth=t).status == 400


def test_empty_prefix_allows_everything(aapi: Api, keys: dict[str, Any]) -> None:
    t = token(keys, prefix="")
    assert create(aapi, uid(), t).status == 200
    assert aapi.call("promise.search", {}, auth=t).status == 200


@pytest.mark.parametrize("claims", [{}, {"prefix": None}, {"prefix": 5}, {"role": "user"}, {"role": "admins"}])
def test_no_usable_claim_is_403(aapi: Api, keys: dict[str, Any], claims: dict[str, Any]) -> None:
    r = create(aapi, uid(), token(keys, **claims))
    assert (r.status, r.data) == (403, "Forbidden")


def test_poll_needs_a_bearer(
    auth_server: LocalServerProc, aapi: Api, keys: dict[str, Any], streams: ServerFactory
) -> None:
    status, _, body = aapi.http("GET", "/poll/g/a")
    assert (status, body) == (401, b"Unauthorized")
    status, _, body = aapi.http(
        "GET", "/poll/g/a", headers={"Authorization": f"Bearer {token(keys, key='other', role='admin')}"}
    )
    assert (status, body) == (401, b"Unauthorized")
    status, _, body = aapi.http(
        "GET", "/poll/g/a", headers={"Authorization": f"Bearer {token(keys, exp=None, role='admin')}"}
    )
    assert status == 401
    # authenticated only: a prefix that matches nothing still opens the stream
    group = uid("g")
    s: Sse = streams.sse(
        auth_server.url, group, "a", headers={"Authorization": f"Bearer {token(keys, prefix='zzz-nothing')}"}
    )
    assert s.status == 200
    admin = token(keys, role="admin")
    p = uid()
    assert create(aapi, p, admin).status == 200
    assert (
        aapi.call("promise.register_listener", {"awaited": p, "address": f"poll://uni@{group}/a"}, auth=admin).status
        == 200
    )
    assert aapi.call("promise.settle", {"id": p, "state": "resolved"}, auth=admin).status == 200
    s.wait_unblock(p)


def test_health_needs_no_token(aapi: Api) -> None:
    assert aapi.http("GET", "/health")[0] == 200
    assert aapi.http("GET", "/ready")[0] == 200


def test_publickey_none_accepts_unsigned_tokens(tmp_path: Path) -> None:
    proc = Proc(
        "nonekey", [PYTHON, "-m", "devstack.localserver", "--port", "0", "--auth-publickey", "none"], log_dir=tmp_path
    )
    try:
        wait_until(
            lambda: not proc.alive() or "listening on " in proc.output(), timeout=15, what="the server to start or exit"
        )
        assert proc.alive(), proc.output()[-2000:]
        line = next(x for x in proc.output().splitlines() if x.startswith("listening on "))
        api = Api(line.split()[-1])
        unsigned = jwt.encode({"role": "admin", "exp": int(time.time()) + 3600}, None, algorithm="none")
        assert create(api, uid(), unsigned).status == 200
        assert create(api, uid(), None).status == 401
    finally:
        proc.stop()
