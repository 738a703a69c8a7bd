"""Cloud Run's invoker check and Google's token endpoint, for the local ``start`` function.

In production ``start`` (``start_auth = "iam"``) sits behind Cloud Run, which lets
a request through only with a valid identity token of an invoker. Locally the
function has no such front: :class:`Invoker` is that front (a proxy that forwards
only requests bearing a token :class:`Issuer` minted and has not revoked), and
:class:`Issuer` stands in for Google's OAuth token endpoint, which google-auth
asks for an identity token (a service account's JWT-bearer grant) when the CLI
mints its own (``HITL_START_AUTH=google``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """Mints identity tokens (JWT-shaped, with ``exp``) and remembers which are valid."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.valid: set[str] = set()
        self.minted: list[str] = []
        self.grants = 0
        self._lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the OAuth token endpoint: a service account's grant
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                issuer.grants += 1
                body = json.dumps({"id_token": issuer.mint()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.token_uri = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def mint(self) -> str:
        with self._lock:
            n = len(self.minted) + 1
            header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
            claims = {"iss": "https://accounts.google.com", "sub": "ci", "n": n, "iat": int(time.time()),
                      "exp": int(time.time() + self.lifetime)}  # fmt: skip
            token = f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(b'sig')}"
            self.minted.append(token)
            self.valid.add(token)
            return token

    def close(self) -> None:
        self.server.shutdown()


class Invoker:
    """A proxy to ``target`` (the start function) that, like Cloud Run with IAM, answers 401
    to any request without a valid identity token, and forwards the others as they are."""

    def __init__(self, target: str, issuer: Issuer, *, single_use: bool = False) -> None:
        self.target = target.rstrip("/")
        self.refused = 0
        #: Each token lets one request through, then is spent (as if it had expired): every
        #: later request with it is refused, so a client must mint a fresh one after a 401.
        self.single_use = single_use
        invoker = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                auth = self.headers.get("Authorization", "")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                token = auth.removeprefix("Bearer ")
                if not auth.startswith("Bearer ") or token not in issuer.valid:
                    invoker.refused += 1
                    self._answer(401, b"<html>Unauthorized</html>", "text/html")
                    return
                if invoker.single_use:
                    issuer.valid.discard(token)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
                r = requests.request(method, invoker.target + self.path, data=body, headers=headers, timeout=90)
                self._answer(r.status_code, r.content, r.headers.get("Content-Type", ""))

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
