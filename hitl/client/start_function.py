"""hitl's own ``start`` function over HTTP, as a start caller reaches it (the CLI in a CI pipeline).

A pipeline must hold only what a ``start`` caller holds, never the Resonate
server's token (which could settle any promise, its own request's votes
included). So the CLI can speak to the ``start`` function instead of the
server: start a request, read its status, wait for it (the function's long
poll: ``GET ?workflow_id=&wait=``, at most a minute per call, repeated), cancel.

Credentials, as ``start`` checks them:

- a Cloud Run invoker identity: ``Authorization: Bearer <identity token>``:
  a fixed token; or one from Google's Application Default Credentials (the
  metadata server on Cloud Build, Cloud Run and Compute Engine; a service
  account key or an impersonation file), minted by google-auth for the
  function's URL; or one printed by a command (``gcloud auth
  print-identity-token --audiences=URL``). The last two are asked again before
  the token expires and after a 401 (a wait may last a day; a token an hour);
- the webhook secret: every request signed (:mod:`hitl.security.signatures`):
  a POST over its body, a GET over its query string.

Every answer is returned as it came, ``(status, JSON)``: the caller maps it.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yarl

from hitl.security import signatures

#: Refresh a token this long before it expires.
REFRESH_BEFORE_S = 300
#: How long to keep a token that says nothing of its expiry.
OPAQUE_TOKEN_S = 300.0


class CredentialError(Exception):
    """The token command failed; the message says how (never the token)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    doc: dict[str, Any]


class Tokens:
    """Identity tokens for ``Authorization: Bearer``: a fixed one, or fresh ones minted from
    Google's Application Default Credentials for ``google_audience``, or printed by ``command``."""

    def __init__(
        self,
        *,
        token: str | None = None,
        command: str | None = None,
        google_audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fixed = token
        self._command = command
        self._audience = google_audience
        self._clock = clock
        self._token: str | None = None
        self._until = 0.0

    def current(self) -> str | None:
        """The token to send now (blocking: call it off the event loop)."""
        if self._command is None and self._audience is None:
            return self._fixed
        if self._token is None or self._clock() >= self._until:
            self._token = self._run() if self._command is not None else self._google()
            self._until = expiry(self._token, now=self._clock()) - REFRESH_BEFORE_S
        return self._token

    def refresh(self) -> bool:
        """Forget a minted token (after a 401); ``False`` when there is nothing to refresh."""
        if self._command is None and self._audience is None:
            return False
        self._token = None
        return True

    def _google(self) -> str:
        # Imported here: only a caller using Google's credentials pays for google-auth.
        import google.auth.exceptions
        from google.auth.transport.requests import Request
        from google.oauth2 import id_token

        assert self._audience is not None
        try:
            return str(id_token.fetch_id_token(Request(), self._audience))  # type: ignore[no-untyped-call]
        except google.auth.exceptions.GoogleAuthError as exc:
            raise CredentialError(
                f"no identity token from Google's default credentials for {self._audience}: {type(exc).__name__}"
            ) from None

    def _run(self) -> str:
        assert self._command is not None
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, from their configuration
                shlex.split(self._command), capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CredentialError(f"HITL_START_TOKEN_COMMAND could not run: {type(exc).__name__}") from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            raise CredentialError(f"HITL_START_TOKEN_COMMAND failed (exit {done.returncode}) or printed no token")
        return token


def expiry(token: str, *, now: float) -> float:
    """When a JWT says it expires (its ``exp``, unverified: only to know when to ask again);
    ``now`` + :data:`OPAQUE_TOKEN_S` for a token that is not a readable JWT."""
    import google.auth.jwt

    try:
        exp = google.auth.jwt.decode(token, verify=False).get("exp")  # type: ignore[no-untyped-call]
    except ValueError:  # not three segments of base64url JSON objects (google-auth's MalformedError)
        return now + OPAQUE_TOKEN_S
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else now + OPAQUE_TOKEN_S


class StartFunction:
    """Requests to the ``start`` function at ``url``. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        tokens: Tokens | None = None,
        webhook_secret: bytes | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url.rstrip("/")
        self._tokens = tokens or Tokens()
        self._secret = webhook_secret
        self._timeout = timeout
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StartFunction:
        self._session = aiohttp.ClientSession(trust_env=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def start(self, body: bytes) -> Answer:
        return await self._send("POST", "/", body=body)

    async def cancel(self, workflow_id: str, reason: str) -> Answer:
        return await self._send(
            "POST", "/cancel", body=json.dumps({"workflow_id": workflow_id, "reason": reason}).encode()
        )

    async def status(self, workflow_id: str, *, wait: float = 0.0) -> Answer:
        """The status; with ``wait`` (at most 60 s), as soon as the request ends (one long poll)."""
        query = {"workflow_id": workflow_id} | ({"wait": f"{min(wait, 60.0):g}"} if wait > 0 else {})
        return await self._send("GET", "/", query=urlencode(query), extra=min(wait, 60.0))

    async def _send(self, method: str, path: str, *, body: bytes = b"", query: str = "", extra: float = 0.0) -> Answer:
        for attempt in (1, 2):
            status, doc = await self._once(method, path, body, query, extra)
            if status == 401 and attempt == 1 and self._tokens.refresh():
                continue  # the token expired early: ask for a fresh one, once
            return Answer(status, doc)
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, body: bytes, query: str, extra: float) -> tuple[int, dict[str, Any]]:
        assert self._session is not None, "use StartFunction as an async context manager"
        headers: dict[str, str] = {}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        token = await asyncio.to_thread(self._tokens.current)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self._secret is not None:  # a POST signs its body, a GET its query string: what start reads
            headers[signatures.HEADER] = signatures.sign(
                self._secret, body if method == "POST" else query.encode(), int(self._clock())
            )
        url = yarl.URL(self._url + path + (f"?{query}" if query else ""), encoded=True)
        timeout = aiohttp.ClientTimeout(total=self._timeout + extra)
        async with self._session.request(method, url, data=body or None, headers=headers, timeout=timeout) as r:
            raw = await r.read()
            return r.status, _json(raw, r.headers)


def _json(raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        kind = headers.get("Content-Type", "no content type")
        return {"error": f"not a JSON answer ({kind}): not the start function, or not reached"}
    return doc if isinstance(doc, dict) else {"error": "an unexpected answer"}
