"""The IAP assertion verifier (hitl.security.iap) against tokens minted with test keys.

Every way an assertion can be wrong is refused with the name of the check it
failed; the key set is fetched once, kept, and fetched again only when due.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from hitl.security.iap import ISSUER, KeySet, Refused, SignedIn, Verifier

AUDIENCE = "/projects/123/locations/europe-west1/services/hitl-unblock"
NOW = 1_800_000_000.0
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "ES256", "use": "sig"}


class Keys:
    """A key set document and a fetch that counts its calls."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.calls = 0

    def fetch(self, url: str) -> bytes:
        self.calls += 1
        return json.dumps({"keys": self.keys}).encode()


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "iat": int(NOW) - 5, "exp": int(NOW) + 600,
            "email": "alice@example.com", "sub": "accounts.google.com:1234"}  # fmt: skip
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def mint(key: Any = KEY, kid: str = "k1", alg: str = "ES256", **changes: Any) -> str:
    return jwt.encode(claims(**changes), key, algorithm=alg, headers={"kid": kid})


def verifier(keys: Keys | None = None, clock: list[float] | None = None) -> Verifier:
    keys = keys or Keys(jwk(KEY, "k1"))
    at = clock or [0.0]
    return Verifier(KeySet("https://keys.test/jwk", fetch=keys.fetch, clock=lambda: at[0]), AUDIENCE, clock=lambda: NOW)


def refused(token: str | None, v: Verifier | None = None) -> str:
    with pytest.raises(Refused) as caught:
        (v or verifier()).verify(token)
    return caught.value.reason


def test_a_good_assertion_names_the_signed_in_person() -> None:
    assert verifier().verify(mint()) == SignedIn("alice@example.com", "accounts.google.com:1234")


def test_the_leeway_admits_a_little_clock_skew_and_no_more() -> None:
    assert verifier().verify(mint(exp=int(NOW) - 20)).email == "alice@example.com"
    assert verifier().verify(mint(iat=int(NOW) + 20)).email == "alice@example.com"
    assert refused(mint(exp=int(NOW) - 31)) == "expired"
    assert refused(mint(iat=int(NOW) + 31)) == "not yet valid"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("not-a-jwt", "malformed"),
        ("a.b.c", "malformed"),
        (mint(exp=int(NOW) - 3600), "expired"),
        (mint(iat=int(NOW) + 3600), "not yet valid"),
        (mint(aud="/projects/123/locations/europe-west1/services/other"), "audience"),
        (mint(iss="https://accounts.google.com"), "issuer"),
        (mint(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), alg="RS256"), "algorithm"),
        (jwt.encode(claims(), "a shared secret of at least 32 bytes!!", algorithm="HS256", headers={"kid": "k1"}),
         "algorithm"),
        (mint(kid="k9"), "key"),
        (mint(key=OTHER), "signature"),
        (mint(email=None), "identity"),
        (mint(sub=None), "identity"),
        (mint(exp="soon"), "malformed"),
    ],
)  # fmt: skip
def test_every_wrong_assertion_is_refused_with_the_check_it_failed(token: str | None, reason: str) -> None:
    assert refused(token) == reason


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_tampered_payload_fails_the_signature() -> None:
    header, _, signature = mint().split(".")
    forged = f"{header}.{b64(claims(email='mallory@example.com'))}.{signature}"
    assert refused(forged) == "signature"


def test_alg_none_is_refused_before_any_key() -> None:
    keys = Keys(jwk(KEY, "k1"))
    unsigned = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims())}."
    assert refused(unsigned, verifier(keys)) == "algorithm"
    assert keys.calls == 0  # not even fetched


def test_the_keys_are_fetched_once_and_again_for_an_unknown_key_id_at_most_every_30_s() -> None:
    keys = Keys(jwk(KEY, "k1"))
    clock = [0.0]
    v = verifier(keys, clock)
    for _ in range(5):
        v.verify(mint())
    assert keys.calls == 1
    # IAP rotates: a new key id appears; once the old fetch is 30 s old, a token with it refetches
    keys.keys.append(jwk(OTHER, "k2"))
    assert refused(mint(key=OTHER, kid="k2"), v) == "key"  # too soon after the last fetch
    clock[0] = 31.0
    assert v.verify(mint(key=OTHER, kid="k2")).email == "alice@example.com"
    assert keys.calls == 2
    # made-up key ids cannot make it fetch on every request
    for n in range(20):
        assert refused(mint(kid=f"made-up-{n}"), v) == "key"
    assert keys.calls == 2
    # and after an hour the set is fetched again anyway
    clock[0] = 31.0 + 3600
    v.verify(mint())
    assert keys.calls == 3


def test_a_failed_fetch_keeps_the_keys_it_had() -> None:
    keys = Keys(jwk(KEY, "k1"))
    clock = [0.0]
    v = verifier(keys, clock)
    v.verify(mint())

    def down(url: str) -> bytes:
        raise OSError("unreachable")

    v.keys._fetch = down  # type: ignore[attr-defined]  # the fetch seam, swapped for this test
    clock[0] = 4000.0  # stale: a fetch is due, and fails
    assert v.verify(mint()).email == "alice@example.com"


def test_keys_that_are_not_ec_p256_signing_keys_are_skipped() -> None:
    others = [
        {**jwk(KEY, "enc"), "use": "enc"},
        {**jwk(KEY, "p384"), "crv": "P-384"},
        {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "broken", "x": "!!", "y": "!!"},
    ]
    v = verifier(Keys(*others, jwk(KEY, "k1")))
    assert v.verify(mint()).email == "alice@example.com"
    for kid in ("enc", "p384", "rsa", "broken"):
        assert refused(mint(kid=kid), v) == "key"
