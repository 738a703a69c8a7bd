"""Request validation, as the real server's ``types.rs`` has it.

Every function here either returns the parsed value or raises
:class:`ProtocolError` with the status and message the real server answers.
Pure: no state, no IO, so each rule is tested by calling it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, NamedTuple
from urllib.parse import unquote

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


def non_empty(data: dict[str, Any], field: str, message: str | None = None) -> str:
    value = string(data, field)
    if not value:
        raise bad(message or f"Invalid request: `{field}` must not be empty")
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


def tags_of(data: dict[str, Any], field: str = "tags") -> dict[str, str]:
    tags = obj(data, field, required=False)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise bad(f"Invalid request: `{field}` must map strings to strings")
    # Every record carries the same few keys: share one string object for each
    # (a JSON decode makes a fresh copy per record). Ids are not interned.
    return {_KEYS.get(k, k): _shared(v) if k in _SHARED_VALUES else v for k, v in tags.items()}


# -- addresses ------------------------------------------------------------------------
#
# The real server accepts an address only when ``parse_address`` (its
# ``src/transport/mod.rs``) can route it, and that parser reads the string with
# the ``url`` crate, i.e. as a WHATWG URL. So the rules below are that
# standard's, for the five schemes the real server routes:
#
# - ``http``/``https`` (WHATWG "special" schemes): a non-empty, valid host;
# - ``poll://{cast}@{group}[/{id}]``: the username is exactly ``uni`` or
#   ``any`` (case-sensitive), the group is the URL's host, kept as written (a
#   non-special scheme's host is opaque: never lowercased), the id is the path
#   after its first ``/`` when that path is longer than ``/``;
# - ``gcps://{project}/{topic}``: a host (may be empty) and a non-empty topic;
# - ``bash:`` anything.
#
# The scheme itself is case-insensitive (``POLL://any@g`` is a poll address).
# Validation (``promise.create``, ``task.create``, ``task.fence``,
# ``promise.register_listener``) and delivery (:mod:`.router`) both read
# addresses through :func:`parse_address`, so what is accepted is what is routed.


class Address(NamedTuple):
    """A routable address: its scheme and, for ``poll``/``gcps``, where it leads."""

    scheme: str
    #: ``poll``: ``uni`` or ``any``.
    cast: str | None = None
    #: ``poll``: the group; ``gcps``: the project.
    group: str | None = None
    #: ``poll``: the stream id, if any; ``gcps``: the topic.
    id: str | None = None


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
#: WHATWG "forbidden host code points" (an opaque host may not hold them).
_FORBIDDEN_HOST = frozenset("\x00\t\n\r #/:<>?@[\\]^|")
#: WHATWG "forbidden domain code points" (a special scheme's host may not hold them).
_FORBIDDEN_DOMAIN = _FORBIDDEN_HOST | frozenset(chr(c) for c in range(0x20)) | frozenset("%\x7f")
#: Bytes the URL parser percent-encodes in a path segment (C0 controls, non-ASCII and these).
_PATH_ENCODE = frozenset(' "#<>?`{}')


def _pct(text: str, extra: frozenset[str] = frozenset()) -> str:
    """``text`` percent-encoded as the URL parser stores it (C0 controls, non-ASCII, ``extra``)."""
    if text.isascii() and not any(c < " " or c == "\x7f" or c in extra for c in text):
        return text
    out = []
    for c in text:
        if c < " " or c > "~" or c in extra:
            out.extend(f"%{b:02X}" for b in c.encode())
        else:
            out.append(c)
    return "".join(out)


def _ipv6(text: str) -> str | None:
    """``[addr]`` as the URL parser serialises it, or ``None`` if it is not an IPv6 address."""
    if not text.endswith("]"):
        return None
    try:
        return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
    except ValueError:
        return None


def _ipv4_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits:
        return 0
    try:
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def _valid_ipv4(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4 or "" in parts:
        return False
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return False
    *head, last = numbers
    return all(n <= 255 for n in head) and last < 256 ** (5 - len(numbers))  # type: ignore[operator]


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    return (last.isascii() and last.isdigit()) or bool(re.fullmatch(r"0[xX][0-9A-Fa-f]*", last))


def _special_host(text: str) -> str | None:
    """A ``http(s)`` host as the URL parser accepts it (lowercased), else ``None``."""
    if text.startswith("["):
        return _ipv6(text)
    try:
        domain = unquote(text, errors="strict")
        ascii_domain = domain.lower() if domain.isascii() else domain.encode("idna").decode().lower()
    except UnicodeError:
        return None
    if not ascii_domain or any(c in _FORBIDDEN_DOMAIN for c in ascii_domain):
        return None
    if _ends_in_number(ascii_domain) and not _valid_ipv4(ascii_domain):
        return None
    return ascii_domain


def _opaque_host(text: str) -> str | None:
    """A non-special scheme's host, kept as written (percent-encoded), else ``None``."""
    if text.startswith("["):
        return _ipv6(text)
    if any(c in _FORBIDDEN_HOST for c in text):
        return None
    return _pct(text)


def _path(raw: str) -> str:
    """A path after the host, dot segments resolved and percent-encoded, as the URL parser keeps it."""
    if not raw:
        return ""
    out: list[str] = []
    segments = raw[1:].split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        low = segment.lower()
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif low in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(_pct(segment, _PATH_ENCODE))
    return "/" + "/".join(out)


def _authority(rest: str, special: bool) -> tuple[str, str | None, str] | None:
    """``(username, host, path)`` of what follows ``scheme://``; ``None`` if it does not parse."""
    ends = "/\\?#" if special else "/?#"
    cut = next((i for i, c in enumerate(rest) if c in ends), len(rest))
    authority, after = rest[:cut], rest[cut:]
    userinfo, at, hostport = authority.rpartition("@")
    if at and not hostport:
        return None  # credentials but no host
    username = _pct(userinfo.split(":", 1)[0], frozenset(' "#<>?`{}/:;=@[\\]^|')) if at else ""
    if hostport.startswith("["):
        close = hostport.find("]")
        host_text, port = (hostport[: close + 1], hostport[close + 1 :]) if close >= 0 else (hostport, "")
        if port and not port.startswith(":"):
            return None
        port = port[1:]
    else:
        host_text, colon, port = hostport.partition(":")
        if colon and not host_text:
            return None  # a port but no host
    if port and (not port.isascii() or not port.isdigit() or int(port) > 65535):
        return None
    if special:
        host = _special_host(host_text)
        if host is None:
            return None
    else:
        host = _opaque_host(host_text)
        if host is None:
            return None
    path = after.split("?", 1)[0].split("#", 1)[0]
    if special:
        path = path.replace("\\", "/")
    return username, host, _path(path)


@functools.lru_cache(maxsize=4096)
def parse_address(value: str) -> Address | None:
    """``value`` as the real server's ``parse_address`` reads it; ``None`` when it cannot be routed.

    Pure and cached: targets repeat (one per worker group), and delivery parses
    every message's address.
    """
    text = value.strip(_C0_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    scheme_match = _SCHEME.match(text)
    if scheme_match is None or text[scheme_match.end() : scheme_match.end() + 1] != ":":
        return None
    scheme = scheme_match.group().lower()
    rest = text[scheme_match.end() + 1 :]
    if scheme == "bash":
        return Address("bash")
    if scheme in ("http", "https"):
        parsed = _authority(rest.lstrip("/\\"), special=True)
        return None if parsed is None else Address(scheme)
    if scheme not in ("poll", "gcps") or not rest.startswith("//"):
        return None  # an unrouted scheme, or no authority (so no host)
    parsed = _authority(rest[2:], special=False)
    if parsed is None:
        return None
    username, host, path = parsed
    tail = path[1:] if len(path) > 1 else None
    if scheme == "poll":
        if username not in ("uni", "any") or host is None:
            return None
        return Address("poll", username, host, tail)
    if tail is None:
        return None  # gcps needs /topic
    return Address("gcps", None, host, tail)


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
    if target is not None and parse_address(target) is None:
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
    """Validate ``task.suspend`` actions; return the awaited ids in order, each once.

    Naming a promise twice is not an error: the real server drops the repeats
    (``server.rs`` ``op_task_suspend``) and registers one callback.
    """
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
    return list(dict.fromkeys(awaited_ids))


def heartbeat(data: dict[str, Any]) -> tuple[str, list[tuple[str, int]]]:
    """Validate ``TaskHeartbeatData``: ``(pid, [(id, version)])``.

    A task reference has no rule of its own (any string id, any i64 version):
    one that names no lease held by ``pid`` renews nothing.
    """
    pid = string(data, "pid")
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        raise bad("Invalid request: missing or invalid field `tasks`")
    refs: list[tuple[str, int]] = []
    for ref in tasks:
        if not isinstance(ref, dict):
            raise bad("Invalid request: each task must be an object")
        version = ref.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not -I64_MAX - 1 <= version <= I64_MAX:
            raise bad("Invalid request: missing or invalid field `version`")
        refs.append((string(ref, "id"), version))
    errors = [
        message
        for failed, message in ((not pid, "Process ID is required"), (not tasks, "Tasks array must not be empty"))
        if failed
    ]
    if errors:
        raise bad("; ".join(errors))
    if len({origin(id) for id, _ in refs}) > 1:
        raise bad("All tasks must belong to the same origin")
    return pid, refs


PROMISE_STATES = ("pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout")


def promise_state(data: dict[str, Any]) -> str | None:
    """The optional ``state`` of a ``promise.search``: one of :data:`PROMISE_STATES` (serde's enum)."""
    state = data.get("state")
    if state is None:
        return None
    if state not in PROMISE_STATES:
        raise bad(f"Invalid request: unknown variant `{state}`, expected one of {', '.join(PROMISE_STATES)}")
    return PROMISE_STATES[PROMISE_STATES.index(state)]


def search(data: dict[str, Any], *, default_limit: int) -> tuple[dict[str, str], int, str | None]:
    """``(tags, limit, cursor)`` of a ``*.search`` (``PromiseSearchData``, ``ScheduleSearchData``).

    ``limit`` is 1..1000 (``#[validate(range(min = 1))]``, then the handler's
    own check of the upper bound), ``default_limit`` when absent; ``cursor`` is
    the last id of the previous page.
    """
    tags = tags_of(data)
    limit = data.get("limit")
    if limit is None:
        limit = default_limit
    elif not isinstance(limit, int) or isinstance(limit, bool) or limit > I64_MAX:
        raise bad("Invalid request: invalid type for field `limit`, expected i64")
    elif limit < 1:
        raise bad("Limit must be a positive integer")
    elif limit > 1000:
        raise bad("Invalid 'limit' — must be between 1 and 1000")
    cursor = data.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise bad("Invalid request: invalid type for field `cursor`, expected a string")
    return tags, limit, cursor


def schedule_create(data: dict[str, Any]) -> tuple[str, str, str, int, dict[str, Any], dict[str, str]]:
    """Validate ``ScheduleCreateData``: ``(id, cron, promiseId, promiseTimeout, promiseParam, promiseTags)``.

    Field rules first, all of them reported together; the schema rules
    (``validate_schedule_create_data``) only when the fields pass, as the
    ``validator`` crate does. The cron expression itself is checked after
    (``is_valid_cron`` in the handler, see :mod:`.cron`).
    """
    id, expression, promise_id = string(data, "id"), string(data, "cron"), string(data, "promiseId")
    timeout = data.get("promiseTimeout")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not -I64_MAX - 1 <= timeout <= I64_MAX:
        raise bad("Invalid request: missing or invalid field `promiseTimeout`")
    param = value_obj(data, "promiseParam")
    tags = tags_of(data, "promiseTags")
    errors = [
        message
        for failed, message in (
            (not id, "Schedule ID is required"),
            (not expression, "Cron expression is required"),
            (not promise_id, "Promise ID template is required"),
            (timeout < 0, "Promise timeout must be a non-negative integer"),
        )
        if failed
    ]
    if not errors:
        # A schedule id becomes the resonate:origin of what it fires, so ':' is reserved.
        if ":" in id:
            errors.append("Schedule ID must not contain ':'")
        elif "resonate:target" not in tags:
            errors.append("promiseTags must include a resonate:target tag")
    if errors:
        raise bad("; ".join(errors))
    return id, expression, promise_id, timeout, param, tags
