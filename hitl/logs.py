"""Structured logging for Cloud Logging: one JSON object per line on a stream.

The lines are what ``google-cloud-logging``'s ``StructuredLogHandler`` writes
(``message``, ``severity``, ``logging.googleapis.com/labels``, ``.../trace``,
``.../spanId``, ``.../trace_sampled``, ``.../sourceLocation``, ``httpRequest``,
and the record's fields beside them), written two ways:

- the worker (``library=True``) logs through that handler itself: a
  long-running container, where the library's import time does not matter;
- the functions use :class:`_JsonFormatter`, which writes the same line without
  importing ``google.cloud.logging_v2.handlers`` (0.5-1.1 s of every cold start:
  it pulls in gRPC and the API client) against ~15 ms for this module.
  ``tests/unit/test_logs.py`` holds the two to the same output, field by field.

Usage::

    logs.setup("unblock", settings.log_format, secrets=logs.secrets_from_env(os.environ))
    with logs.bind(trace=logs.trace_from_header(header, project), promise_id=pid):
        log.info("decided", extra={"fields": {"decision": "approved"}})

A filter on the handler redacts link tokens and the given secrets from every
message, traceback and field (a safety net, not a licence to log them), then
hands the bound context and the fields to the formatter as the library reads
them (``json_fields``, ``trace``).
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
_SPAN = "logging.googleapis.com/spanId"
_SAMPLED = "logging.googleapis.com/trace_sampled"
_SOURCE = "logging.googleapis.com/sourceLocation"
#: Keys Cloud Logging reads as the entry's own: a field of that name is dropped, as the library does.
_RESERVED = frozenset(
    {
        "message", "severity", "httpRequest", "time", "timestamp", "timestampSeconds", "timestampNanos",
        "logging.googleapis.com/insertId", _LABELS, "logging.googleapis.com/operation", _SOURCE, _SPAN, _TRACE,
        _SAMPLED,
    }
)  # fmt: skip
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
    library: bool = False,
) -> None:
    """Send all logging to ``stream`` (default: stderr) as ``fmt``, labelled with ``component``.

    ``library``: JSON lines through ``google-cloud-logging``'s ``StructuredLogHandler``
    (the worker) instead of this module's formatter (the functions); the same lines.
    Idempotent: a second call replaces the handler installed by the first
    and leaves any other handler of the root logger alone.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}")
    out = stream if stream is not None else sys.stderr
    handler = _library_handler(component, out) if library and fmt == "json" else _Handler(out)
    handler.filters.insert(0, _Redact(secrets))  # before the library's own filter, which reads what it sets
    if not library or fmt != "json":
        handler.setFormatter(_JsonFormatter(component) if fmt == "json" else _TextFormatter(component))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)


def _library_handler(component: str, stream: IO[str]) -> logging.Handler:
    import google.cloud.logging_v2
    from google.cloud.logging_v2.handlers import StructuredLogHandler

    # The library's first line would be a diagnostic entry about itself (its version), in
    # every worker's log at every start: nothing an operator acts on.
    google.cloud.logging_v2._instrumentation_emitted = True  # noqa: SLF001 - the library's own switch
    handler: logging.Handler = StructuredLogHandler(labels={"component": component}, stream=stream)  # type: ignore[no-untyped-call]
    return handler


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
    """The handler :func:`setup` installs for the functions (and for text)."""


#: Marks the handler :func:`setup` installed, so a second call replaces it.
_OURS = "_hitl_handler"


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
        given = getattr(record, "fields", None)
        fields: dict[str, Any] = self._value(given) if isinstance(given, Mapping) else {}
        record.fields = fields
        context = {k: self.redact(v) for k, v in _bound.get(_NOTHING_BOUND).items()}
        record.hitl_context = context
        # As google-cloud-logging reads them: the trace apart, every other field beside the message.
        record.trace = context.get("trace")
        json_fields = {k: v for k, v in context.items() if k != "trace"}
        json_fields.update((k, v) for k, v in fields.items() if k not in json_fields and k not in _RESERVED)
        record.json_fields = json_fields
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
    """The line ``StructuredLogHandler`` writes for the record, without importing it."""

    def format(self, record: logging.LogRecord) -> str:
        fields: Mapping[str, Any] = getattr(record, "json_fields", {})
        entry: dict[str, Any] = {
            **{k: v for k, v in fields.items() if k not in _RESERVED},
            "message": record.getMessage() + self.tail(record),
            "severity": record.levelname,
            _LABELS: {"python_logger": record.name, "component": self.component},
            _TRACE: getattr(record, "trace", None) or "",
            _SPAN: "",
            _SAMPLED: False,
            _SOURCE: {"line": record.lineno, "file": record.pathname, "function": record.funcName},
            "httpRequest": {},
        }
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


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
