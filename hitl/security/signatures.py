"""Webhook signatures for ``start``: an HMAC-SHA256 of the raw body, with a timestamp.

Header ``X-Hitl-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``,
the scheme webhook senders (Stripe, Slack) use: the timestamp inside the MAC
makes a captured request useless outside a short window.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hitl-Signature"
WINDOW_SECONDS = 300


class SignatureError(Exception):
    pass


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str | None, *, now: float, window: int = WINDOW_SECONDS) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` within ``window`` seconds of ``now``."""
    if not header:
        raise SignatureError("missing signature")
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    t, given = fields.get("t", ""), fields.get("v1", "")
    if not t.isdigit() or len(t) > 12:
        raise SignatureError("malformed signature")
    if abs(now - int(t)) > window:
        raise SignatureError("signature outside the allowed time window")
    expected = sign(secret, body, int(t)).split("v1=", 1)[1]
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("signature mismatch")
