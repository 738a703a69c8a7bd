"""Local development SMTP sink: accepts every message and stores it as a file.

Run ``python -m devstack.smtpsink --port PORT --inbox DIR [--host 127.0.0.1]``.
The first stdout line is ``SMTP sink listening on HOST:PORT`` (with the real
port when ``--port 0`` asked for a free one); then one line per message with
its recipients, subject and approval links (local development links, printed
in full on purpose). SIGTERM or SIGINT stops it cleanly.

Each message is stored atomically as ``DIR/<name>.eml``, the name derived from
its ``X-Hitl-Idempotency-Key`` (else its ``Message-ID``, else a random id), so
a duplicate send after a crash-retry is stored once. No authentication is
required; any credentials are accepted, as is any recipient.

On receipt the sink parses each message with the ``compat32`` policy, which
keeps headers as text, and decodes only the three headers and the one part it
prints, each as ``email.policy.default`` would: a parse with that policy
builds an object for every header and cost about 4 ms per message, as much
CPU as the local server spends on a whole approval.

Library API for tests: :func:`start`, :func:`read_inbox`, :func:`links_in`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from email import policy
from email.contentmanager import raw_data_manager
from email.headerregistry import BaseHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TextIO, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from hitl.notify.email import IDEMPOTENCY_HEADER, header_class

__all__ = ["Inbox", "links_in", "main", "read_inbox", "start", "stored_name"]

#: First stdout line of the CLI; tools parse the port out of it.
LISTENING = "SMTP sink listening on {host}:{port}"

#: The ``Approve: <url>`` / ``Reject: <url>`` lines of the plain-text template.
_LINK_LINE = re.compile(r"^(Approve|Reject):[ \t]*(\S+)[ \t\r]*$", re.MULTILINE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 100


def links_in(message: Message) -> dict[str, str]:
    """The approval links of an approval email: ``{"approve": url, "reject": url}``.

    Read from the plain-text part; a link that is missing is absent from the result.
    """
    body = _plain_part(message)
    if body is None:
        return {}
    links: dict[str, str] = {}
    for label, url in _LINK_LINE.findall(raw_data_manager.get_content(body)):
        links.setdefault(label.lower(), url)
    return links


def read_inbox(directory: str | os.PathLike[str]) -> list[EmailMessage]:
    """Every message stored in ``directory``, oldest arrival first."""
    paths = sorted(Path(directory).glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(p.read_bytes()) for p in paths]


def stored_name(message: Message) -> str:
    """The file name (without ``.eml``) a message is stored under."""
    key = _header(message, IDEMPOTENCY_HEADER).strip()
    if not key:
        key = _header(message, "Message-ID").strip().strip("<>").strip()
    if not key:
        return uuid.uuid4().hex
    safe = _UNSAFE.sub("_", key)[:_MAX_NAME].lstrip(".")
    if safe != key:
        # Keep distinct keys distinct after the substitution or truncation.
        safe = f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return safe


def _header(message: Message, name: str) -> str:
    """The first ``name`` header as ``email.policy.default`` reads it (unfolded, decoded), else ``""``.

    The same for a message parsed with any policy, so the sink can parse with the cheap one.
    """
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            if isinstance(value, BaseHeader):  # set in code on an EmailMessage: already parsed
                return str(value)
            # What policy.default's header_fetch_parse does, without its per-call class lookup.
            return str(header_class(key)(key, value.replace("\r", "").replace("\n", "")))
    return ""


def _plain_part(part: Message) -> Message | None:
    """The part ``EmailMessage.get_body(("plain",))`` picks, for a message parsed with any policy.

    Depth first, the first ``text/plain`` that is not an attachment; of a
    ``multipart/related``, only its start part.
    """
    if part.get_content_disposition() == "attachment":
        return None
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "text":
        return part if subtype == "plain" else None
    if maintype != "multipart" or not part.is_multipart():
        return None
    subparts = cast(list[Message], part.get_payload())
    if subtype == "related":
        start = part.get_param("start")
        chosen = [p for p in subparts if start and _header(p, "Content-ID") == start][:1] or subparts[:1]
        return _plain_part(chosen[0]) if chosen else None
    for sub in subparts:
        found = _plain_part(sub)
        if found is not None:
            return found
    return None


class Inbox:
    """aiosmtpd handler storing each message in a directory, once per key.

    ``clock`` (nanoseconds) stamps each file's mtime, strictly increasing, so
    :func:`read_inbox` returns messages in arrival order.
    """

    def __init__(
        self,
        directory: Path,
        out: TextIO,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.directory = directory
        self._out = out
        self._clock = clock
        self._last_ns = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook
        raw = envelope.original_content or b""
        message = BytesParser(policy=policy.compat32).parsebytes(raw)
        recipients = ",".join(str(r) for r in envelope.rcpt_tos)
        name = stored_name(message)
        # Synchronous from the check to the rename: no other delivery interleaves.
        path = self.directory / f"{name}.eml"
        if path.exists():
            self._emit(f"duplicate ignored: {name} to={recipients}")
            return "250 OK (duplicate ignored)"
        self._store(path, raw)
        line = f"mail to={recipients} subject={json.dumps(_header(message, 'Subject'))}"
        for label, url in links_in(message).items():
            line += f" {label}={url}"
        self._emit(line)
        return "250 OK"

    def _store(self, path: Path, raw: bytes) -> None:
        stamp = max(self._clock(), self._last_ns + 1)
        self._last_ns = stamp
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.utime(tmp, ns=(stamp, stamp))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _emit(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(line, file=self._out, flush=True)


def _accept_any(*_args: Any) -> AuthResult:
    return AuthResult(success=True)


async def start(
    inbox: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    out: TextIO | None = None,
) -> asyncio.Server:
    """Start the sink on the running loop; ``port=0`` picks a free port.

    The bound address is ``server.sockets[0].getsockname()``. Stop it with
    ``server.close()``.
    """
    directory = Path(inbox)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    handler = Inbox(directory, sys.stdout if out is None else out)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            hostname="hitl-smtpsink",  # no reverse-DNS lookup at every connection
            enable_SMTPUTF8=True,
            authenticator=_accept_any,
            auth_require_tls=False,
        )

    return await asyncio.get_running_loop().create_server(protocol, host, port)


async def _serve(host: str, port: int, inbox: str) -> int:
    server = await start(inbox, host=host, port=port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(LISTENING.format(host=shown, port=bound_port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    # Python 3.12 waits for open connections here; do not hang on an idle client.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), timeout=2.0)
    print("SMTP sink stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.smtpsink", description="Local development SMTP sink.")
    parser.add_argument("--port", type=int, required=True, help="TCP port, 0 for a free one")
    parser.add_argument("--inbox", required=True, help="directory to store .eml files in")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_serve(args.host, args.port, args.inbox))
    except OSError as exc:
        print(f"smtpsink: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
