"""Approval emails: compose the message, deliver it through an SMTP relay.

:func:`compose` is pure (no I/O, no clock unless none is passed), so a retried
workflow step rebuilds the same message; :func:`message_id_for` gives that
message a stable ``Message-ID`` and ``X-Hitl-Idempotency-Key`` so a relay or
the development sink can drop a duplicate sent after a crash-retry.

Every approval email has one shape (headers, then a ``multipart/alternative``
of a plain-text and an HTML part), so :func:`compose` writes its bytes
directly rather than building an ``EmailMessage``: that object re-parses
every header it is given, and again to flatten it, about 5 ms per message,
the largest single cost of a worker's cycle. The headers that need care
(addresses, the subject: folding, RFC 2047, SMTPUTF8) are still folded by
``email.policy``; the parts are quoted-printable, so the body is 7-bit and
never holds a boundary (which contains ``==``).

:func:`send` tries exactly once and raises :class:`EmailError` on any failure:
the durable step that calls it owns retries and backoff. It reuses an open
session with the relay when one is idle (:mod:`hitl.notify.smtp_sessions`).

The links carry signing tokens and the settings carry the SMTP password:
neither is ever logged nor put into an exception message.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import hashlib
import json
import logging
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import cast
from urllib.parse import urlsplit

import jinja2

from hitl.notify import smtp_sessions
from hitl.settings import SmtpSettings

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SESSIONS",
    "Email",
    "EmailError",
    "compose",
    "header_class",
    "message_id_for",
    "send",
]

log = logging.getLogger(__name__)

#: Header carrying the idempotency key; equal keys mean "the same message".
IDEMPOTENCY_HEADER = "X-Hitl-Idempotency-Key"

#: Sessions kept open between messages by default (see :mod:`hitl.notify.smtp_sessions`).
SESSIONS = smtp_sessions.Sessions()

#: One boundary for every message: it holds "==", which quoted-printable parts never do
#: (RFC 2046 asks only that it not occur in the parts), and a parser compiles one pattern.
_BOUNDARY = b"===============hitl-alternative=="
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Deeper parts of the details are shown as compact JSON rather than nested tables.
_MAX_DEPTH = 8


class EmailError(Exception):
    """Sending an email failed; the cause is chained as ``__cause__``.

    ``permanent`` is a hint: the relay answered with a 5xx code or does not
    support what the settings require, so retrying unchanged is unlikely to help.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def message_id_for(promise_id: str, approver: str, kind: str = "approval") -> str:
    """A deterministic, RFC 5322-safe id for one email about one promise.

    The same arguments always give the same id; use a distinct ``kind`` per
    distinct email (e.g. ``"reminder-1"``) so those are not deduplicated away.
    """
    encoded = json.dumps([kind, promise_id, approver], ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Email:
    """A composed email: its SMTP envelope and the message itself (RFC 5322 bytes, CRLF line ends)."""

    #: Envelope sender: the address of the ``From`` header.
    sender: str
    recipient: str
    #: The ``Message-ID`` header's value, ``<id@hitl>``.
    message_id: str
    data: bytes
    #: An envelope address is not ASCII: the relay must offer SMTPUTF8 (RFC 6531).
    smtputf8: bool = False

    def parse(self) -> EmailMessage:
        """The message as a mail client reads it."""
        return BytesParser(policy=policy.default).parsebytes(self.data)


def compose(
    *,
    sender: str,
    approver: str,
    subject: str,
    details: object,
    approve_url: str,
    reject_url: str,
    deadline_at_iso: str,
    message_id: str,
    reminder: bool = False,
    now: datetime | None = None,
) -> Email:
    """Build the approval email (plain text + HTML alternative) for one approver.

    ``now`` (timezone-aware) sets the ``Date`` header; it defaults to the
    current time. Raises :class:`ValueError` on malformed arguments.
    """
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"message_id must match {_MESSAGE_ID.pattern}, got {message_id!r}")
    for name, url in (("approve_url", approve_url), ("reject_url", reject_url)):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or _CONTROL.search(url):
            raise ValueError(f"{name} must be an absolute http(s) URL")
    deadline = datetime.fromisoformat(deadline_at_iso)
    if deadline.tzinfo is None:
        raise ValueError(f"deadline_at_iso must carry a timezone, got {deadline_at_iso!r}")
    sent_at = datetime.now(UTC) if now is None else now
    if sent_at.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    envelope_from, envelope_to = _address(sender), _address(approver)
    smtputf8 = not (envelope_from + envelope_to).isascii()

    title = _one_line(subject)
    header_subject = f"Approval requested: {title}"
    if reminder:
        header_subject = f"Reminder: {header_subject}"
    context = {
        "title": header_subject,
        "subject": title,
        "approver": approver,
        "approve_url": approve_url,
        "reject_url": reject_url,
        "deadline": deadline.astimezone(UTC).strftime("%A %d %B %Y, %H:%M UTC"),
        "deadline_iso": deadline_at_iso,
        "reminder": reminder,
        "fields": _fields(details),
    }
    env = _templates()
    text = env.get_template("email_approval.txt").render(context)
    html = env.get_template("email_approval.html").render(context)

    head = b"".join(
        (
            _address_line("From", sender, smtputf8),
            _address_line("To", approver, smtputf8),
            _fold("Subject", header_subject, smtputf8),
            f"Date: {format_datetime(sent_at)}\r\n".encode(),
            f"Message-ID: <{message_id}@hitl>\r\n".encode(),
            f"{IDEMPOTENCY_HEADER}: {message_id}\r\n".encode(),
            b"Auto-Submitted: auto-generated\r\n",
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative;\r\n boundary="' + _BOUNDARY + b'"\r\n',
        )
    )
    data = b"".join(
        (
            head,
            b"\r\n--" + _BOUNDARY + b"\r\n",
            _text_part("plain", text),
            b"\r\n--" + _BOUNDARY + b"\r\n",
            _text_part("html", html),
            b"\r\n--" + _BOUNDARY + b"--\r\n",
        )
    )
    return Email(envelope_from, envelope_to, f"<{message_id}@hitl>", data, smtputf8)


def _text_part(subtype: str, text: str) -> bytes:
    """A UTF-8 text part, quoted-printable (line breaks normalised, as ``EmailMessage.set_content`` does)."""
    body = binascii.b2a_qp(b"\n".join(text.encode().splitlines()) + b"\n", istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode()
        + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + body.replace(b"\n", b"\r\n")
    )


def _checked(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} must be a single line")
    return value


def _fold(name: str, value: str, utf8: bool) -> bytes:
    """One header line as ``email.policy`` folds it (RFC 2047 unless ``utf8``), CRLF-terminated."""
    pol = policy.SMTPUTF8 if utf8 else policy.SMTP
    return pol.fold_binary(name, header_class(name)(name, _checked(name, value)))


@functools.lru_cache(maxsize=1024)
def _address_line(name: str, value: str, utf8: bool) -> bytes:
    """:func:`_fold` for address headers, cached: the sender never changes and approvers recur."""
    return _fold(name, value, utf8)


@functools.lru_cache(maxsize=1024)
def _address(value: str) -> str:
    """The first address in an address header's value, as an SMTP envelope address."""
    header = header_class("To")("To", _checked("address", value))
    addresses = cast(AddressHeader, header).addresses
    if not addresses or not addresses[0].addr_spec or addresses[0].addr_spec == "<>":
        raise ValueError(f"not an email address: {value!r}")
    return addresses[0].addr_spec


@functools.cache
def header_class(name: str) -> type[BaseHeader]:
    """``email.policy.default``'s header class for ``name``, once (its registry builds a new class per lookup)."""
    return cast(HeaderRegistry, policy.default.header_factory)[name]


async def send(
    smtp: SmtpSettings,
    message: Email,
    *,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
    sessions: smtp_sessions.Sessions = SESSIONS,
) -> None:
    """Deliver ``message`` through the relay in ``smtp``, once.

    ``timeout`` bounds each network operation. ``ssl_context`` (default: the
    system trust store with hostname checking) verifies the relay for the
    ``"starttls"`` and ``"tls"`` security modes. ``sessions`` keeps the
    session open for the next message.
    """
    await asyncio.to_thread(_deliver, smtp, message, timeout, ssl_context, sessions)
    log.info("email sent", extra={"message_id": message.message_id, "smtp_host": smtp.host})


def _deliver(
    smtp: SmtpSettings,
    message: Email,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    sessions: smtp_sessions.Sessions,
) -> None:
    relay = f"{smtp.host}:{smtp.port}"
    key = (smtp, ssl_context)
    client = sessions.take(key, timeout)
    try:
        if client is None:
            client = _open(smtp, relay, timeout, ssl_context)
        options: tuple[str, ...] = ()
        if message.smtputf8:
            if not client.has_extn("smtputf8"):
                raise EmailError(
                    f"sending via {relay} failed: an address is not ASCII and the server does not offer SMTPUTF8",
                    permanent=True,
                )
            options = ("SMTPUTF8", "BODY=8BITMIME")
        refused = client.sendmail(message.sender, [message.recipient], message.data, mail_options=options)
    except EmailError:
        smtp_sessions.close(client)
        raise
    except (smtplib.SMTPException, OSError) as exc:
        smtp_sessions.close(client)
        raise EmailError(f"sending via {relay} failed: {_describe(exc)}", permanent=_is_permanent(exc)) from exc
    except BaseException:
        smtp_sessions.close(client)
        raise
    sessions.give(key, client)
    if refused:
        raise EmailError(
            f"sending via {relay} failed: recipients refused: {', '.join(refused)}",
            permanent=True,
        )


def _open(smtp: SmtpSettings, relay: str, timeout: float, ssl_context: ssl.SSLContext | None) -> smtplib.SMTP:
    """A new session with the relay: connected, greeted, secured and logged in as ``smtp`` asks."""
    context = ssl_context if ssl_context is not None or smtp.security == "none" else _default_context()
    client: smtplib.SMTP
    if smtp.security == "tls":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    try:
        client.ehlo()
        if smtp.security == "starttls":
            if not client.has_extn("starttls"):
                raise EmailError(
                    f"sending via {relay} failed: the server does not offer STARTTLS",
                    permanent=True,
                )
            client.starttls(context=context)
            client.ehlo()
        if smtp.username is not None and smtp.password is not None:
            client.login(smtp.username, smtp.password)
    except BaseException:
        smtp_sessions.close(client)
        raise
    return client


@functools.cache
def _default_context() -> ssl.SSLContext:
    """The system trust store, loaded once (building a context costs tens of milliseconds)."""
    return ssl.create_default_context()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        return f"{type(exc).__name__}: {exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"{type(exc).__name__}: {', '.join(exc.recipients)}"
    return f"{type(exc).__name__}: {exc}"


def _is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError)


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hitl.notify", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # compiled once per process, not checked against the file at every message
    )


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())


@dataclass(frozen=True, slots=True)
class _Field:
    """One labelled entry of the request details, as both templates render it.

    Exactly one of ``text`` (a scalar, already formatted) and ``children``
    (a nested mapping or list) is set.
    """

    label: str
    text: str | None = None
    children: tuple[_Field, ...] | None = None


def _fields(details: object) -> tuple[_Field, ...]:
    if details is None or (_is_container(details) and not details):
        return ()
    if _is_container(details):
        return _children(details, 0)
    return (_Field("Value", text=_scalar(details)),)


def _is_container(value: object) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
    )


def _children(value: object, depth: int) -> tuple[_Field, ...]:
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        assert isinstance(value, Sequence)
        items = [(str(i), v) for i, v in enumerate(value, start=1)]
    return tuple(_field(label, v, depth) for label, v in items)


def _field(label: str, value: object, depth: int) -> _Field:
    if _is_container(value) and value and depth + 1 < _MAX_DEPTH:
        return _Field(label, children=_children(value, depth + 1))
    return _Field(label, text=_scalar(value))


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float) or _is_container(value):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
