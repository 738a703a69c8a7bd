"""Signed, expiring link tokens: who may decide which approval, and how.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding:
the payload is the compact JSON array ``[promise_id, approver, decision,
expires_at]``, with a fifth element ``1`` when only a signed-in approver may use
it (the request requires sign-in: ``unblock`` then refuses it without an
identity before anything is written), and the signature is HMAC-SHA256 over ``b"hitl.v1." +
<payload>`` with the signing key. Tokens are opaque to their holders; only
:func:`verify`, with the key, reads them.

:func:`verify` accepts exactly what :func:`sign` produces (one canonical
encoding per claims) and turns anything else, whatever its shape or size,
into :class:`TokenError`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MAX_TOKEN_LENGTH",
    "TOKEN_RE",
    "Claims",
    "Decision",
    "TokenError",
    "counterpart",
    "sign",
    "verify",
]

Decision = Literal["approve", "reject"]
TokenErrorReason = Literal["malformed", "bad_signature", "expired"]

#: Longer input is rejected unread; :func:`sign` never produces longer tokens.
MAX_TOKEN_LENGTH = 4096
MIN_KEY_BYTES = 32

_DOMAIN = b"hitl.v1."
_DECISIONS: tuple[Decision, ...] = ("approve", "reject")
_SIGNATURE_CHARS = 43  # 32 bytes of HMAC-SHA256, base64 without padding
_B64 = re.compile(r"[A-Za-z0-9_-]+")

#: Matches anything shaped like a token inside a longer text (used to keep
#: tokens out of logs). Deliberately loose about the payload.
TOKEN_RE = re.compile(rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{{16,}}\.[A-Za-z0-9_-]{{{_SIGNATURE_CHARS}}}(?![A-Za-z0-9_-])")


@dataclass(frozen=True, slots=True)
class Claims:
    """What a link allows: ``approver`` may ``decision`` ``promise_id`` until ``expires_at``."""

    promise_id: str
    approver: str
    decision: Decision
    #: Unix time in seconds; the token is expired from this instant on.
    expires_at: int
    #: Only a signed-in approver may use it (``"sign_in": "required"``).
    sign_in: bool = False


class TokenError(ValueError):
    """The token is not one we signed, or no longer valid."""

    def __init__(self, reason: TokenErrorReason) -> None:
        self.reason: TokenErrorReason = reason
        super().__init__(reason)


def sign(key: bytes, claims: Claims) -> str:
    """Return the token for ``claims``."""
    if not claims.promise_id or not claims.approver:
        raise ValueError("promise_id and approver must not be empty")
    if claims.decision not in _DECISIONS:
        raise ValueError(f"decision must be one of {_DECISIONS}")
    if type(claims.expires_at) is not int:
        raise ValueError("expires_at must be an int")
    fields: list[str | int] = [claims.promise_id, claims.approver, claims.decision, claims.expires_at]
    if claims.sign_in:
        fields.append(1)
    payload = _b64encode(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode())
    token = f"{payload}.{_b64encode(_mac(key, payload))}"
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError("claims too long for a token")
    return token


def verify(key: bytes, token: str, *, now: float) -> Claims:
    """Return the claims of ``token`` if we signed it and it is not expired at ``now``.

    Raises :class:`TokenError` (and nothing else) for any other input.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed")
    payload, sep, signature = token.partition(".")
    if not sep or not _B64.fullmatch(payload) or not _B64.fullmatch(signature):
        raise TokenError("malformed")  # also rules out non-ASCII and a second "."
    raw_signature = _b64decode(signature)
    raw_payload = _b64decode(payload)
    if len(raw_signature) != hashlib.sha256().digest_size:
        raise TokenError("malformed")
    if not hmac.compare_digest(raw_signature, _mac(key, payload)):
        raise TokenError("bad_signature")
    claims = _parse(raw_payload)
    if now >= claims.expires_at:
        raise TokenError("expired")
    return claims


def counterpart(claims: Claims, decision: Decision) -> Claims:
    """The same claims for the other (or the same) decision."""
    return dataclasses.replace(claims, decision=decision)


def _mac(key: bytes, payload: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"signing key must be at least {MIN_KEY_BYTES} bytes")
    return hmac.new(key, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Decode unpadded base64url, accepting only the canonical encoding."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None
    if _b64encode(data) != text:  # non-zero trailing bits: a second spelling
        raise TokenError("malformed")
    return data


def _parse(raw: bytes) -> Claims:
    # Only reached with a valid signature, i.e. for payloads we produced.
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise TokenError("malformed") from None
    match value:
        case [
            str(promise_id),
            str(approver),
            "approve" | "reject" as decision,
            int(expires_at),
            *sign_in,
        ] if promise_id and approver and not isinstance(expires_at, bool) and sign_in in ([], [1]):
            return Claims(promise_id, approver, decision, expires_at, sign_in=sign_in == [1])
    raise TokenError("malformed")
