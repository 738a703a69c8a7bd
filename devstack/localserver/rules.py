"""Request validation, as the real server's ``types.rs`` has it.

Every function here either returns the parsed value or raises
:class:`ProtocolError` with the status and message the real server answers.
Pure: no state, no IO, so each rule is tested by calling it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

I64_MAX = (1 << 63) - 1
SETTLE_STATES = ("resolved", "rejected", "rejected_canceled")


class ProtocolError(Exception):
    """A request the server refuses: ``status`` and the plain-string message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}")


def bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


def origin(id: str) -> str:
    """Everything before the first ``:`` (the whole id for a root)."""
    return id.split(":", 1)[0]


def string(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise bad(f"Invalid request: missing or invalid field `{field}`")
    return value


def non_empty(data: dict[str, Any], field: str) -> str:
    value = string(data, field)
    if not value:
        raise bad(f"Invalid request: `{field}` must not be empty")
    return value


def integer(data: dict[str, Any], field: str, *, minimum: int = 0) -> int:
    value = data.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= I64_MAX:
        raise bad(f"Invalid request: `{field}` must be an integer >= {minimum}")
    return value


def obj(data: dict[str, Any], field: str, *, required: bool = True) -> dict[str, Any]:
    value = data.get(field)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise bad(f"Invalid request: `{field}` must be an object")
    return value


#: The empty value (and param): one shared object, never mutated, since most records carry one.
NO_VALUE: dict[str, Any] = {}


def value_obj(data: dict[str, Any], field: str) -> dict[str, Any]:
    """A promise value ``{headers?, data?}``; null/absent is ``{}`` (:data:`NO_VALUE`)."""
    raw = obj(data, field, required=False)
    if not raw:
        return NO_VALUE
    out: dict[str, Any] = {}
    headers = raw.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise bad(f"Invalid request: `{field}.headers` must map strings to strings")
        out["headers"] = headers
    payload = raw.get("data")
    if payload is not None:
        if not isinstance(payload, str):
            raise bad(f"Invalid request: `{field}.data` must be a string")
        out["data"] = payload
    return out or NO_VALUE


#: The tag keys every record carries, and the keys whose values repeat across records.
_KEYS = {
    k: k
    for k in (
        "resonate:origin", "resonate:branch", "resonate:parent", "resonate:scope", "resonate:target",
        "resonate:timer", "resonate:external", "resonate:delay", "resonate:prefix", "hitl:func",
    )
}  # fmt: skip
_SHARED_VALUES = frozenset({"resonate:scope", "resonate:target", "resonate:timer", "resonate:external", "hitl:func"})
#: One string object per distinct shared value (bounded: values come from clients).
_values: dict[str, str] = {}


def _shared(value: str) -> str:
    if len(_values) < 4096:
        return _values.setdefault(value, value)
    return _values.get(value, value)


def tags_of(data: dict[str, Any]) -> dict[str, str]:
    tags = obj(data, "tags", required=False)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise bad("Invalid request: `tags` must map strings to strings")
    # Every record carries the same few keys: share one string object for each
    # (a JSON decode makes a fresh copy per record). Ids are not interned.
    return {_KEYS.get(k, k): _shared(v) if k in _SHARED_VALUES else v for k, v in tags.items()}


def is_address(value: str) -> bool:
    """Whether ``value`` parses as an absolute URI with a scheme and something after it."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if not parts.scheme or not parts.scheme[0].isalpha():
        return False
    rest = value[len(parts.scheme) + 1 :]
    if rest.startswith("//"):
        return bool(parts.netloc)
    return bool(rest)


def _extends(id: str, ancestor: str, sep: str) -> bool:
    return id == ancestor or id.startswith(ancestor + sep)


def promise_create(data: dict[str, Any]) -> tuple[str, int, dict[str, Any], dict[str, str]]:
    """Validate ``PromiseCreateData``: ``(id, timeoutAt, param, tags)``."""
    id = string(data, "id")
    timeout_at = data.get("timeoutAt")
    if not isinstance(timeout_at, int) or isinstance(timeout_at, bool) or timeout_at > I64_MAX:
        raise bad("Invalid request: missing or invalid field `timeoutAt`")
    if not id:
        raise bad("Promise ID is required")
    if timeout_at < 0:
        raise bad("TimeoutAt must be a non-negative integer")
    if "\0" in id:
        raise bad("Promise ID must not contain null bytes")
    param = value_obj(data, "param")
    tags = tags_of(data)
    errors: list[str] = []
    o = tags.get("resonate:origin")
    if o is not None:
        if ":" in o:
            errors.append("resonate:origin must not contain ':'")
        elif not _extends(id, o, ":"):
            errors.append("Promise ID must be prefixed by resonate:origin")
    for tag, name in (("resonate:branch", "branch"), ("resonate:parent", "parent")):
        ancestor = tags.get(tag)
        if ancestor is not None:
            sep = "." if ":" in ancestor else ":"
            if not _extends(id, ancestor, sep):
                errors.append(f"Promise ID must be prefixed by resonate:{name}")
    prefix = tags.get("resonate:prefix")
    if prefix is not None and "." in prefix:
        errors.append("resonate:prefix must not contain '.'")
    delay = tags.get("resonate:delay")
    if delay is not None:
        at = parse_i64(delay)
        if at is None or at < 0:
            errors.append("resonate:delay must be a non-negative integer")
        elif at >= timeout_at:
            errors.append("resonate:delay must be less than timeoutAt")
        if "resonate:target" not in tags:
            errors.append("resonate:delay requires a resonate:target tag")
    if errors:
        raise bad("; ".join(errors))
    target = tags.get("resonate:target")
    if target is not None and not is_address(target):
        raise bad("Invalid resonate:target address")
    return id, timeout_at, param, tags


def settle(data: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Validate ``promise.settle`` data: ``(id, state, value)``."""
    id = non_empty(data, "id")
    state = data.get("state")
    if state not in SETTLE_STATES:
        raise bad(f"Invalid request: unknown variant `{state}`, expected one of {', '.join(SETTLE_STATES)}")
    return id, SETTLE_STATES[SETTLE_STATES.index(state)], value_obj(data, "value")  # the shared string


def callback(data: dict[str, Any]) -> tuple[str, str]:
    """Validate ``PromiseRegisterCallbackData``: ``(awaited, awaiter)``."""
    awaited = non_empty(data, "awaited")
    awaiter = non_empty(data, "awaiter")
    if awaited == awaiter:
        raise bad("Awaited and awaiter must be different promises")
    if origin(awaited) != origin(awaiter):
        raise bad("Awaiter and awaited must belong to the same origin")
    return awaited, awaiter


def parse_i64(text: str) -> int | None:
    """``text`` as Rust's ``i64::from_str`` reads it (optional sign, digits only), else ``None``."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    return value if -I64_MAX - 1 <= value <= I64_MAX else None


def action(data: dict[str, Any], field: str = "action", *, head: bool = True) -> tuple[str, dict[str, Any]]:
    """A nested ``{kind, head, data}`` envelope: ``(kind, data)``; ``head`` is required unless told."""
    act = obj(data, field)
    kind = act.get("kind")
    if not isinstance(kind, str):
        raise bad(f"Invalid request: `{field}.kind` must be a string")
    if head and not isinstance(act.get("head"), dict):
        raise bad(f"Invalid request: missing field `{field}.head`")
    return kind, obj(act, "data")


def suspend_actions(task_id: str, data: dict[str, Any]) -> list[str]:
    """Validate ``task.suspend`` actions; return the awaited ids in order."""
    actions = data.get("actions")
    if not isinstance(actions, list):
        raise bad("Invalid request: `actions` must be an array")
    if not actions:
        raise bad("Actions array cannot be empty")
    awaited_ids: list[str] = []
    for act in actions:
        if not isinstance(act, dict):
            raise bad("Invalid request: each action must be an object")
        _, cb = action({"action": act})
        awaited, awaiter = callback(cb)
        if awaiter != task_id:
            raise bad("All action awaiter IDs must match the task ID")
        if origin(awaited) != origin(task_id):
            raise bad("Awaited promise must belong to the same origin as the task")
        awaited_ids.append(awaited)
    if len(set(awaited_ids)) != len(awaited_ids):
        raise bad("Awaited promise IDs must be unique")
    return awaited_ids


def heartbeat(data: dict[str, Any]) -> tuple[str, list[tuple[str, int]]]:
    pid = non_empty(data, "pid")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise bad("Invalid request: `tasks` must be a non-empty array")
    refs: list[tuple[str, int]] = []
    for ref in tasks:
        if not isinstance(ref, dict):
            raise bad("Invalid request: each task must be an object")
        refs.append((non_empty(ref, "id"), integer(ref, "version")))
    if len({origin(id) for id, _ in refs}) > 1:
        raise bad("All tasks must belong to the same origin")
    return pid, refs
