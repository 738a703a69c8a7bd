import base64
import hashlib
import hmac
import random
import string

import pytest

from hitl.security.tokens import (
    MAX_TOKEN_LENGTH,
    TOKEN_RE,
    Claims,
    TokenError,
    counterpart,
    sign,
    verify,
)

KEY = b"k" * 32
NOW = 1_800_000_000
CLAIMS = Claims("hitl:approval:wf-1:decision", "alice@example.com", "approve", NOW + 60)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_payload(payload: bytes, key: bytes = KEY) -> str:
    """A token with a valid signature over an arbitrary payload (the documented format)."""
    encoded = b64(payload)
    mac = hmac.new(key, b"hitl.v1." + encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{b64(mac)}"


def reason(token: object, key: bytes = KEY, now: float = NOW) -> str:
    with pytest.raises(TokenError) as info:
        verify(key, token, now=now)  # type: ignore[arg-type]
    return info.value.reason


def test_round_trip() -> None:
    token = sign(KEY, CLAIMS)
    assert verify(KEY, token, now=NOW) == CLAIMS


def test_token_is_url_safe_compact_and_recognizable() -> None:
    token = sign(KEY, CLAIMS)
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")
    assert token.count(".") == 1 and "=" not in token
    assert TOKEN_RE.fullmatch(token)
    assert len(token) < 200


def test_unicode_claims_round_trip() -> None:
    claims = Claims("promise/é/日本", "josé@bücher.example", "reject", NOW + 1)
    assert verify(KEY, sign(KEY, claims), now=NOW) == claims


def test_expiry_is_exclusive() -> None:
    token = sign(KEY, CLAIMS)
    assert verify(KEY, token, now=CLAIMS.expires_at - 0.001) == CLAIMS
    assert reason(token, now=CLAIMS.expires_at) == "expired"
    assert reason(token, now=CLAIMS.expires_at + 86_400) == "expired"


def test_wrong_key_is_a_bad_signature() -> None:
    assert reason(sign(KEY, CLAIMS), key=b"x" * 32) == "bad_signature"


def test_expired_token_with_wrong_key_is_a_bad_signature() -> None:
    assert reason(sign(KEY, CLAIMS), key=b"x" * 32, now=NOW * 2) == "bad_signature"


@pytest.mark.parametrize(
    "changed",
    [
        Claims("hitl:approval:wf-2:decision", CLAIMS.approver, "approve", CLAIMS.expires_at),
        Claims(CLAIMS.promise_id, "mallory@example.com", "approve", CLAIMS.expires_at),
        Claims(CLAIMS.promise_id, CLAIMS.approver, "reject", CLAIMS.expires_at),
        Claims(CLAIMS.promise_id, CLAIMS.approver, "approve", CLAIMS.expires_at + 3600),
    ],
)
def test_every_claim_is_signed(changed: Claims) -> None:
    payload = sign(KEY, changed).split(".")[0]
    signature = sign(KEY, CLAIMS).split(".")[1]
    assert reason(f"{payload}.{signature}") == "bad_signature"


def test_tampered_signature() -> None:
    payload, signature = sign(KEY, CLAIMS).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert reason(f"{payload}.{flipped}") == "bad_signature"
    assert reason(f"{payload}.{signature[:-2]}") == "malformed"  # truncated
    assert reason(f"{payload}.") == "malformed"


def test_non_canonical_base64_is_malformed() -> None:
    payload, signature = sign(KEY, CLAIMS).split(".")
    # 43 characters carry 258 bits: the last 2 are zero in the canonical form.
    last = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    twin = last[last.index(signature[-1]) ^ 1]
    assert reason(f"{payload}.{signature[:-1]}{twin}") == "malformed"
    assert reason(f"{payload}=.{signature}") == "malformed"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"{}",
        b'["p","a","maybe",1]',
        b'["p","a","approve",true]',
        b'["p","a","approve",1.5]',
        b'["","a","approve",1]',
        b'["p","a","approve"]',
        b'["p","a","approve",1,2]',
        b"[" * 5000,
    ],
)
def test_signed_but_malformed_payload(payload: bytes) -> None:
    assert reason(signed_payload(payload)) == "malformed"


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "a.b.c",
        "..",
        " " + "a" * 10,
        "é.é",
        "\x00.\x00",
        "a" * (MAX_TOKEN_LENGTH + 1),
        "a" * 100_000 + "." + "b" * 43,
        "日本語.トークン",
        "a.b\n",
        None,
        123,
        b"bytes.token",
    ],
)
def test_garbage_is_malformed(token: object) -> None:
    assert reason(token) == "malformed"


def test_fuzz_raises_only_token_errors() -> None:
    rng = random.Random(1234)
    valid = sign(KEY, CLAIMS)
    alphabet = string.printable + "é日\x00\ud800.-_="
    for _ in range(3000):
        mode = rng.randrange(3)
        if mode == 0:
            token = "".join(rng.choice(alphabet) for _ in range(rng.randrange(120)))
        elif mode == 1:
            token = bytes(rng.randrange(256) for _ in range(rng.randrange(120))).decode("latin-1")
        else:
            chars = list(valid)
            for _ in range(rng.randint(1, 3)):
                chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            token = "".join(chars)
        if token == valid:
            continue
        with pytest.raises(TokenError):
            verify(KEY, token, now=NOW)


def test_counterpart() -> None:
    reject = counterpart(CLAIMS, "reject")
    assert reject == Claims(CLAIMS.promise_id, CLAIMS.approver, "reject", CLAIMS.expires_at)
    assert verify(KEY, sign(KEY, reject), now=NOW).decision == "reject"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (Claims("", "a@example.com", "approve", 1), "must not be empty"),
        (Claims("p", "", "approve", 1), "must not be empty"),
        (Claims("p", "a@example.com", "maybe", 1), "decision must be one of"),  # type: ignore[arg-type]
        (Claims("p", "a@example.com", "approve", 1.5), "expires_at must be an int"),  # type: ignore[arg-type]
        (Claims("p" * MAX_TOKEN_LENGTH, "a@example.com", "approve", 1), "too long"),
    ],
)
def test_sign_refuses_bad_claims(claims: Claims, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sign(KEY, claims)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        sign(b"short", CLAIMS)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        verify(b"short", sign(KEY, CLAIMS), now=NOW)


def test_a_link_for_a_request_requiring_sign_in_says_so_and_older_links_still_verify() -> None:
    required = Claims(CLAIMS.promise_id, CLAIMS.approver, "approve", CLAIMS.expires_at, sign_in=True)
    assert verify(KEY, sign(KEY, required), now=NOW) == required
    assert verify(KEY, sign(KEY, CLAIMS), now=NOW).sign_in is False  # the four-element form, as before
    assert sign(KEY, required) != sign(KEY, CLAIMS)
