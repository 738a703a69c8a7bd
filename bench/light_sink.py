"""A minimal SMTP sink for the bulk sections of ``bench/run.py`` (thousands of waiting requests).

    python -m bench.light_sink --port PORT --inbox INBOX

Speaks just enough SMTP for ``smtplib`` without TLS or auth (EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT) and stores each message as
``INBOX/<X-Hitl-Idempotency-Key>.eml``, the name ``devstack.smtpsink`` gives it,
without parsing the message: the dev sink (``python -m devstack.smtpsink``), an
aiosmtpd server that parses every message to log its links, costs about three
times as much CPU per message (3.4 against 0.9 ms over one session), and on a
2-core machine that would slow the creation of 10,000 waiting requests for
nothing the benchmark measures. Its arguments and first stdout line (``SMTP sink
listening on 127.0.0.1:PORT``) are the dev sink's, so ``devstack.stack.SmtpSinkProc`` runs either.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import uuid
from pathlib import Path

_KEY = re.compile(rb"^X-Hitl-Idempotency-Key:[ \t]*([A-Za-z0-9._-]+)", re.MULTILINE | re.IGNORECASE)


class Sink(asyncio.Protocol):
    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self.buf = b""
        self.data: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.t.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        self.buf += chunk
        while True:
            if self.data is not None:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    if len(self.buf) > 5:  # keep a possible partial terminator
                        self.data.append(self.buf[:-5])
                        self.buf = self.buf[-5:]
                    return
                self.data.append(self.buf[: end + 2])
                self.buf = self.buf[end + 5 :]
                self._store(b"".join(self.data))
                self.data = None
                self.t.write(b"250 OK\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line, self.buf = self.buf[:end], self.buf[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.t.write(b"250-bench-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n")
            elif verb == b"DATA":
                self.data = []
                self.t.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self.t.write(b"221 Bye\r\n")
                self.t.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.t.write(b"250 OK\r\n")

    def _store(self, raw: bytes) -> None:
        head = raw.split(b"\r\n\r\n", 1)[0]
        m = _KEY.search(head)
        name = m[1].decode() if m else uuid.uuid4().hex
        tmp = self.inbox / f".{name}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, self.inbox / f"{name}.eml")


async def serve(port: int, inbox: Path) -> None:
    """Store what arrives on ``port`` in ``inbox`` (which exists) until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Sink(inbox), "127.0.0.1", port)
    print(f"SMTP sink listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A minimal SMTP sink for the benchmark.")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--inbox", type=Path, required=True)
    args = parser.parse_args()
    args.inbox.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.port, args.inbox))
