"""Structured logging for Cloud Logging: one JSON object per line on a stream.

The lines follow Cloud Logging's structured-logging fields (``severity``,
``message``, ``time``, ``logging.googleapis.com/labels``, ``.../trace``,
``.../sourceLocation``), the format ``google-cloud-logging``'s
``StructuredLogHandler`` writes. That handler is not used: importing
``google.cloud.logging_v2.handlers`` takes 0.7-1.1 s (``python -X importtime``,
it pulls in gRPC and the API client) against ~15 ms for this module, and
every cold start of a function pays for it.

Usage::

    logs.setup("unblock", settings.log_format, secrets=logs.secrets_from_env(os.environ))
    with logs.bind(trace=logs.trace_from_header(header, project), promise_id=pid):
        log.info("decided", extra={"fields": {"decision": "approved"}})

A filter on the handler redacts link tokens and the given secrets from every
message, traceback and field: a safety net, not a licence to log them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any
from urllib.parse import quote

from hitl.security.tokens import TOKEN_RE
from hitl.settings import SECRET_VARS, LogFormat

__all__ = ["REDACTED", "bind", "secrets_from_env", "setup", "trace_from_header"]

REDACTED = "[REDACTED]"
#: Shorter secrets are not searched for: they would mask ordinary words.
MIN_SECRET_CHARS = 4

_LABELS = "logging.googleapis.com/labels"
_TRACE = "logging.googleapis.com/trace"
_SOURCE = "logging.googleapis.com/sourceLocation"
_SEVERITIES = ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG"))
_TOKEN_PARAM = re.compile(r"(token=)[^\s&#;,\"'<>]+", re.IGNORECASE)
_TRACE_HEADER = re.compile(r"([0-9a-fA-F]{32})(?:[/;]|$)")

_NOTHING_BOUND: Mapping[str, str] = MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("hitl_log_context")


def setup(
    component: str,
    fmt: LogFormat = "json",
    stream: IO[str] | None = None,
    *,
    secrets: Iterable[str | bytes | None] = (),
    level: int | str = logging.INFO,
) -> None:
    """Send all logging to ``stream`` (default: stderr) as ``fmt``, labelled with ``component``.

    Idempotent: a second call replaces the handler installed by the first
    and leaves any other handler of the root logger alone.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}")
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.addFilter(_Redact(secrets))
    handler.setFormatter(_JsonFormatter(component) if fmt == "json" else _TextFormatter(component))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def bind(*, trace: str | None = None, workflow_id: str | None = None, promise_id: str | None = None) -> Iterator[None]:
    """Attach fields to the records logged in this context (task or thread).

    Nests: ``None`` keeps the value bound by an outer :func:`bind`.
    """
    given = {"trace": trace, "workflow_id": workflow_id, "promise_id": promise_id}
    reset = _bound.set({**_bound.get(_NOTHING_BOUND), **{k: v for k, v in given.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(reset)


def trace_from_header(value: str | None, project: str | None) -> str | None:
    """The trace of an ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`` header.

    ``projects/{project}/traces/{TRACE_ID}`` (what Cloud Logging correlates),
    the bare id when ``project`` is not known, ``None`` when absent or malformed.
    """
    m = _TRACE_HEADER.match(value.strip()) if value else None
    if m is None or int(m[1], 16) == 0:
        return None
    trace_id = m[1].lower()
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """The values of the :data:`~hitl.settings.SECRET_VARS` set in ``env``."""
    return [env[var] for var in sorted(SECRET_VARS) if env.get(var)]


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup` installs (and replaces)."""


class _Redact(logging.Filter):
    """Masks tokens and secrets, and snapshots the bound context onto the record.

    Runs in the thread that logs, before any formatting; the record is changed
    in place, so handlers after this one get the redacted record too.
    """

    def __init__(self, secrets: Iterable[str | bytes | None]) -> None:
        super().__init__()
        found: set[str] = set()
        for secret in secrets:
            if isinstance(secret, bytes):
                secret = secret.decode("utf-8", "replace")
            if secret and len(secret) >= MIN_SECRET_CHARS:
                found.update((secret, quote(secret, safe="")))
        self._secrets = sorted(found, key=len, reverse=True)

    def redact(self, text: str) -> str:
        text = _TOKEN_PARAM.sub(r"\1" + REDACTED, text)
        text = TOKEN_RE.sub(REDACTED, text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        fields = getattr(record, "fields", None)
        record.fields = self._value(fields) if isinstance(fields, Mapping) else {}
        record.hitl_context = {k: self.redact(v) for k, v in _bound.get(_NOTHING_BOUND).items()}
        return True

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {str(k): self._value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        return value


class _Formatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def tail(self, record: logging.LogRecord) -> str:
        """The traceback and stack of ``record``, each on lines of its own."""
        if record.exc_info and not record.exc_text:  # a handler without our filter
            record.exc_text = self.formatException(record.exc_info)
        parts = [record.exc_text, record.stack_info and self.formatStack(record.stack_info)]
        return "".join(f"\n{part}" for part in parts if part)


class _JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context: Mapping[str, str] = getattr(record, "hitl_context", {})
        entry: dict[str, Any] = {
            "severity": _severity(record.levelno),
            "message": record.getMessage() + self.tail(record),
            "time": _time(record.created),
            "logger": record.name,
            _LABELS: {"component": self.component},
            _SOURCE: {"file": record.pathname, "line": record.lineno, "function": record.funcName},
        }
        if "trace" in context:
            entry[_TRACE] = context["trace"]
        entry.update((k, v) for k, v in context.items() if k != "trace")
        for key, value in getattr(record, "fields", {}).items():
            entry.setdefault(key, value)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context: Mapping[str, str] = getattr(record, "hitl_context", {})
        pairs = {**context, **getattr(record, "fields", {})}
        suffix = "".join(f" {k}={v}" for k, v in pairs.items())
        return (
            f"{_time(record.created)} {record.levelname:<8} {self.component} "
            f"{record.name}: {record.getMessage()}{suffix}{self.tail(record)}"
        )


def _severity(levelno: int) -> str:
    return next((name for floor, name in _SEVERITIES if levelno >= floor), "DEFAULT")


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
