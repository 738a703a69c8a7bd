"""The signed-in person behind a request: Identity-Aware Proxy's assertion, verified.

With sign-in on, ``unblock`` sits behind IAP, which signs each request it lets
through with a JWT in ``X-Goog-IAP-JWT-Assertion``. ``unblock`` trusts that and
nothing else (not the unsigned ``X-Goog-Authenticated-User-*`` headers, which
anyone bypassing IAP could forge). :meth:`Verifier.verify` checks, in order, and
names the first check that fails (never the token):

- ``malformed``: three base64url JSON segments;
- ``algorithm``: ``ES256`` only (so ``none``, HMAC and RSA tokens are refused
  before any key is looked at);
- ``key``: a key id IAP publishes (:class:`KeySet`: fetched once, cached, and
  fetched again for an unknown key id, at most every :data:`REFETCH_AFTER_S`);
- ``signature``: ECDSA P-256 over the first two segments, with google-auth's
  verifier;
- ``issuer``: ``https://cloud.google.com/iap``; ``audience``: this service's;
- ``expired`` / ``not yet valid``: ``exp`` and ``iat``, with :data:`LEEWAY_S`;
- ``identity``: an email and a subject (IAP's stable user id).

The same code verifies the development sign-in's assertions (``devstack``):
only the key set's URL and the audience differ.

google-auth and cryptography (google-auth's own dependency) are the only
libraries here, imported by this module alone: only a deployment with sign-in
loads them.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from google.auth.crypt import es

#: What IAP puts in ``iss``.
ISSUER = "https://cloud.google.com/iap"
#: Where IAP publishes its public keys, as a JWK set.
KEYS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
#: The header IAP signs each request with.
HEADER = "X-Goog-IAP-JWT-Assertion"
#: Seconds of clock skew allowed on ``exp`` and ``iat`` (IAP's documented allowance).
LEEWAY_S = 30
#: Fetch the key set again after this long, whatever happens.
MAX_AGE_S = 3600.0
#: An unknown key id fetches the set again, but not more often than this.
REFETCH_AFTER_S = 30.0

#: Reads a URL's body (the key set), blocking; raises ``OSError`` on failure.
Fetch = Callable[[str], bytes]


class FetchDue(Exception):
    """The key set must be fetched first (a blocking call): verify again where blocking is fine."""


class Refused(Exception):
    """The assertion does not prove who is signed in; ``reason`` names the check that failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A person IAP vouched for: their email, and IAP's stable id for them (``accounts.google.com:123``)."""

    email: str
    subject: str


def fetch_url(url: str, timeout: float = 5.0) -> bytes:
    """:data:`Fetch` over HTTPS (``urllib``: the key set is one small GET)."""
    if not url.startswith(("https://", "http://")):
        raise OSError(f"not an http(s) URL: {url!r}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked above
        data: bytes = response.read(1_000_000)
        return data


class KeySet:
    """IAP's public keys by key id, fetched from ``url`` and kept (thread-safe).

    Invariants: a key is parsed once, into a verifier; the set is fetched again
    when it is older than ``max_age``, or for a key id it lacks, but at most once
    every ``refetch_after`` seconds, so tokens naming made-up key ids cannot make
    the function fetch on every request. A failed fetch keeps the keys it had.
    """

    def __init__(
        self,
        url: str = KEYS_URL,
        *,
        fetch: Fetch = fetch_url,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = MAX_AGE_S,
        refetch_after: float = REFETCH_AFTER_S,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        self._max_age = max_age
        self._refetch_after = refetch_after
        self._keys: dict[str, es.EsVerifier] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        #: How many times the set was fetched (tests and the benchmark read it).
        self.fetches = 0

    def verifier(self, kid: str, *, may_fetch: bool = True) -> es.EsVerifier | None:
        """The verifier of key ``kid``, fetching the set first when that is due (or raising
        :class:`FetchDue` then, when ``may_fetch`` is false)."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
            unknown = kid not in self._keys
            may_refetch = self._fetched_at is None or now - self._fetched_at >= self._refetch_after
            if stale or (unknown and may_refetch):
                if not may_fetch:
                    raise FetchDue
                self._refresh(now)
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        try:
            document = json.loads(self._fetch(self.url))
        except (OSError, ValueError):
            self._fetched_at = now  # keep what we had; try again after refetch_after
            return
        self.fetches += 1
        self._fetched_at = now
        keys = document.get("keys") if isinstance(document, Mapping) else None
        self._keys = {k["kid"]: v for k in keys or () if isinstance(k, Mapping) and (v := _verifier(k)) is not None}


def _verifier(jwk: Mapping[str, Any]) -> es.EsVerifier | None:
    """A verifier for an ``EC`` ``P-256`` signing key of a JWK set (anything else is skipped)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or jwk.get("alg", "ES256") != "ES256":
        return None
    if jwk.get("use", "sig") != "sig" or not isinstance(jwk.get("kid"), str):
        return None
    try:
        x, y = (int.from_bytes(_unb64(jwk[c]), "big") for c in ("x", "y"))
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, ValueError, TypeError):
        return None
    return es.EsVerifier(key)


class Verifier:
    """Checks IAP assertions for one service (its audience), against a :class:`KeySet`."""

    def __init__(
        self,
        keys: KeySet,
        audience: str,
        *,
        issuer: str = ISSUER,
        leeway: int = LEEWAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self._clock = clock

    def verify(self, token: str | None, *, may_fetch: bool = True) -> SignedIn:
        """Who IAP says is signed in, or :class:`Refused` naming the check that failed.

        Blocking when the key set must be fetched; with ``may_fetch`` false it raises
        :class:`FetchDue` instead (an event loop verifies inline, and only fetches in a thread).
        """
        if not token:
            raise Refused("missing")
        parts = token.split(".")
        if len(parts) != 3:
            raise Refused("malformed")
        try:
            header, claims = (json.loads(_unb64(p)) for p in parts[:2])
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            raise Refused("malformed") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise Refused("malformed")
        if header.get("alg") != "ES256":
            raise Refused("algorithm")
        kid = header.get("kid")
        verifier = self.keys.verifier(kid, may_fetch=may_fetch) if isinstance(kid, str) else None
        if verifier is None:
            raise Refused("key")
        if not verifier.verify(f"{parts[0]}.{parts[1]}".encode(), signature):
            raise Refused("signature")
        if claims.get("iss") != self.issuer:
            raise Refused("issuer")
        if claims.get("aud") != self.audience:
            raise Refused("audience")
        now = self._clock()
        exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
        if exp is None or iat is None:
            raise Refused("malformed")
        if exp + self.leeway < now:
            raise Refused("expired")
        if iat - self.leeway > now:
            raise Refused("not yet valid")
        email, subject = claims.get("email"), claims.get("sub")
        if not isinstance(email, str) or "@" not in email or not isinstance(subject, str) or not subject:
            raise Refused("identity")
        return SignedIn(email, subject)


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
