import json
from typing import Any

import pytest

from hitl.model.request import (
    DEFAULT_DEADLINE,
    MAX_BODY_BYTES,
    ApprovalRequest,
    RequestError,
    parse_duration,
    parse_start,
    validate_workflow_id,
)

JSON_TYPE = "application/json"
VALID: dict[str, Any] = {
    "workflow_id": "deploy-42",
    "approvers": ["alice@example.com"],
    "subject": "Deploy v42 to production",
}


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def body(**changes: Any) -> bytes:
    fields = {**VALID, **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def error(raw: bytes, content_type: str | None = JSON_TYPE, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_start(raw, content_type, **kwargs)
    return info.value


def test_minimal_request_gets_defaults() -> None:
    request = parse_start(body(), JSON_TYPE)
    assert request == ApprovalRequest(
        workflow_id="deploy-42",
        approvers=("alice@example.com",),
        subject="Deploy v42 to production",
        details={},
        deadline=DEFAULT_DEADLINE,
    )


def test_full_request() -> None:
    details = {"version": "v42", "changes": [{"id": 1, "ok": True}], "note": None}
    request = parse_start(
        body(approvers=["a@example.com", "b@example.org"], details=details, deadline="24h"),
        "application/json; charset=UTF-8",
    )
    assert request.approvers == ("a@example.com", "b@example.org")
    assert request.details == details
    assert request.deadline == 86_400


def test_json_round_trip() -> None:
    request = parse_start(body(details=[1, "two", {"three": 3.5}], deadline=90), JSON_TYPE)
    data = request.to_json()
    assert json.loads(json.dumps(data)) == data
    assert ApprovalRequest.from_json(data) == request


def test_addresses_are_normalized() -> None:
    request = parse_start(body(approvers=["Alice@EXAMPLE.com", "bob@bücher.example"]), JSON_TYPE)
    assert request.approvers == ("Alice@example.com", "bob@bücher.example")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json;charset=utf-8",
        'application/json; charset="utf-8"',
        "application/merge-patch+json",
        "application/vnd.hitl.v1+json; charset=utf8",
    ],
)
def test_json_content_types(content_type: str) -> None:
    assert parse_start(body(), content_type).workflow_id == "deploy-42"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "text/json",
        "application/json; charset=latin-1",
        "application/+json",
    ],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    assert error(body(), content_type).status == 415


def test_large_body_is_413() -> None:
    raw = body(details={"blob": "x" * MAX_BODY_BYTES})
    assert error(raw).status == 413
    assert error(body(), max_bytes=10).status == 413


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        '{"a": 1}'.encode("utf-16"),
        b"[]",
        b'"string"',
        b"null",
        b"[" * 100_000,
    ],
)
def test_not_a_json_object_is_400(raw: bytes) -> None:
    err = error(raw, max_bytes=1_000_000)
    assert err.status == 400 and err.field is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"workflow_id": "a", "workflow_id": "b", "approvers": ["a@example.com"], "subject": "s"}',
        body(details=...)[:-1] + b', "details": {"n": NaN}}',
        body(details=...)[:-1] + b', "details": {"n": Infinity}}',
        body(details=...)[:-1] + b', "details": {"n": 1e999}}',
        body(details=...)[:-1] + b', "details": {"n": ' + b"1" * 5000 + b"}}",
    ],
)
def test_ambiguous_or_lossy_json_is_400(raw: bytes) -> None:
    assert error(raw).status == 400


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"workflow_id": ...}, "workflow_id"),
        ({"workflow_id": 42}, "workflow_id"),
        ({"workflow_id": ""}, "workflow_id"),
        ({"workflow_id": "x" * 201}, "workflow_id"),
        ({"workflow_id": "a:b"}, "workflow_id"),
        ({"workflow_id": "hitl.inbox/k/~039"}, "workflow_id"),  # hitl's own ids: an inbox's fence
        ({"workflow_id": "deploys-1:1#hitl.claim"}, "workflow_id"),  # ... a claim (':' aside)
        ({"workflow_id": "deploys-1#hitl.claim"}, "workflow_id"),
        ({"workflow_id": "a\nb"}, "workflow_id"),
        ({"workflow_id": "a\x7fb"}, "workflow_id"),
        ({"workflow_id": "a\u0085b"}, "workflow_id"),
        ({"workflow_id": "a\ud800b"}, "workflow_id"),
        ({"approvers": ...}, "approvers"),
        ({"approvers": "alice@example.com"}, "approvers"),
        ({"approvers": []}, "approvers"),
        ({"approvers": [f"u{i}@example.com" for i in range(51)]}, "approvers"),
        ({"approvers": [42]}, "approvers[0]"),
        ({"approvers": ["a@example.com", "not an address"]}, "approvers[1]"),
        ({"approvers": ["a@example.com", "a@localhost"]}, "approvers[1]"),
        ({"approvers": ["Alice <a@example.com>"]}, "approvers[0]"),
        ({"approvers": ["a@example.com", "a@EXAMPLE.COM"]}, "approvers[1]"),
        ({"approvers": ["a@example.com", "A@example.com"]}, "approvers[1]"),
        ({"subject": ...}, "subject"),
        ({"subject": None}, "subject"),
        ({"subject": ""}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"subject": "s" * 301}, "subject"),
        ({"subject": "line\r\nBcc: x@example.com"}, "subject"),
        ({"details": {"a": nested(32)}}, "details"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -5}, "deadline"),
        ({"deadline": 400 * 86_400 + 1}, "deadline"),
        ({"deadline": "401d"}, "deadline"),
        ({"deadline": "0s"}, "deadline"),
        ({"deadline": 1.5}, "deadline"),
        ({"deadline": True}, "deadline"),
        ({"deadline": "1w"}, "deadline"),
        ({"deadline": "90"}, "deadline"),
        ({"deadline": None}, "deadline"),
        ({"extra": 1}, "extra"),
    ],
)
def test_field_rules(changes: dict[str, Any], field: str) -> None:
    err = error(body(**changes))
    assert (err.status, err.field) == (400, field)
    assert err.reason
    assert err.to_json() == {"error": err.reason, "field": field}


def test_limits_are_inclusive() -> None:
    request = parse_start(
        body(
            workflow_id="w" * 200,
            approvers=[f"u{i}@example.com" for i in range(50)],
            subject="s" * 300,
            details={"a": nested(31)},  # 32 levels
            deadline="400d",
        ),
        JSON_TYPE,
    )
    assert request.deadline == 400 * 86_400
    assert parse_start(body(deadline=1), JSON_TYPE).deadline == 1


def test_from_json_applies_the_same_rules() -> None:
    with pytest.raises(RequestError) as info:
        ApprovalRequest.from_json({**VALID, "workflow_id": "a:b"})
    assert info.value.field == "workflow_id"
    with pytest.raises(RequestError):
        ApprovalRequest.from_json(["not", "an", "object"])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0), (90, 90), ("90s", 90), ("15m", 900), ("24h", 86_400), ("7d", 604_800)],
)
def test_parse_duration(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "15", "15 m", "m", "-5s", "1.5h", "٣s", "15M", True, 1.0, None, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="must be a number of seconds or a string"):
        parse_duration(value)


def test_validate_workflow_id() -> None:
    assert validate_workflow_id("order-1/é") == "order-1/é"
    with pytest.raises(RequestError) as info:
        validate_workflow_id("a:b")
    assert (info.value.status, info.value.field) == (400, "workflow_id")


def test_request_error_without_field() -> None:
    err = error(b"[]")
    assert err.to_json() == {"error": err.reason}
    assert str(err) == err.reason
