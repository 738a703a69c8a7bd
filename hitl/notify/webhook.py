"""Approval events as JSON POSTed to a caller's webhook: asked, reminded, decided.

:func:`webhook_event` (an approver is asked or reminded) and :func:`decided_event`
(the request ended) are pure, so a retried step rebuilds the same event.
:func:`post_webhook` sends it once, with ``X-Hitl-Idempotency-Key`` (equal
keys mean "the same event": a receiver drops a duplicate sent after a
crash-retry) and, when a secret is configured, ``X-Hitl-Signature``, the
scheme of :mod:`hitl.security.signatures` (``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``),
which a receiver checks with :func:`hitl.security.signatures.verify`.

The event carries the signed links: neither they nor the URL's path and
query are logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Literal

from hitl.notify.post import post_json
from hitl.notify.urls import NotifyError, check_link, check_url, parse_deadline
from hitl.security import signatures as webhook

__all__ = [
    "IDEMPOTENCY_HEADER",
    "KINDS",
    "SIGNATURE_HEADER",
    "NotifyError",
    "check_url",
    "decided_event",
    "post_webhook",
    "webhook_event",
]

IDEMPOTENCY_HEADER = "X-Hitl-Idempotency-Key"
SIGNATURE_HEADER = webhook.HEADER
EventKind = Literal["approval.requested", "approval.reminder"]
KINDS: tuple[EventKind, ...] = ("approval.requested", "approval.reminder")
#: Version of the event's shape, sent as ``"version"``.
VERSION = 1


def decided_event(*, workflow_id: str, result: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """The event telling a caller's webhook that a request ended (``on_decision``).

    Shape::

        {"type": "approval.decided", "id": idempotency_key, "version": 1,
         "workflow_id": ..., "result": {"decision", "by", "comment", "decided_at", "decisions"}}

    ``result`` is what the status answer carries as ``result``. The same on every
    attempt: the key tells a receiver it has seen it.
    """
    if not idempotency_key or not idempotency_key.isprintable() or len(idempotency_key) > 200:
        raise ValueError("idempotency_key must be 1-200 printable characters")
    return {
        "type": "approval.decided",
        "id": idempotency_key,
        "version": VERSION,
        "workflow_id": workflow_id,
        "result": result,
    }


def webhook_event(
    *,
    kind: EventKind,
    workflow_id: str,
    approver: str,
    subject: str,
    details: object,
    approve_url: str,
    reject_url: str,
    deadline_at_iso: str,
    idempotency_key: str,
) -> dict[str, Any]:
    """The event telling a webhook that ``approver`` is asked (or reminded) to decide.

    Shape::

        {"type": kind, "id": idempotency_key, "version": 1, "workflow_id": ...,
         "approver": ..., "subject": ..., "details": ..., "deadline_at": ...,
         "links": {"approve": ..., "reject": ...}}

    Raises :class:`ValueError` on an unknown kind, malformed links or deadline,
    or an empty idempotency key.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not idempotency_key or not idempotency_key.isprintable() or len(idempotency_key) > 200:
        raise ValueError("idempotency_key must be 1-200 printable characters")
    check_link("approve_url", approve_url)
    check_link("reject_url", reject_url)
    parse_deadline(deadline_at_iso)
    return {
        "type": kind,
        "id": idempotency_key,
        "version": VERSION,
        "workflow_id": workflow_id,
        "approver": approver,
        "subject": subject,
        "details": details,
        "deadline_at": deadline_at_iso,
        "links": {"approve": approve_url, "reject": reject_url},
    }


async def post_webhook(
    url: str,
    event: dict[str, Any],
    *,
    secret: bytes | None,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """POST ``event`` (from :func:`webhook_event` or :func:`decided_event`) as JSON to ``url``, once.

    Call :func:`check_url` on ``url`` first. Signs the exact bytes sent when
    ``secret`` is set. Raises :class:`NotifyError`: ``permanent`` for a 4xx
    answer other than 408 and 429, or an event that is not JSON.
    """
    key = event.get("id")
    if not isinstance(key, str) or not key:
        raise NotifyError("the webhook event has no id", permanent=True)
    try:
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise NotifyError(f"the webhook event is not JSON: {type(exc).__name__}", permanent=True) from None
    headers = {IDEMPOTENCY_HEADER: key}
    if secret:
        headers[SIGNATURE_HEADER] = webhook.sign(secret, body, int(clock()))
    await post_json(url, body, headers=headers, timeout=timeout, what="webhook event", clock=clock)
