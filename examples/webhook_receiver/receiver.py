"""Receive hitl's ``approval.decided`` events: verify the signature, act once per event.

    HITL_NOTIFY_WEBHOOK_SECRET=... .venv/bin/python -m examples.webhook_receiver.receiver --port 9000

Point a request's ``on_decision`` at it (``{"type": "webhook", "url": "http://host:9000/hitl"}``;
the host must be in the worker's ``HITL_WEBHOOK_ALLOWED_HOSTS``). Each event:

1. is checked against ``X-Hitl-Signature`` (``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
   with the shared secret, at most 5 minutes old): anything else is answered 401 and
   never acted on;
2. is acted on once: hitl retries on a 5xx, a timeout or a dropped connection, always with
   the same ``X-Hitl-Idempotency-Key``, so a key seen before is answered 200 and skipped.
   The keys seen are kept in a file (``--seen``), so a restart of the receiver keeps them.

What it does with a decision is :func:`act` (here: one JSON line on stdout). Answer 2xx
only once the event is safely handled; a 4xx tells hitl never to try again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hitl.security import signatures

MAX_BODY = 1 << 20


class Seen:
    """The idempotency keys already handled, durable in a file (one key a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys = set(path.read_text().split()) if path.exists() else set()
        self.lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Record ``key``; ``False`` if it was already there."""
        with self.lock:
            if key in self.keys:
                return False
            with self.path.open("a") as f:
                f.write(key + "\n")
            self.keys.add(key)
            return True


def act(event: dict[str, Any]) -> None:
    """Whatever the receiver exists for: here, one line per decision."""
    result = event["result"]
    print(json.dumps({"workflow_id": event["workflow_id"], "decision": result["decision"], "by": result["by"]}),
          flush=True)  # fmt: skip


def handler(secret: bytes, seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.answer(413)
            body = self.rfile.read(length)
            try:
                signatures.verify(secret, body, self.headers.get(signatures.HEADER), now=time.time())
            except signatures.SignatureError:
                return self.answer(401)
            key = self.headers.get("X-Hitl-Idempotency-Key", "")
            event = json.loads(body)
            if not key or event.get("type") != "approval.decided":
                return self.answer(400)
            if seen.first_time(key):
                act(event)
            return self.answer(200)

        def answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--seen", type=Path, default=Path("seen-keys.txt"), help="the keys handled so far")
    args = p.parse_args(argv)
    secret = os.environ.get("HITL_NOTIFY_WEBHOOK_SECRET", "").encode()
    if not secret:
        sys.exit("receiver: HITL_NOTIFY_WEBHOOK_SECRET is required (the secret the worker signs with)")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(secret, Seen(args.seen)))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
