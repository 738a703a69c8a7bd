"""hitl.notify.email: composing approval emails and sending them over real SMTP."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from support.ports import refused_port

from devstack import smtpsink
from hitl.notify.email import Email, EmailError, compose, message_id_for, send
from hitl.notify.smtp_sessions import Sessions
from hitl.settings import SmtpSettings

NOW = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
APPROVE = "https://unblock.example/unblock?token=APPROVE-TOKEN&x=1"
REJECT = "https://unblock.example/unblock?token=REJECT-TOKEN"


def _email(**overrides: Any) -> Email:
    args: dict[str, Any] = {
        "sender": "hitl@example.org",
        "approver": "alice@example.com",
        "subject": "Deploy v2 to production",
        "details": {"service": "billing", "replicas": 3},
        "approve_url": APPROVE,
        "reject_url": REJECT,
        "deadline_at_iso": "2026-11-23T10:00:00Z",
        "message_id": message_id_for("approvals/wf-1", "alice@example.com"),
        "now": NOW,
    }
    args.update(overrides)
    return compose(**args)


def _compose(**overrides: Any) -> EmailMessage:
    """The composed email as its recipient's mail client reads it."""
    return _email(**overrides).parse()


def _text(message: EmailMessage) -> str:
    """The plain-text part as shown: line ends normalised (they are CRLF on the wire)."""
    return str(cast(EmailMessage, message.get_body(("plain",))).get_content()).replace("\r\n", "\n")


def _html(message: EmailMessage) -> str:
    return str(cast(EmailMessage, message.get_body(("html",))).get_content()).replace("\r\n", "\n")


# --- compose ------------------------------------------------------------------


def test_compose_builds_text_and_html_alternatives_with_headers() -> None:
    message = _compose()
    key = message_id_for("approvals/wf-1", "alice@example.com")

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["From"] == "hitl@example.org"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Approval requested: Deploy v2 to production"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["Message-ID"] == f"<{key}@hitl>"
    assert message["X-Hitl-Idempotency-Key"] == key

    text, html = _text(message), _html(message)
    assert f"Approve: {APPROVE}\n" in text and f"Reject: {REJECT}\n" in text
    assert "Monday 23 November 2026, 10:00 UTC" in text
    assert "confirmation page" in text and "Nothing is decided" in text
    assert "service: billing\nreplicas: 3\n" in text
    assert f'href="{APPROVE.replace("&", "&amp;")}"' in html and f'href="{REJECT}"' in html
    assert ">Approve</a>" in html and ">Reject</a>" in html
    assert 'datetime="2026-11-23T10:00:00Z"' in html
    assert "confirmation page" in html


def test_compose_marks_reminders() -> None:
    message = _compose(reminder=True)
    assert message["Subject"] == "Reminder: Approval requested: Deploy v2 to production"
    assert _text(message).startswith("Reminder:")


def test_compose_escapes_html_and_keeps_headers_single_line() -> None:
    xss = '<script>alert("x")</script>'
    message = _compose(
        subject=f"{xss}\r\nBcc: eve@example.com",
        details={"<img src=x onerror=alert(1)>": xss, "nested": [xss]},
    )
    html = _html(message)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert message["Bcc"] is None
    assert message["Subject"] == f"Approval requested: {xss} Bcc: eve@example.com"
    assert xss in _text(message)  # plain text is shown as-is


def test_compose_renders_nested_details_readably() -> None:
    details = {"change": {"id": 7, "files": ["a.py", "b.py"]}, "note": "line one\nline two"}
    message = _compose(details=details)
    assert (
        "change:\n    id: 7\n    files:\n        1: a.py\n        2: b.py\nnote: line one\n    line two\n"
    ) in _text(message)
    # Each nested mapping/list becomes a table inside a table cell.
    assert _html(message).count("<table cellpadding") == 3


@pytest.mark.parametrize("details", [{}, [], None])
def test_compose_omits_empty_details(details: object) -> None:
    message = _compose(details=details)
    assert "Details" not in _text(message) and "Details" not in _html(message)


def test_compose_shows_scalar_details() -> None:
    assert "Value: ship it\n" in _text(_compose(details="ship it"))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"message_id": "bad id"}, "message_id must match"),
        ({"message_id": "a>b"}, "message_id must match"),
        ({"approve_url": "javascript:alert(1)"}, "approve_url must be an absolute"),
        ({"reject_url": "/relative"}, "reject_url must be an absolute"),
        ({"deadline_at_iso": "2026-11-23T10:00:00"}, "must carry a timezone"),
        ({"deadline_at_iso": "tomorrow"}, "Invalid isoformat"),
        ({"now": dt.datetime(2026, 11, 20)}, "now must be timezone-aware"),
        ({"approver": "alice@example.com\r\nBcc: eve@example.com"}, "single line"),
        ({"sender": "hitl@example.org\nBcc: eve@example.com"}, "single line"),
    ],
)
def test_compose_rejects_malformed_arguments(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        _compose(**overrides)


def test_compose_writes_a_standard_seven_bit_message() -> None:
    long_subject = "Deploy the billing service to every production region " * 5
    email = _email(subject=long_subject)
    lines = email.data.split(b"\r\n")

    email.data.decode("ascii")  # 7-bit: quoted-printable parts, no raw UTF-8
    assert b"\n" not in b"".join(lines) and lines[-1] == b""  # CRLF line ends only, and a final one
    assert max(len(line) for line in lines) <= 78  # RFC 5322's recommended limit, despite long links
    parsed = email.parse()
    assert [m.defects for m in parsed.walk()] == [[], [], []]
    assert parsed["Subject"] == f"Approval requested: {long_subject.strip()}"
    assert [p["Content-Transfer-Encoding"] for p in parsed.iter_parts()] == ["quoted-printable"] * 2
    assert (email.sender, email.recipient, email.smtputf8) == ("hitl@example.org", "alice@example.com", False)
    assert _email(subject=long_subject).data == email.data  # same inputs, same bytes


def test_compose_encodes_a_non_ascii_subject_and_display_name() -> None:
    email = _email(subject="Déploiement 🚀", sender="Équipe Ops <ops@example.org>")
    email.data.decode("ascii")
    parsed = email.parse()
    assert parsed["Subject"] == "Approval requested: Déploiement 🚀"
    assert parsed["From"] == "Équipe Ops <ops@example.org>"
    assert email.sender == "ops@example.org"
    assert "Déploiement 🚀" in _text(parsed) and "Déploiement 🚀" in _html(parsed)


def test_compose_marks_an_international_address_as_needing_smtputf8() -> None:
    email = _email(approver="josé@example.com")
    assert email.smtputf8 and email.recipient == "josé@example.com"
    assert "To: josé@example.com\r\n".encode() in email.data  # RFC 6532: UTF-8 headers, no encoded words
    assert email.parse()["To"] == "josé@example.com"


def test_message_id_is_deterministic_and_distinct() -> None:
    base = message_id_for("p1", "a@example.com")
    assert base == message_id_for("p1", "a@example.com")
    assert re.fullmatch(r"[0-9a-f]{32}", base)
    others = {
        message_id_for("p2", "a@example.com"),
        message_id_for("p1", "b@example.com"),
        message_id_for("p1", "a@example.com", "reminder-1"),
    }
    assert base not in others and len(others) == 3
    # Same inputs, even at another time: same Message-ID.
    later = NOW + dt.timedelta(hours=1)
    assert _compose()["Message-ID"] == _compose(now=later)["Message-ID"]


# --- send -----------------------------------------------------------------------


def _run[T](scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout=10)

    return asyncio.run(bounded())


async def _serve(inbox: Path, *, tls: ssl.SSLContext | None = None, **smtp: Any) -> tuple[asyncio.Server, int]:
    """A real aiosmtpd server storing into ``inbox`` (``tls``: implicit TLS)."""
    handler = smtpsink.Inbox(inbox, io.StringIO())
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="test-smtp", **smtp), "127.0.0.1", 0, ssl=tls
    )
    return server, server.sockets[0].getsockname()[1]


#: Sessions that are never kept, so each test's server closes without waiting for an idle client.
_ONE_SHOT = Sessions(max_idle=0)


def _send(smtp: SmtpSettings, message: Email, **kwargs: Any) -> Awaitable[None]:
    return send(smtp, message, sessions=_ONE_SHOT, **kwargs)


def _settings(port: int, **overrides: Any) -> SmtpSettings:
    plain = SmtpSettings(host="127.0.0.1", port=port, security="none", sender="hitl@example.org")
    return dataclasses.replace(plain, **overrides)


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a fresh self-signed certificate for 127.0.0.1."""
    pytest.importorskip("cryptography")
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hitl test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_file, key_file)
        client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def test_send_delivers_over_plain_smtp(tmp_path: Path) -> None:
    message = _email()

    async def scenario() -> None:
        server, port = await _serve(tmp_path)
        async with server:
            await _send(_settings(port), message)

    _run(scenario)
    [received] = smtpsink.read_inbox(tmp_path)
    assert received["Message-ID"] == message.message_id
    assert received["Subject"] == message.parse()["Subject"]
    assert smtpsink.links_in(received) == {"approve": APPROVE, "reject": REJECT}


class _WatchedSMTP(SMTP):
    """aiosmtpd's SMTP session, with an event set when its connection is lost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.set()


def test_send_reuses_an_open_session_and_replaces_one_the_relay_closed(tmp_path: Path) -> None:
    sessions = Sessions()
    opened: list[_WatchedSMTP] = []
    handler = smtpsink.Inbox(tmp_path, io.StringIO())

    def protocol() -> SMTP:
        opened.append(_WatchedSMTP(handler, hostname="test-smtp", timeout=0.5))  # closes a session idle 0.5 s
        return opened[-1]

    async def scenario() -> None:
        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        async with server:
            settings = _settings(server.sockets[0].getsockname()[1])
            for i in range(3):
                await send(settings, _email(message_id=f"m{i}"), sessions=sessions)
            assert len(opened) == 1
            async with asyncio.timeout(5):  # the relay drops the session once idle 0.5 s
                await opened[0].lost.wait()
            await send(settings, _email(message_id="m3"), sessions=sessions)
            assert len(opened) == 2
            sessions.close_all()

    _run(scenario)
    assert [m["X-Hitl-Idempotency-Key"] for m in smtpsink.read_inbox(tmp_path)] == ["m0", "m1", "m2", "m3"]


def test_send_international_address_only_where_the_relay_offers_smtputf8(tmp_path: Path) -> None:
    message = _email(approver="josé@example.com")

    async def scenario(**smtp: Any) -> None:
        server, port = await _serve(tmp_path, **smtp)
        async with server:
            await _send(_settings(port), message)

    with pytest.raises(EmailError, match="SMTPUTF8") as raised:
        _run(scenario)
    assert raised.value.permanent and smtpsink.read_inbox(tmp_path) == []

    _run(lambda: scenario(enable_SMTPUTF8=True))
    [received] = smtpsink.read_inbox(tmp_path)
    assert received["To"] == "josé@example.com"
    assert smtpsink.links_in(received) == {"approve": APPROVE, "reject": REJECT}


def test_send_refused_connection_raises_email_error() -> None:
    with refused_port() as port, pytest.raises(EmailError) as raised:
        _run(lambda: _send(_settings(port), _email(), timeout=5))
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert not raised.value.permanent
    assert f"127.0.0.1:{port}" in str(raised.value)


def test_send_requires_starttls_when_configured(tmp_path: Path) -> None:
    async def scenario() -> None:
        server, port = await _serve(tmp_path)
        async with server:
            await _send(_settings(port, security="starttls"), _email())

    with pytest.raises(EmailError, match="does not offer STARTTLS") as raised:
        _run(scenario)
    assert raised.value.permanent
    assert smtpsink.read_inbox(tmp_path) == []


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
def test_send_starttls_with_login_and_never_logs_secrets(
    tmp_path: Path,
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_tls, client_tls = tls_contexts
    logins: list[tuple[bytes, bytes, bool]] = []

    def authenticator(*args: Any) -> AuthResult:
        _server, session, _envelope, _mechanism, data = args
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password, session.ssl is not None))
        return AuthResult(success=True)

    async def scenario() -> None:
        server, port = await _serve(
            tmp_path, tls_context=server_tls, require_starttls=True, authenticator=authenticator
        )
        async with server:
            settings = _settings(port, security="starttls", username="relay-user", password="s3cret-pw")
            await _send(settings, _email(), ssl_context=client_tls)

    caplog.set_level(logging.DEBUG, logger="hitl")
    _run(scenario)
    assert logins == [(b"relay-user", b"s3cret-pw", True)]
    assert len(smtpsink.read_inbox(tmp_path)) == 1
    ours = [r for r in caplog.records if r.name.startswith("hitl")]
    assert [r.getMessage() for r in ours] == ["email sent"]
    logged = " ".join(str(vars(r)) for r in ours)
    assert "s3cret-pw" not in logged and "TOKEN" not in logged


def test_send_rejected_login_is_a_permanent_error_without_the_password(
    tmp_path: Path, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_tls, client_tls = tls_contexts

    async def scenario() -> None:
        def refuse(*_: Any) -> AuthResult:
            return AuthResult(success=False, handled=False)

        server, port = await _serve(tmp_path, tls_context=server_tls, authenticator=refuse)
        async with server:
            await _send(
                _settings(port, security="starttls", username="u", password="s3cret-pw"),
                _email(),
                ssl_context=client_tls,
            )

    with pytest.raises(EmailError) as raised:
        _run(scenario)
    assert raised.value.permanent and "535" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)


def test_send_over_implicit_tls(tmp_path: Path, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_tls, client_tls = tls_contexts

    async def scenario() -> None:
        server, port = await _serve(tmp_path, tls=server_tls)
        async with server:
            await _send(_settings(port, security="tls"), _email(), ssl_context=client_tls)

    _run(scenario)
    assert len(smtpsink.read_inbox(tmp_path)) == 1


def test_send_refuses_an_untrusted_certificate(
    tmp_path: Path, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_tls, _ = tls_contexts

    async def scenario() -> None:
        server, port = await _serve(tmp_path, tls=server_tls)
        async with server:
            await _send(_settings(port, security="tls"), _email(), timeout=5)

    with pytest.raises(EmailError) as raised:
        _run(scenario)
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)
    assert smtpsink.read_inbox(tmp_path) == []
