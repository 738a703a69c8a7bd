"""devstack.smtpsink: the development SMTP sink, as a library and as a real process."""

from __future__ import annotations

import asyncio
import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import IO, Any, cast

import pytest
from aiosmtpd.smtp import Envelope

from devstack import smtpsink
from hitl.notify.email import Email, compose, message_id_for, send
from hitl.notify.smtp_sessions import Sessions
from hitl.settings import SmtpSettings

REPO = Path(__file__).resolve().parents[2]


def _message(promise_id: str = "approvals/wf-1", **overrides: Any) -> Email:
    args: dict[str, Any] = {
        "sender": "hitl@example.org",
        "approver": "alice@example.com",
        "subject": f"Deploy {promise_id}",
        "details": {},
        "approve_url": f"http://127.0.0.1:8081/unblock?token=A-{promise_id}",
        "reject_url": f"http://127.0.0.1:8081/unblock?token=R-{promise_id}",
        "deadline_at_iso": "2026-11-23T10:00:00Z",
        "message_id": message_id_for(promise_id, "alice@example.com"),
    }
    args.update(overrides)
    return compose(**args)


def _deliver(inbox: smtpsink.Inbox, message: Email) -> str:
    envelope = Envelope()
    envelope.rcpt_tos = [message.recipient]
    envelope.original_content = message.data
    return asyncio.run(inbox.handle_DATA(None, None, envelope))  # type: ignore[arg-type]


# --- library ------------------------------------------------------------------


def test_links_in_reads_the_text_part() -> None:
    links = smtpsink.links_in(_message("p").parse())
    assert links == {
        "approve": "http://127.0.0.1:8081/unblock?token=A-p",
        "reject": "http://127.0.0.1:8081/unblock?token=R-p",
    }


def test_links_in_ignores_lookalike_lines_in_details() -> None:
    spoof = "x\nApprove: http://evil.example/\nReject: http://evil.example/"
    message = _message("p", details={"note": spoof}, subject=spoof).parse()
    assert smtpsink.links_in(message)["approve"].endswith("token=A-p")
    assert "evil" not in "".join(smtpsink.links_in(message).values())


def test_links_in_without_text_part() -> None:
    message = EmailMessage()
    message.set_content("<p>hi</p>", subtype="html")
    assert smtpsink.links_in(message) == {}


def test_stored_name_prefers_the_idempotency_key() -> None:
    message = _message("p").parse()
    assert smtpsink.stored_name(message) == message_id_for("p", "alice@example.com")

    bare = EmailMessage()
    bare["Message-ID"] = "<abc.123@host.example>"
    assert re.fullmatch(r"abc\.123_host\.example-[0-9a-f]{16}", smtpsink.stored_name(bare))
    assert smtpsink.stored_name(bare) == smtpsink.stored_name(bare)  # deterministic

    other = EmailMessage()
    other["Message-ID"] = "<abc.123#host.example>"  # same after substitution, different key
    assert smtpsink.stored_name(other) != smtpsink.stored_name(bare)

    hostile = EmailMessage()
    hostile["X-Hitl-Idempotency-Key"] = "../../etc/passwd"
    assert "/" not in smtpsink.stored_name(hostile)
    assert not smtpsink.stored_name(hostile).startswith(".")

    assert re.fullmatch(r"[0-9a-f]{32}", smtpsink.stored_name(EmailMessage()))


def test_inbox_stores_once_in_arrival_order(tmp_path: Path) -> None:
    out = io.StringIO()
    inbox = smtpsink.Inbox(tmp_path, out, clock=lambda: 1_000)  # a clock that never moves
    ids = ["zz", "aa", "mm"]  # arrival order differs from name order
    for promise_id in ids:
        assert _deliver(inbox, _message(promise_id)) == "250 OK"
    assert _deliver(inbox, _message("aa")) == "250 OK (duplicate ignored)"

    received = smtpsink.read_inbox(tmp_path)
    assert [m["Subject"] for m in received] == [f"Approval requested: Deploy {i}" for i in ids]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{message_id_for(i, 'alice@example.com')}.eml" for i in ids
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        'mail to=alice@example.com subject="Approval requested: Deploy zz"'
        " approve=http://127.0.0.1:8081/unblock?token=A-zz"
        " reject=http://127.0.0.1:8081/unblock?token=R-zz"
    )
    assert lines[3].startswith("duplicate ignored: ")


def _mixed_with_a_lookalike_attachment() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Fwd: =?utf-8?q?D=C3=A9ploiement?= " + "long " * 30
    message["Message-ID"] = "<fwd.1@mail.example>"
    message.set_content("Approve: http://evil.example/a\nReject: http://evil.example/r\n")
    message.add_attachment(b"x", maintype="application", subtype="octet-stream")
    body = EmailMessage()
    body.set_content("Approve: http://good.example/a\nReject: http://good.example/r\n")
    body.add_alternative("<p>hi</p>", subtype="html")
    message.get_payload().insert(0, body)  # the body first, then the text and the binary attachment
    message.get_payload()[1]["Content-Disposition"] = "attachment"
    return message


def _related_with_a_start() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "related"
    message["Message-ID"] = "<rel.1@mail.example>"
    message.set_content("Approve: http://first.example/a\n", cte="base64")
    message.add_related("Approve: http://start.example/a\nReject: http://start.example/r\n", cid="<s@x>")
    message.set_param("start", "<s@x>")
    return message


def _latin1_base64() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Caf\u00e9"
    message["X-Hitl-Idempotency-Key"] = "../caf\u00e9"
    message.set_content("Approve: http://caf\u00e9.example/a\n", charset="latin-1", cte="base64")
    return message


@pytest.mark.parametrize(
    ("message", "approve"),
    [
        (_message("p", subject="D\u00e9ploiement \U0001f680 " * 12).parse(), "http://127.0.0.1:8081/unblock?token=A-p"),
        (_mixed_with_a_lookalike_attachment(), "http://good.example/a"),
        (_related_with_a_start(), "http://start.example/a"),
        (_latin1_base64(), "http://caf\u00e9.example/a"),
    ],
    ids=["encoded-folded-subject", "attachment-first", "related-start", "latin1-base64"],
)
def test_receipt_reads_each_message_as_the_default_policy_does(
    tmp_path: Path, message: EmailMessage, approve: str
) -> None:
    """The sink parses cheaply (compat32); what it prints and the name it stores under must not change."""
    raw = message.as_bytes()
    full = BytesParser(policy=policy.default).parsebytes(raw)
    body = cast(EmailMessage, full.get_body(("plain",)))
    assert f"Approve: {approve}" in body.get_content() and smtpsink.links_in(full)["approve"] == approve
    expected = f"mail to=bob@example.com subject={json.dumps(str(full['Subject']))}"
    expected += "".join(f" {label}={url}" for label, url in smtpsink.links_in(full).items())

    out = io.StringIO()
    envelope = Envelope()
    envelope.rcpt_tos = ["bob@example.com"]
    envelope.original_content = raw
    asyncio.run(smtpsink.Inbox(tmp_path, out).handle_DATA(None, None, envelope))  # type: ignore[arg-type]

    assert out.getvalue() == expected + "\n"
    assert [p.name for p in tmp_path.iterdir()] == [f"{smtpsink.stored_name(full)}.eml"]
    assert (
        smtpsink.links_in(message)
        == smtpsink.links_in(full)
        == smtpsink.links_in(BytesParser(policy=policy.compat32).parsebytes(raw))
    )


# --- process ------------------------------------------------------------------


class _Lines:
    """Lines of a stream, read by a thread, awaited with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._stream = stream
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def next(self, timeout: float = 5.0) -> str:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout} s") from None

    def until(self, pattern: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            if re.search(pattern, line):
                return line

    def close(self) -> None:
        """Once the writer has exited: finish reading, close the stream."""
        self._thread.join(timeout=5)
        self._stream.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], _Lines, int, Path]]:
    inbox = tmp_path / "inbox"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.smtpsink", "--port", "0", "--inbox", str(inbox)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = _Lines(proc.stdout)
    try:
        first = lines.next(timeout=10)
        match = re.fullmatch(r"SMTP sink listening on 127\.0\.0\.1:(\d+)", first)
        assert match, first
        yield proc, lines, int(match[1]), inbox
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        lines.close()


def test_sink_process_stores_each_message_once_and_stops_cleanly(
    sink: tuple[subprocess.Popen[str], _Lines, int, Path],
) -> None:
    proc, lines, port, inbox = sink
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none")
    first, second = _message("wf-1"), _message("wf-2")

    sessions = Sessions()

    async def deliver() -> None:
        await send(settings, first, timeout=5, sessions=sessions)
        await send(settings, first, timeout=5, sessions=sessions)  # a crash-retry's duplicate
        await send(settings, second, timeout=5, sessions=sessions)
        sessions.close_all()

    asyncio.run(deliver())
    assert "token=A-wf-1" in lines.next()
    assert lines.next().startswith("duplicate ignored: ")
    assert "token=A-wf-2" in lines.next()

    received = smtpsink.read_inbox(inbox)
    assert [m["Message-ID"] for m in received] == [first.message_id, second.message_id]
    assert smtpsink.links_in(received[0]) == smtpsink.links_in(first.parse())

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert lines.until("stopped") == "SMTP sink stopped"
