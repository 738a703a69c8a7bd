"""A development sign-in in front of ``unblock``: what Identity-Aware Proxy does, on this machine.

    python -m devstack.signin --port 8081 --upstream http://127.0.0.1:8091 --audience AUD --key state/signin.pem

Never deployed, and it says so on its page: anyone can type any address here.
It plays IAP's part so that ``unblock``'s real verification code runs locally:

- a browser without its session is sent to a page asking for an email
  (``/_dev_iap/signin``); a request that is not a page view (a POST) gets a 401;
- every request it lets through goes to ``--upstream`` with
  ``X-Goog-IAP-JWT-Assertion``: a JWT in IAP's format (ES256, ``kid``,
  ``iss`` ``https://cloud.google.com/iap``, ``aud``, ``iat``, ``exp``, ``email``,
  ``sub``), signed with a development key; like IAP it drops any ``X-Goog-*``
  header the client sent;
- it publishes the key's public half as a JWK set at ``/_dev_iap/jwk``:
  ``unblock``'s ``HITL_IAP_KEYS_URL`` points there (with real IAP it is Google's);
- ``/_gcp_iap/clear_login_cookie`` signs out, as IAP's does.

The key is kept in ``--key`` (made on first use), so a restart keeps its key id.
Prints ``dev sign-in listening on URL`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import json
import signal
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://cloud.google.com/iap"
COOKIE = "dev_iap_email"
SIGNIN_PATH = "/_dev_iap/signin"
JWK_PATH = "/_dev_iap/jwk"
SIGNOUT_PATH = "/_gcp_iap/clear_login_cookie"
#: Hop-by-hop headers, never forwarded (RFC 9110 7.6.1), and the length aiohttp sets itself.
#: ``Host`` is forwarded, as IAP does: ``unblock`` builds its form's URL from it.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length"}  # fmt: skip


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The development signing key in ``path`` (PEM), made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def key_id(key: ec.EllipticCurvePrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "dev-" + hashlib.sha256(public).hexdigest()[:16]


class DevSignIn:
    def __init__(self, upstream: str, audience: str, key: ec.EllipticCurvePrivateKey, lifetime: int = 600) -> None:
        self.upstream = upstream.rstrip("/")
        self.audience = audience
        self.key = key
        self.kid = key_id(key)
        self.lifetime = lifetime
        self.http: aiohttp.ClientSession | None = None

    def jwk_set(self) -> dict[str, object]:
        public = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "ES256", "use": "sig"}]}

    def assertion(self, email: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": self.audience, "iat": now, "exp": now + self.lifetime, "email": email,
            "sub": "accounts.google.com:dev-" + hashlib.sha256(email.casefold().encode()).hexdigest()[:20],
        }  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == JWK_PATH:
            return web.json_response(self.jwk_set())
        if path == SIGNIN_PATH:
            return await self.signin(request)
        if path == SIGNOUT_PATH:
            response = web.HTTPFound(f"{SIGNIN_PATH}?next=/")
            response.del_cookie(COOKIE, path="/")
            return response
        email = request.cookies.get(COOKIE)
        if not email:
            if request.method in ("GET", "HEAD"):
                return web.HTTPFound(f"{SIGNIN_PATH}?next={quote(str(request.rel_url), safe='')}")
            return web.Response(status=401, text="Unauthorized: sign in first\n")
        return await self.forward(request, email)

    async def signin(self, request: web.Request) -> web.StreamResponse:
        target = request.query.get("next") or "/"
        if request.method == "POST":
            form = await request.post()
            email, target = str(form.get("email", "")).strip(), str(form.get("next") or "/")
            if "@" not in email or len(email) > 254 or any(c in email for c in " <>\"'\r\n"):
                return web.Response(
                    status=400, text=_page("That is not an email address.", target), content_type="text/html"
                )
            response = web.HTTPSeeOther(_local(target))
            response.set_cookie(COOKIE, email, path="/", httponly=True, samesite="Lax")
            return response
        return web.Response(text=_page(None, target), content_type="text/html")

    async def forward(self, request: web.Request, email: str) -> web.StreamResponse:
        assert self.http is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP and not k.lower().startswith("x-goog-")
        }
        headers["X-Goog-IAP-JWT-Assertion"] = self.assertion(email)
        body = await request.read()
        async with self.http.request(
            request.method, self.upstream + str(request.rel_url), headers=headers, data=body or None,
            allow_redirects=False,
        ) as upstream:  # fmt: skip
            payload = await upstream.read()
            out = web.Response(status=upstream.status, body=payload)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP:
                    out.headers.add(name, value)
            return out


def _local(target: str) -> str:
    """Only a path on this host may be a redirect's target (an open redirect otherwise)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _page(problem: str | None, target: str) -> str:
    note = f'<p role="alert"><strong>{html.escape(problem)}</strong></p>' if problem else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Development sign-in</title>
<style>body{{font:1rem/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1b1b1f}}
.warn{{background:#fff4ce;border:1px solid #8a6d00;padding:.75rem;border-radius:.375rem}}
label{{display:block;font-weight:600;margin:1rem 0 .25rem}}input{{font:inherit;width:100%;padding:.5rem}}
button{{font:inherit;font-weight:600;margin-top:1rem;padding:.5rem 1.25rem;background:#1a56db;color:#fff;border:0;border-radius:.375rem}}
:focus-visible{{outline:3px solid #1a56db;outline-offset:2px}}</style></head>
<body><main>
<h1>Development sign-in</h1>
<p class="warn"><strong>For development only, never deployed.</strong> It stands in for Google's Identity-Aware
Proxy on this machine: anyone can sign in as anyone here. In production, IAP signs people in with their Google account.</p>
{note}
<form method="post" action="{SIGNIN_PATH}">
<input type="hidden" name="next" value="{html.escape(target)}">
<label for="email">Sign in as (email)</label>
<input type="email" id="email" name="email" required autocomplete="email" autofocus>
<button type="submit">Sign in</button>
</form>
</main></body></html>
"""


async def serve(port: int, upstream: str, audience: str, key_path: Path) -> None:
    proxy = DevSignIn(upstream, audience, load_key(key_path))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    proxy.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    print(f"dev sign-in listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.http.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.signin", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--upstream", required=True, help="the unblock function's URL")
    p.add_argument("--audience", required=True, help="the assertions' aud (unblock's HITL_IAP_AUDIENCE)")
    p.add_argument("--key", type=Path, required=True, help="the signing key's PEM file (made on first use)")
    args = p.parse_args(argv)
    asyncio.run(serve(args.port, args.upstream, args.audience, args.key))


if __name__ == "__main__":
    main()
