"""hitl.notify.webhook: the JSON event, its headers and signature, against a real local server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import web
from support.receivers import serve

from hitl.delivery import next_attempt_at
from hitl.notify.email import message_id_for
from hitl.notify.post import retry_after
from hitl.notify.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, NotifyError, post_webhook, webhook_event
from hitl.security import signatures as webhook

APPROVE = "https://unblock.example/unblock?token=APPROVE-TOKEN&x=1"
REJECT = "https://unblock.example/unblock?token=REJECT-TOKEN"
SECRET = b"outbound-webhook-secret-0123456789"
KEY = message_id_for("approvals/wf-1", "alice@example.com")


def _event(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "kind": "approval.requested",
        "workflow_id": "wf-1",
        "approver": "alice@example.com",
        "subject": "Deploy v2 <prod>",
        "details": {"service": "billing", "nested": {"replicas": 3}},
        "approve_url": APPROVE,
        "reject_url": REJECT,
        "deadline_at_iso": "2026-11-23T10:00:00Z",
        "idempotency_key": KEY,
    }
    args.update(overrides)
    return webhook_event(**args)


class _Capture:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)


def _post(event: dict[str, Any], *, secret: bytes | None, status: int = 200) -> _Capture:
    capture = _Capture(status)

    async def run() -> None:
        async with serve(capture) as base:
            await post_webhook(base + "/hooks/approvals?k=1", event, secret=secret, timeout=5)

    asyncio.run(run())
    return capture


def test_event_shape() -> None:
    assert _event() == {
        "type": "approval.requested",
        "id": KEY,
        "version": 1,
        "workflow_id": "wf-1",
        "approver": "alice@example.com",
        "subject": "Deploy v2 <prod>",
        "details": {"service": "billing", "nested": {"replicas": 3}},
        "deadline_at": "2026-11-23T10:00:00Z",
        "links": {"approve": APPROVE, "reject": REJECT},
    }
    assert _event(kind="approval.reminder")["type"] == "approval.reminder"
    assert _event() == _event()  # pure: a retried step rebuilds the same event


def test_event_rejects_malformed_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        _event(kind="approval.decided")
    with pytest.raises(ValueError, match="idempotency_key"):
        _event(idempotency_key="")
    with pytest.raises(ValueError, match="approve_url"):
        _event(approve_url="unblock?token=x")
    with pytest.raises(ValueError, match="timezone"):
        _event(deadline_at_iso="2026-11-23T10:00:00")


def test_post_signs_the_exact_body_with_hitl_webhook_scheme() -> None:
    event = _event()
    capture = _post(event, secret=SECRET)
    ((headers, body),) = capture.requests
    assert headers["Content-Type"] == "application/json"
    assert headers[IDEMPOTENCY_HEADER] == KEY
    assert json.loads(body) == event
    webhook.verify(SECRET, body, headers[SIGNATURE_HEADER], now=time.time())
    with pytest.raises(webhook.SignatureError):
        webhook.verify(b"another-secret-0123456789-0123456789", body, headers[SIGNATURE_HEADER], now=time.time())
    with pytest.raises(webhook.SignatureError):
        webhook.verify(SECRET, body + b" ", headers[SIGNATURE_HEADER], now=time.time())


def test_post_signature_timestamp_comes_from_the_clock() -> None:
    event = _event()
    capture = _Capture()

    async def run() -> None:
        async with serve(capture) as base:
            await post_webhook(base + "/h", event, secret=SECRET, clock=lambda: 1_700_000_000.7)

    asyncio.run(run())
    ((headers, body),) = capture.requests
    assert headers[SIGNATURE_HEADER] == webhook.sign(SECRET, body, 1_700_000_000)


def test_post_without_secret_sends_no_signature() -> None:
    capture = _post(_event(), secret=None)
    ((headers, _),) = capture.requests
    assert SIGNATURE_HEADER not in headers
    assert headers[IDEMPOTENCY_HEADER] == KEY


def test_retries_carry_the_same_idempotency_key_and_body() -> None:
    capture = _Capture()

    async def run() -> None:
        async with serve(capture) as base:
            for _ in range(2):
                await post_webhook(base + "/h", _event(), secret=SECRET)

    asyncio.run(run())
    (h1, b1), (h2, b2) = capture.requests
    assert h1[IDEMPOTENCY_HEADER] == h2[IDEMPOTENCY_HEADER] == KEY
    assert b1 == b2


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (502, False), (429, False), (404, True), (401, True)])
def test_post_classifies_http_errors(status: int, permanent: bool) -> None:
    with pytest.raises(NotifyError) as caught:
        _post(_event(), secret=SECRET, status=status)
    assert caught.value.permanent is permanent and caught.value.status == status
    assert "/hooks" not in str(caught.value) and "k=1" not in str(caught.value)


def test_post_refuses_an_event_that_is_not_json() -> None:
    event = _event(details={"x": float("nan")})
    with pytest.raises(NotifyError, match="not JSON") as caught:
        asyncio.run(post_webhook("http://127.0.0.1:9/h", event, secret=None))
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # an HTTP date, 30 s after "now" below
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after(header, now=now) == seconds


def test_the_next_delivery_attempt_honours_retry_after_within_the_window() -> None:
    day = 86_400_000
    assert next_attempt_at(0, 1, day, None) == 1_000  # the backoff
    assert next_attempt_at(0, 1, day, 30.0) == 30_000  # the receiver's wait, not the backoff
    assert next_attempt_at(0, 5, day, 0.0) == 1_000  # at least a second
    assert next_attempt_at(0, 1, day, 3 * 86_400.0) == day - 1  # capped: one last try at the window's end
    assert next_attempt_at(day - 1, 1, day, 60.0) is None  # nothing left of the window
    assert next_attempt_at(day - 500, 20, day, None) is None  # the backoff would pass it
