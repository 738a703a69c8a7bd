"""The approval request: parsed and validated once, at the edge.

:func:`parse_start` turns the body of a ``start`` call into an
:class:`ApprovalRequest` or raises :class:`RequestError` carrying the HTTP
status to answer with. :meth:`ApprovalRequest.from_json` applies the very
same rules to a decoded JSON object, so the workflow, which receives
:meth:`ApprovalRequest.to_json`, never trusts an unchecked value either.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_APPROVERS",
    "MAX_BODY_BYTES",
    "MAX_DEADLINE",
    "MAX_DETAILS_DEPTH",
    "MAX_SUBJECT_CHARS",
    "MAX_WORKFLOW_ID_CHARS",
    "ApprovalRequest",
    "RequestError",
    "parse_duration",
    "parse_start",
    "validate_workflow_id",
]

#: Any value :func:`json.loads` returns.
type JSON = dict[str, JSON] | list[JSON] | str | int | float | bool | None

DAY = 86_400
DEFAULT_DEADLINE = 7 * DAY
MIN_DEADLINE = 1
MAX_DEADLINE = 400 * DAY
MAX_WORKFLOW_ID_CHARS = 200
MAX_SUBJECT_CHARS = 300
MAX_APPROVERS = 50
#: Nesting limit of ``details`` (objects and arrays), so rendering stays shallow.
MAX_DETAILS_DEPTH = 32
MAX_BODY_BYTES = 65_536

_FIELDS = frozenset({"workflow_id", "approvers", "subject", "details", "deadline"})
_REQUIRED = ("workflow_id", "approvers", "subject")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY}
_DURATION = re.compile(r"([0-9]{1,12})([smhd])")
_JSON_TYPES = re.compile(r"application/(?:json|[^/;\s]+\+json)")


class RequestError(ValueError):
    """The request cannot be accepted; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, field: str | None, reason: str) -> None:
        self.status = status
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def to_json(self) -> dict[str, str]:
        """The response body: ``{"error": reason}`` plus ``"field"`` when known."""
        body = {"error": self.reason}
        if self.field is not None:
            body["field"] = self.field
        return body


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    workflow_id: str
    #: Normalized addresses, unique, in the order given.
    approvers: tuple[str, ...]
    subject: str
    details: JSON = field(default_factory=dict)
    #: Seconds from the start of the workflow to its expiry.
    deadline: int = DEFAULT_DEADLINE

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "approvers": list(self.approvers),
            "subject": self.subject,
            "details": self.details,
            "deadline": self.deadline,
        }

    @classmethod
    def from_json(cls, value: object) -> ApprovalRequest:
        """Validate a decoded JSON object; raises :class:`RequestError` (400)."""
        if not isinstance(value, Mapping):
            raise _bad(None, "the body must be a JSON object")
        for name in value:
            if name not in _FIELDS:
                raise _bad(str(name), "unknown field")
        for name in _REQUIRED:
            if name not in value:
                raise _bad(name, "is required")
        return cls(
            workflow_id=validate_workflow_id(value["workflow_id"]),
            approvers=_approvers(value["approvers"]),
            subject=_subject(value["subject"]),
            details=_details(value.get("details", {})),
            deadline=_deadline(value.get("deadline", DEFAULT_DEADLINE)),
        )


def parse_start(
    body: bytes, content_type: str | None, *, max_bytes: int = MAX_BODY_BYTES
) -> ApprovalRequest:
    """Parse the body of a ``start`` call.

    Raises :class:`RequestError` with status 415 (not JSON), 413 (more than
    ``max_bytes``) or 400 (anything else wrong, naming the field).
    """
    if not _is_json(content_type):
        raise RequestError(415, None, "the content type must be application/json")
    if len(body) > max_bytes:
        raise RequestError(413, None, f"the body must be at most {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(None, "the body is not valid UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise _bad(None, "the body is nested too deeply") from None
    except ValueError as exc:
        raise _bad(None, f"the body is not valid JSON: {exc}") from None
    return ApprovalRequest.from_json(value)


def validate_workflow_id(value: object) -> str:
    """Return ``value`` if it is a valid workflow id, else raise :class:`RequestError` (400)."""
    if not isinstance(value, str):
        raise _bad("workflow_id", "must be a string")
    if not value:
        raise _bad("workflow_id", "must not be empty")
    if len(value) > MAX_WORKFLOW_ID_CHARS:
        raise _bad("workflow_id", f"must be at most {MAX_WORKFLOW_ID_CHARS} characters")
    if ":" in value:
        raise _bad("workflow_id", "must not contain ':'")
    if _has_control(value):
        raise _bad("workflow_id", "must not contain control characters")
    return value


def parse_duration(value: object) -> int:
    """Seconds in ``value``: an int, or a string like ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``.

    Raises :class:`ValueError`; checks no range.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        return int(m[1]) * _UNITS[m[2]]
    raise ValueError('must be a number of seconds or a string like "90s", "15m", "24h" or "7d"')


def _approvers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _bad("approvers", "must be a list of email addresses")
    if not 1 <= len(value) <= MAX_APPROVERS:
        raise _bad("approvers", f"must hold 1 to {MAX_APPROVERS} addresses")
    approvers: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        address = _email(item, f"approvers[{i}]")
        if address.casefold() in seen:
            raise _bad(f"approvers[{i}]", f"duplicate approver {address}")
        seen.add(address.casefold())
        approvers.append(address)
    return tuple(approvers)


def _email(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    # Imported here: ~40 ms of regex compilation only the start path needs.
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise _bad(name, f"is not a valid email address: {exc}") from None


def _subject(value: object) -> str:
    if not isinstance(value, str):
        raise _bad("subject", "must be a string")
    if not value.strip():
        raise _bad("subject", "must not be empty")
    if len(value) > MAX_SUBJECT_CHARS:
        raise _bad("subject", f"must be at most {MAX_SUBJECT_CHARS} characters")
    if _has_control(value):  # it becomes an email header
        raise _bad("subject", "must not contain control characters or line breaks")
    return value


def _details(value: object) -> JSON:
    if _depth(value) > MAX_DETAILS_DEPTH:
        raise _bad("details", f"must not be nested more than {MAX_DETAILS_DEPTH} levels")
    return value  # type: ignore[return-value]  # decoded JSON, checked by the caller


def _deadline(value: object) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _bad("deadline", str(exc)) from None
    if not MIN_DEADLINE <= seconds <= MAX_DEADLINE:
        raise _bad("deadline", "must be between 1 second and 400 days")
    return seconds


def _depth(value: object) -> int:
    """Nesting depth of containers, iteratively (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DETAILS_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _has_control(text: str) -> bool:
    # Cc: C0, DEL and C1 controls; Cs: lone surrogates, which cannot be encoded.
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media_type, *params = (p.strip().lower() for p in content_type.split(";"))
    if not _JSON_TYPES.fullmatch(media_type):
        return False
    for param in params:
        name, _, val = param.partition("=")
        if name.strip() == "charset" and val.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in object")
    return obj


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {text}")
    return number


def _bad(field: str | None, reason: str) -> RequestError:
    return RequestError(400, field, reason)
