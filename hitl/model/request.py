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
from typing import Any, Literal
from urllib.parse import urlsplit

from resonate.ids import origin_of

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_APPROVERS",
    "MAX_BODY_BYTES",
    "MAX_DEADLINE",
    "MAX_DETAILS_DEPTH",
    "MAX_SUBJECT_CHARS",
    "MAX_WORKFLOW_ID_CHARS",
    "ApprovalRequest",
    "Channel",
    "Escalation",
    "RequestError",
    "Target",
    "parse_cancel",
    "parse_duration",
    "parse_start",
    "parse_wait",
    "stored_request",
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
#: hitl's own promises outside any request's lineage: the inboxes' entries and fences begin
#: with this, a caller's promise's claim ends with the other. No workflow id may take them.
INBOX_ID_PREFIX = "hitl.inbox/"
CLAIM_ID_SUFFIX = "#hitl.claim"

_FIELDS = frozenset(
    {
        "workflow_id", "approvers", "subject", "details", "deadline", "required", "veto", "remind", "on_expiry",
        "notify", "on_decision", "sign_in", "requester",
    }
)  # fmt: skip
#: Most places a request's decision may be delivered to.
MAX_TARGETS = 10
#: Longest promise id a target may name (the server itself sets no limit).
MAX_PROMISE_ID_CHARS = 1000
MAX_URL_CHARS = 2000
MAX_REMINDERS = 10
CHANNEL_TYPES = ("email", "slack", "webhook")
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
class Escalation:
    """``on_expiry``: what happens when the deadline passes with no decision."""

    #: ``expire`` (the result is ``expired``), ``approve``/``reject`` (a default decision
    #: made by the system) or ``escalate`` (ask ``to`` with a new deadline).
    action: str = "expire"
    to: tuple[str, ...] = ()
    #: Seconds the escalation round lasts.
    deadline: int = 0
    required: int = 1

    def to_json(self) -> str | dict[str, Any]:
        if self.action != "escalate":
            return self.action
        return {"action": "escalate", "to": list(self.to), "deadline": self.deadline, "required": self.required}


@dataclass(frozen=True, slots=True)
class Channel:
    """Where approvers are asked: ``email`` (their address), ``slack`` or ``webhook`` (a URL)."""

    type: str
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type} if self.url is None else {"type": self.type, "url": self.url}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request's decision goes when it ends: a caller's Resonate ``promise`` (by id),
    resolved with the result, or a ``webhook`` (a URL), POSTed an ``approval.decided`` event."""

    type: Literal["promise", "webhook"]
    #: The promise's id (``promise``) or the URL (``webhook``).
    address: str

    def to_json(self) -> dict[str, str]:
        return (
            {"type": "promise", "id": self.address}
            if self.type == "promise"
            else {"type": "webhook", "url": self.address}
        )

    @property
    def shown(self) -> dict[str, str]:
        """The target as a status answer shows it: a webhook by its host alone (a URL's path
        and query may be credentials, as a Slack webhook's are)."""
        if self.type == "promise":
            return self.to_json()
        return {"type": "webhook", "host": urlsplit(self.address).hostname or ""}


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    workflow_id: str
    #: Normalized addresses, unique, in the order given.
    approvers: tuple[str, ...]
    subject: str
    details: JSON = field(default_factory=dict)
    #: Seconds from the start of the workflow to its expiry.
    deadline: int = DEFAULT_DEADLINE
    #: Approvals needed (k of n).
    required: int = 1
    #: Whether one rejection decides ``rejected``.
    veto: bool = True
    #: Seconds before the deadline at which undecided approvers are reminded, latest last.
    remind: tuple[int, ...] = ()
    on_expiry: Escalation = field(default_factory=Escalation)
    notify: tuple[Channel, ...] = (Channel("email"),)
    #: Where the decision is delivered when the request ends (see :class:`Target`).
    on_decision: tuple[Target, ...] = ()
    #: Whether only signed-in approvers may decide (``"sign_in": "required"``): a vote
    #: identified by its link alone then counts for nothing.
    sign_in_required: bool = False
    #: Who asks, as the requester says it (shown to approvers in their inbox).
    requester: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "workflow_id": self.workflow_id,
            "approvers": list(self.approvers),
            "subject": self.subject,
            "details": self.details,
            "deadline": self.deadline,
            "required": self.required,
            "veto": self.veto,
            "remind": list(self.remind),
            "on_expiry": self.on_expiry.to_json(),
            "notify": [c.to_json() for c in self.notify],
        }
        if self.on_decision:  # absent when empty: a request stored before it existed reads the same
            out["on_decision"] = [t.to_json() for t in self.on_decision]
        if self.sign_in_required:  # likewise
            out["sign_in"] = "required"
        if self.requester is not None:
            out["requester"] = self.requester
        return out

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
        approvers = _approvers(value["approvers"])
        deadline = _deadline(value.get("deadline", DEFAULT_DEADLINE))
        workflow_id = validate_workflow_id(value["workflow_id"])
        return cls(
            workflow_id=workflow_id,
            approvers=approvers,
            subject=_subject(value["subject"]),
            details=_details(value.get("details", {})),
            deadline=deadline,
            required=_required(value.get("required", 1), len(approvers), "required"),
            veto=_flag(value.get("veto", True), "veto"),
            remind=_remind(value.get("remind", []), deadline),
            on_expiry=_on_expiry(value.get("on_expiry", "expire"), approvers),
            notify=_notify(value.get("notify", [{"type": "email"}])),
            on_decision=_on_decision(value.get("on_decision", []), workflow_id),
            sign_in_required=_sign_in(value.get("sign_in")),
            requester=_requester(value.get("requester")),
        )


def stored_request(value: object) -> ApprovalRequest:
    """A request as hitl stored it (the ``to_json`` of one :meth:`ApprovalRequest.from_json`
    accepted), rebuilt without checking every rule again: the edges read it on every page
    view and click, and validating each approver's address costs more than the rest of
    the request. Raises :class:`RequestError` (400) when it is not that shape at all.
    """
    if not isinstance(value, Mapping):
        raise _bad(None, "not a stored approval request")
    try:
        expiry = value["on_expiry"]
        on_expiry = (
            Escalation(str(expiry))
            if isinstance(expiry, str)
            else Escalation("escalate", tuple(expiry["to"]), int(expiry["deadline"]), int(expiry["required"]))
        )
        return ApprovalRequest(
            workflow_id=str(value["workflow_id"]),
            approvers=tuple(str(a) for a in value["approvers"]),
            subject=str(value["subject"]),
            details=value["details"],
            deadline=int(value["deadline"]),
            required=int(value["required"]),
            veto=bool(value["veto"]),
            remind=tuple(int(s) for s in value["remind"]),
            on_expiry=on_expiry,
            notify=tuple(Channel(str(c["type"]), c.get("url")) for c in value["notify"]),
            on_decision=tuple(
                Target("promise", str(t["id"])) if t["type"] == "promise" else Target("webhook", str(t["url"]))
                for t in value.get("on_decision", ())
            ),
            sign_in_required=value.get("sign_in") == "required",
            requester=None if value.get("requester") is None else str(value["requester"]),
        )
    except (KeyError, TypeError, ValueError):
        raise _bad(None, "not a stored approval request") from None


def parse_start(body: bytes, content_type: str | None, *, max_bytes: int = MAX_BODY_BYTES) -> ApprovalRequest:
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


def parse_cancel(body: bytes, content_type: str | None) -> tuple[str, str]:
    """``(workflow_id, reason)`` from the body of a cancel call (``{"workflow_id", "reason"?}``)."""
    if not _is_json(content_type):
        raise RequestError(415, None, "the content type must be application/json")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(None, "the body is not valid JSON") from None
    if not isinstance(value, Mapping):
        raise _bad(None, "the body must be a JSON object")
    for name in value:
        if name not in ("workflow_id", "reason"):
            raise _bad(str(name), "unknown field")
    reason = value.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000 or _has_control(reason.replace("\n", " ")):
        raise _bad("reason", "must be text of at most 2000 characters")
    return validate_workflow_id(value.get("workflow_id")), reason


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
    if value.startswith(INBOX_ID_PREFIX) or value.endswith(CLAIM_ID_SUFFIX):
        raise _bad(
            "workflow_id", f"must not begin with {INBOX_ID_PREFIX!r} or end with {CLAIM_ID_SUFFIX!r} (hitl's own)"
        )
    if _has_control(value):
        raise _bad("workflow_id", "must not contain control characters")
    return value


#: Longest a status read may wait for the request to end (``GET start?wait=``).
MAX_WAIT_SECONDS = 60


def parse_wait(value: str | None) -> float:
    """The ``wait`` of a status read: seconds from 0 to :data:`MAX_WAIT_SECONDS` (0 when absent).

    Raises :class:`RequestError` (400, field ``wait``).
    """
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise _bad("wait", f"must be a number of seconds from 0 to {MAX_WAIT_SECONDS}") from None
    if not 0 <= seconds <= MAX_WAIT_SECONDS:  # also refuses nan
        raise _bad("wait", f"must be a number of seconds from 0 to {MAX_WAIT_SECONDS}")
    return seconds


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
    return _approvers_named(value, "approvers")


def _approvers_named(value: list[Any], field_name: str) -> tuple[str, ...]:
    approvers: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        address = _email(item, f"{field_name}[{i}]")
        if address.casefold() in seen:
            raise _bad(f"{field_name}[{i}]", f"duplicate approver {address}")
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
    try:  # JSON may escape a lone surrogate (\ud800), which no UTF-8 text can hold
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("details", "must be valid Unicode text (it holds a lone surrogate)") from None
    return value  # type: ignore[return-value]  # decoded JSON, checked by the caller


def _deadline(value: object, name: str = "deadline") -> int:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _bad(name, str(exc)) from None
    if not MIN_DEADLINE <= seconds <= MAX_DEADLINE:
        raise _bad(name, "must be between 1 second and 400 days")
    return seconds


def _required(value: object, approvers: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(name, "must be a whole number")
    if not 1 <= value <= approvers:
        raise _bad(name, f"must be between 1 and the number of approvers ({approvers})")
    return value


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "must be true or false")
    return value


def _remind(value: object, deadline: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _bad("remind", 'must be a list of durations before the deadline, like ["24h", "1h"]')
    if len(value) > MAX_REMINDERS:
        raise _bad("remind", f"must hold at most {MAX_REMINDERS} reminders")
    seconds: set[int] = set()
    for i, item in enumerate(value):
        try:
            before = parse_duration(item)
        except ValueError as exc:
            raise _bad(f"remind[{i}]", str(exc)) from None
        if not 1 <= before < deadline:
            raise _bad(f"remind[{i}]", "must be at least 1 second and less than the deadline")
        seconds.add(before)
    return tuple(sorted(seconds, reverse=True))


def _on_expiry(value: object, approvers: tuple[str, ...]) -> Escalation:
    if value in ("expire", "approve", "reject"):
        return Escalation(str(value))
    if not isinstance(value, Mapping) or value.get("action") != "escalate":
        raise _bad(
            "on_expiry",
            'must be "expire", "approve", "reject" or {"action": "escalate", "to": [...], "deadline": "1d"}',
        )
    for name in value:
        if name not in ("action", "to", "deadline", "required"):
            raise _bad(f"on_expiry.{name}", "unknown field")
    if "to" not in value or "deadline" not in value:
        raise _bad("on_expiry", "escalate needs 'to' and 'deadline'")
    to = value["to"]
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_APPROVERS:
        raise _bad("on_expiry.to", f"must hold 1 to {MAX_APPROVERS} addresses")
    escalated = _approvers_named(to, "on_expiry.to")
    return Escalation(
        "escalate",
        escalated,
        _deadline(value["deadline"], "on_expiry.deadline"),
        _required(value.get("required", 1), len(escalated), "on_expiry.required"),
    )


def _notify(value: object) -> tuple[Channel, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= len(CHANNEL_TYPES):
        raise _bad("notify", 'must be a list of channels like [{"type": "email"}]')
    channels: list[Channel] = []
    for i, item in enumerate(value):
        name = f"notify[{i}]"
        if not isinstance(item, Mapping) or item.get("type") not in CHANNEL_TYPES:
            raise _bad(name, f"must be an object with a type of {', '.join(CHANNEL_TYPES)}")
        kind = str(item["type"])
        for key in item:
            if key not in ("type", "url"):
                raise _bad(f"{name}.{key}", "unknown field")
        url = item.get("url")
        if kind == "email":
            if url is not None:
                raise _bad(f"{name}.url", "email takes no url")
        elif not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > MAX_URL_CHARS:
            raise _bad(f"{name}.url", "must be an http(s) URL")
        if any(c.type == kind for c in channels):
            raise _bad(name, f"duplicate channel {kind}")
        channels.append(Channel(kind, url if kind != "email" else None))
    return tuple(channels)


def _on_decision(value: object, workflow_id: str) -> tuple[Target, ...]:
    if not isinstance(value, list) or len(value) > MAX_TARGETS:
        raise _bad(
            "on_decision", f'must be a list of at most {MAX_TARGETS} targets like [{{"type": "promise", "id": "..."}}]'
        )
    targets: list[Target] = []
    for i, item in enumerate(value):
        name = f"on_decision[{i}]"
        if not isinstance(item, Mapping) or item.get("type") not in ("promise", "webhook"):
            raise _bad(name, 'must be {"type": "promise", "id": ...} or {"type": "webhook", "url": ...}')
        key = "id" if item["type"] == "promise" else "url"
        for k in item:
            if k not in ("type", key):
                raise _bad(f"{name}.{k}", "unknown field")
        address = item.get(key)
        if item["type"] == "promise":
            target = Target("promise", _promise_id(address, f"{name}.id", workflow_id))
        else:
            if (
                not isinstance(address, str)
                or not address.startswith(("https://", "http://"))
                or len(address) > MAX_URL_CHARS
            ):
                raise _bad(f"{name}.url", "must be an http(s) URL")
            target = Target("webhook", address)
        if target in targets:
            raise _bad(name, "duplicate target")
        targets.append(target)
    return tuple(targets)


#: Longest ``requester`` text.
MAX_REQUESTER_CHARS = 200


def _requester(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REQUESTER_CHARS or _has_control(value):
        raise _bad("requester", f"must be text of 1 to {MAX_REQUESTER_CHARS} characters, on one line")
    return value


def _sign_in(value: object) -> bool:
    if value is None:
        return False
    if value != "required":
        raise _bad("sign_in", 'must be "required" (only signed-in approvers decide), or absent')
    return True


def _promise_id(value: object, name: str, workflow_id: str) -> str:
    """A promise id the Resonate server accepts (not empty, no NUL), of someone else's workflow."""
    if not isinstance(value, str) or not value:
        raise _bad(name, "must be a promise id (a non-empty string)")
    if len(value) > MAX_PROMISE_ID_CHARS:
        raise _bad(name, f"must be at most {MAX_PROMISE_ID_CHARS} characters")
    if "\0" in value or _has_control(value):
        raise _bad(name, "must not contain control characters")
    if origin_of(value) == workflow_id:
        raise _bad(name, "must not name a promise of this request itself")
    return value


def _depth(value: object) -> int:
    """Nesting depth of containers, iteratively (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
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
