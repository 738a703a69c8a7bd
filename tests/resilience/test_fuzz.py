"""Garbage on every public input, property-based (hypothesis), against one shared stack.

Inputs: ``start`` (POST /, GET /?workflow_id=, POST /cancel) and ``unblock``
(GET/HEAD /?token=, POST the form): random bytes, huge and chunked bodies,
wrong content types, unicode ids, random trace headers, broken tokens
(every single-character edit, truncation, extension of a real one) and
replayed ones (the tokens of a request already decided).

Properties: a 4xx answer, never a 5xx; and no workflow changes state: two
sentinel runs, one waiting and one decided, are read back after every test.
Bounded: at most 200 examples per input, no deadline, no example database,
no shrinking (a failure prints the example that failed as generated).
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
import requests
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from support.api import Api, Target, token_of, unique
from support.stacks import make_stack

from devstack.stack import Stack

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
FEW = settings(FUZZ, max_examples=60)

TIMEOUT = 15
http = requests.Session()


@dataclass(frozen=True)
class Sentinels:
    api: Api
    inbox: Path
    #: A run waiting for a decision: its body and its emailed links.
    waiting: dict[str, Any]
    waiting_links: dict[str, str]
    #: A run approved with a comment: its body, its links, its status answer.
    decided: dict[str, Any]
    decided_links: dict[str, str]
    decided_status: dict[str, Any]
    emails: int

    def unchanged(self) -> None:
        w = self.api.status(self.waiting["workflow_id"])
        assert (w.status_code, w.json()) == (202, {"workflow_id": self.waiting["workflow_id"], "status": "pending"})
        d = self.api.status(self.decided["workflow_id"])
        assert (d.status_code, d.json()) == (200, self.decided_status)
        assert len(self.api.emails(self.waiting["workflow_id"])) == 1
        assert len(self.api.emails(self.decided["workflow_id"])) == 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = make_stack(tmp_path_factory.mktemp("fuzz"), workers=1)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sentinels(stack: Stack) -> Sentinels:
    api = Api(Target.local(stack))
    waiting = api.request_body(unique("fuzz-waiting"), details={"ünïcode": "✓", "n": [1, 2, {"x": None}]})
    decided = api.request_body(unique("fuzz-decided"))
    assert api.start(waiting).status_code == 202
    assert api.start(decided).status_code == 202
    waiting_links = api.wait_email(waiting["workflow_id"])
    decided_links = api.wait_email(decided["workflow_id"])
    assert api.decide(decided_links["approve"], comment="kept").status_code == 200
    status = api.wait_done(decided["workflow_id"])
    assert status["result"]["comment"] == "kept"
    assert stack.inbox is not None
    return Sentinels(api, stack.inbox, waiting, waiting_links, decided, decided_links, status, 2)


@pytest.fixture
def s(sentinels: Sentinels) -> Iterator[Sentinels]:
    yield sentinels
    sentinels.unchanged()


def client_error(r: requests.Response, *allowed: int) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert 400 <= r.status_code < 500 or r.status_code in allowed, (r.status_code, r.text[:500])


# -- strategies ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
#: Text that can travel in a URL or JSON (no lone surrogates: a client cannot encode them).
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
#: Header values a client can send (latin-1, no CR/LF, no leading/trailing blanks).
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=200
).map(str.strip)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=utf-16",
            "application/json; charset=latin-1",
            "APPLICATION/JSON",
            "application/problem+json",
            "text/json",
            "text/plain",
            "text/html",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "application/octet-stream",
            "",
            ";",
            "application/json;;;",
            "application/json; charset=",
        ]
    ),
    header_text,
)
huge = st.integers(min_value=65_537, max_value=300_000)  # padding alone is over the 64 KiB limit
trace_headers = st.one_of(
    st.just({}),
    header_text.map(lambda v: {"X-Cloud-Trace-Context": v}),
    st.sampled_from(["0/0;o=1", "f" * 32 + "/1;o=1", "0" * 32 + "/0", "x" * 32, "/" * 40, "a" * 10_000]).map(
        lambda v: {"X-Cloud-Trace-Context": v}
    ),
)


def mutations(token: str) -> st.SearchStrategy[str]:
    """Broken copies of a real token: every edit makes it some other string."""
    alphabet = string.ascii_letters + string.digits + "-_.=+/% "
    i = st.integers(min_value=0, max_value=len(token) - 1)
    edits = st.one_of(
        st.tuples(i, st.sampled_from(alphabet)).map(lambda a: token[: a[0]] + a[1] + token[a[0] + 1 :]),  # replace
        st.tuples(i, st.sampled_from(alphabet)).map(lambda a: token[: a[0]] + a[1] + token[a[0] :]),  # insert
        i.map(lambda n: token[:n] + token[n + 1 :]),  # delete
        i.map(lambda n: token[:n]),  # truncate
        st.text(alphabet, min_size=1, max_size=20).map(lambda t: token + t),  # extend
        st.just(".".join(reversed(token.split(".")))),  # swap the parts
        st.just(token.upper()),
        st.just(token.replace(".", "..")),
        st.just(token + "." + token.split(".")[1]),
    )
    return edits.filter(lambda t: t != token)


# -- start: POST / ------------------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=4096), content_type=content_types, extra=trace_headers)
@example(body=b"[" * 30_000 + b"]" * 30_000, content_type="application/json", extra={})  # nested too deeply
@example(body=b'{"a":' * 10_000 + b"1" + b"}" * 10_000, content_type="application/json", extra={})
@example(body="\ufeff{}".encode(), content_type="application/json", extra={})  # a BOM
@example(body=b"\xff\xfe{\x00}\x00", content_type="application/json; charset=utf-16", extra={})
def test_start_random_bytes(s: Sentinels, body: bytes, content_type: str | None, extra: dict[str, str]) -> None:
    headers = {**extra, **({"Content-Type": content_type} if content_type is not None else {})}
    r = http.post(s.api.start_url, data=body, headers=headers, timeout=TIMEOUT)
    client_error(r)


@FEW
@given(size=huge, content_type=st.sampled_from(["application/json", "text/plain"]), chunked=st.booleans())
def test_start_huge_bodies(s: Sentinels, size: int, content_type: str, chunked: bool) -> None:
    # a valid request padded past 64 KiB, sent with a length or chunked (no length at all)
    body = json.dumps({**s.waiting, "details": {"pad": "x" * size}}).encode()
    data: Any = (body[i : i + 8192] for i in range(0, len(body), 8192)) if chunked else body
    r = http.post(s.api.start_url, data=data, headers={"Content-Type": content_type}, timeout=TIMEOUT)
    assert r.status_code in (413, 415), (r.status_code, r.text[:300])


@FUZZ
@given(
    which=st.sampled_from(["waiting", "decided"]),
    key=st.sampled_from(
        [
            "workflow_id",
            "approvers",
            "subject",
            "details",
            "deadline",
            "required",
            "veto",
            "remind",
            "on_expiry",
            "notify",
            "surprise",
            "",
        ]
    ),
    value=json_values,
    drop=st.booleans(),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "text/json"]),
)
def test_start_a_sentinel_id_with_garbage_fields(
    s: Sentinels, which: str, key: str, value: Any, drop: bool, content_type: str
) -> None:
    """A sentinel's own request with one field replaced, removed or added: never a new run, never a change."""
    original = s.waiting if which == "waiting" else s.decided
    body = dict(original)
    if drop and key in body:
        del body[key]
    elif key != "workflow_id" or isinstance(value, str):
        body[key] = value
    r = http.post(
        s.api.start_url, data=json.dumps(body).encode(), headers={"Content-Type": content_type}, timeout=TIMEOUT
    )
    if r.status_code < 400:
        # Only the same request again (or one equal to it once defaults are applied, e.g. "remind": []):
        # the sentinel's own status, unchanged.
        current = (
            s.decided_status if which == "decided" else {"workflow_id": original["workflow_id"], "status": "pending"}
        )
        assert (r.status_code, r.json()) == (200 if which == "decided" else 202, current), (body, r.text[:300])
        return
    client_error(r)
    if r.status_code == 409:
        assert body.get("workflow_id") == original["workflow_id"]


ODD_LITERALS = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, "-0", "0.5", "true", "null", "[NaN]",
    '{"action":"escalate","to":["bob@example.com"],"deadline":NaN}',
    '{"action":"escalate","to":["bob@example.com"],"deadline":"1d","required":1e999}',
]  # fmt: skip


@FEW
@given(
    which=st.sampled_from(["waiting", "decided"]),
    key=st.sampled_from(
        ["approvers", "subject", "details", "deadline", "required", "veto", "remind", "on_expiry", "notify"]
    ),
    literal=st.sampled_from(ODD_LITERALS),
)
def test_start_a_sentinel_id_with_odd_json_literals(s: Sentinels, which: str, key: str, literal: str) -> None:
    """NaN, infinities, a 5,000-digit number, a lone surrogate... as any field of a sentinel's request."""
    original = s.waiting if which == "waiting" else s.decided
    body = json.dumps({**original, key: "@@"}).replace('"@@"', literal)
    r = http.post(s.api.start_url, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    if r.status_code < 400:
        current = (
            s.decided_status if which == "decided" else {"workflow_id": original["workflow_id"], "status": "pending"}
        )
        assert (r.status_code, r.json()) == (200 if which == "decided" else 202, current), (body[:300], r.text[:300])
        return
    client_error(r)


@pytest.mark.parametrize("field", ["subject", "approvers", "remind", "deadline"])
def test_start_a_lone_surrogate_in_a_checked_field_is_a_400(s: Sentinels, field: str) -> None:
    value = {
        "subject": '"a\\ud800b"',
        "approvers": '["a\\ud800@example.com"]',
        "remind": '["\\ud800"]',
        "deadline": '"\\ud800"',
    }
    body = json.dumps({**s.api.request_body(unique("surrogate")), field: "@@"}).replace('"@@"', value[field])
    r = http.post(s.api.start_url, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert (r.status_code, r.json().get("field", "").split("[")[0]) == (400, field), r.text


@pytest.mark.parametrize("details", ['"\\ud800"', '{"\\udfff": 1}', '["ok", {"k": "x\\udc80y"}]'])
def test_start_a_lone_surrogate_in_details_is_a_400(s: Sentinels, details: str) -> None:
    body = json.dumps({**s.api.request_body(unique("surrogate")), "details": "@@"}).replace('"@@"', details)
    r = http.post(s.api.start_url, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert (r.status_code, r.json().get("field")) == (400, "details"), (
        r.status_code,
        r.headers.get("Retry-After"),
        r.text,
    )


@FUZZ
@given(workflow_id=any_text, field=st.sampled_from(["approvers", "subject", "deadline"]))
def test_start_unicode_ids_with_an_invalid_field(s: Sentinels, workflow_id: str, field: str) -> None:
    body = {**s.api.request_body(workflow_id), field: {"approvers": [], "subject": "", "deadline": "forever"}[field]}
    r = http.post(s.api.start_url, json=body, timeout=TIMEOUT)
    client_error(r)
    assert r.status_code == 400, (r.status_code, r.text[:300])


@FEW
@given(
    workflow_id=st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=":"), min_size=1, max_size=60
    )
)
def test_start_valid_unicode_ids_round_trip(s: Sentinels, workflow_id: str) -> None:
    """A valid unicode id is a run: started once, read back, started again, same answer."""
    workflow_id = f"fuzz-ü-{time.monotonic_ns()}-{workflow_id}"[:200]
    body = s.api.request_body(workflow_id)
    first = http.post(s.api.start_url, json=body, timeout=TIMEOUT)
    if first.status_code == 400:  # the id broke another rule (e.g. a character class the README does not list)
        assert first.json()["field"] == "workflow_id", first.text
        return
    assert (first.status_code, first.json()) == (202, {"workflow_id": workflow_id, "status": "pending"})
    again = http.post(s.api.start_url, json=body, timeout=TIMEOUT)
    assert (again.status_code, again.json()) == (202, {"workflow_id": workflow_id, "status": "pending"})
    read = http.get(s.api.start_url, params={"workflow_id": workflow_id}, timeout=TIMEOUT)
    assert (read.status_code, read.json()) == (202, {"workflow_id": workflow_id, "status": "pending"})


# -- start: GET /?workflow_id= and POST /cancel ------------------------------------------------------


@FUZZ
@given(
    query=st.one_of(
        any_text.map(lambda t: "workflow_id=" + quote_from_bytes(t.encode())),
        st.binary(max_size=300).map(lambda b: "workflow_id=" + quote_from_bytes(b)),
        st.binary(max_size=300).map(quote_from_bytes),
        st.just("workflow_id=a&workflow_id=b"),
        st.just("workflow_id"),
        st.just(""),
    ),
    extra=trace_headers,
)
def test_status_random_queries(s: Sentinels, query: str, extra: dict[str, str]) -> None:
    r = http.get(f"{s.api.start_url}?{query}", headers=extra, timeout=TIMEOUT)
    client_error(r)


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.fixed_dictionaries({"workflow_id": any_text}, optional={"reason": json_values}).map(
            lambda d: json.dumps(d).encode()
        ),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.just(b"REPLAY"),  # replaced below by a cancel of the decided sentinel
    ),
    content_type=content_types,
)
def test_cancel_garbage_and_replays(s: Sentinels, body: bytes, content_type: str | None) -> None:
    """Never the waiting sentinel's id (that would be a valid cancel); the decided one's is a replay (409)."""
    if body == b"REPLAY":
        body = json.dumps({"workflow_id": s.decided["workflow_id"], "reason": "again"}).encode()
    if s.waiting["workflow_id"].encode() in body:
        return
    headers = {"Content-Type": content_type} if content_type is not None else {}
    r = http.post(s.api.start_url.rstrip("/") + "/cancel", data=body, headers=headers, timeout=TIMEOUT)
    client_error(r)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("where", ["start", "unblock"])
def test_other_methods(s: Sentinels, method: str, where: str) -> None:
    url = s.api.start_url if where == "start" else s.api.unblock_url
    r = http.request(method, url, data=b"{}", timeout=TIMEOUT)
    client_error(r)


# -- unblock: GET/HEAD /?token= and POST the form ------------------------------------------------------


def link_tokens(links: dict[str, str]) -> list[str]:
    return [token_of(links["approve"]), token_of(links["reject"])]


@FUZZ
@given(data=st.data(), method=st.sampled_from(["GET", "HEAD"]))
def test_unblock_broken_and_replayed_tokens_on_the_page(s: Sentinels, data: st.DataObject, method: str) -> None:
    waiting = link_tokens(s.waiting_links)
    decided = link_tokens(s.decided_links)
    kind, token = data.draw(
        st.one_of(
            st.sampled_from(waiting).flatmap(mutations).map(lambda t: ("broken", t)),
            st.sampled_from(decided).flatmap(mutations).map(lambda t: ("broken", t)),
            st.sampled_from(decided).map(lambda t: ("replayed", t)),
            st.sampled_from(waiting).map(lambda t: ("valid", t)),  # opening a page changes nothing
            any_text.map(lambda t: ("random", t)),
        )
    )
    r = http.request(method, s.api.unblock_url, params={"token": token}, timeout=TIMEOUT)
    expected = {"broken": {403}, "replayed": {409}, "valid": {200}, "random": {400, 403}}[kind]
    assert r.status_code in expected, (kind, token, r.status_code, r.text[:300])


@FUZZ
@given(data=st.data())
def test_unblock_post_garbage_broken_and_replayed_tokens(s: Sentinels, data: st.DataObject) -> None:
    """Never the waiting sentinel's real tokens (they would decide it); anything else is refused."""
    waiting = link_tokens(s.waiting_links)
    decided = link_tokens(s.decided_links)
    token = data.draw(
        st.one_of(
            st.sampled_from(waiting).flatmap(mutations),
            st.sampled_from(decided).flatmap(mutations),
            st.sampled_from(decided),  # replayed: 409
            any_text,
        ),
        label="token",
    )
    comment = data.draw(st.one_of(any_text, st.integers(3000, 20_000).map(lambda n: "c" * n)), label="comment")
    kind = data.draw(st.sampled_from(["form", "raw", "wrong type"]), label="kind")
    if kind == "form":
        fields = {
            "token": token,
            "comment": comment,
            **data.draw(st.dictionaries(st.text(max_size=8), any_text, max_size=12)),
        }
        if token in waiting:
            return
        r = http.post(s.api.unblock_url, data=fields, timeout=TIMEOUT)
    elif kind == "raw":
        body = data.draw(st.binary(max_size=4096), label="body")
        r = http.post(
            s.api.unblock_url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=TIMEOUT
        )
    else:
        ctype = data.draw(content_types.filter(lambda c: not (c or "").startswith("application/x-www-form-urlencoded")))
        body = f"token={token}&comment=x".encode()
        r = http.post(s.api.unblock_url, data=body, headers={"Content-Type": ctype} if ctype else {}, timeout=TIMEOUT)
    client_error(r)


@pytest.mark.parametrize("chunked", [False, True])
def test_unblock_huge_form(s: Sentinels, chunked: bool) -> None:
    body = f"token={token_of(s.waiting_links['approve'])}&comment={'x' * 100_000}".encode()
    data: Any = (body[i : i + 4096] for i in range(0, len(body), 4096)) if chunked else body
    r = http.post(
        s.api.unblock_url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=TIMEOUT
    )
    assert r.status_code == 413, (r.status_code, r.text[:300])
