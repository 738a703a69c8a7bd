"""What the CLI reads, unverified, from tokens it holds: when a start caller's identity token
expires (to ask for the next in time), and whom an operator's server token names (a vote's
``cli`` identity)."""

from __future__ import annotations

import base64
import json

from hitl.client.start_function import OPAQUE_TOKEN_S, expiry
from hitl.edges.cli import operator, principal
from hitl.settings import CliSettings, ResonateSettings


def jwt(claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def test_an_identity_token_expires_when_it_says() -> None:
    assert expiry(jwt({"exp": 1_900_000_000, "aud": "x"}), now=1000.0) == 1_900_000_000.0


def test_a_token_that_says_nothing_of_its_expiry_is_kept_a_while() -> None:
    for token in ("opaque", "a.b.c", jwt({"aud": "x"}), jwt({"exp": "soon"}), jwt({"exp": True})):
        assert expiry(token, now=1000.0) == 1000.0 + OPAQUE_TOKEN_S, token


def test_a_cli_vote_names_the_server_tokens_subject_else_the_account() -> None:
    def settings(token: str | None) -> CliSettings:
        return CliSettings(ResonateSettings("http://resonate.test", token=token))

    assert principal(settings(jwt({"sub": "ops@example.com", "prefix": ""}))) == "ops@example.com"
    account = operator().removeprefix("cli:")
    for token in (None, "opaque", jwt({"sub": ""}), "x.%%%.y"):
        assert principal(settings(token)) == account, token
