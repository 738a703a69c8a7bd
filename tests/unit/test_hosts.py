"""Host allowlists as the settings read them (hitl.hosts)."""

from __future__ import annotations

import pytest

from hitl import hosts
from hitl.notify import http

CASES = (None, "  ", "Hooks.Slack.com, .example.com 127.0.0.1 [::1]", "a.example,b.example", "::1 fe80::1")
BAD = ("https://x.example", "a/b", "x..y", "user@host", "ok.example bad/host")


def test_lists_are_lowercased_and_split_on_commas_and_spaces() -> None:
    assert hosts.parse_allowed_hosts(None, ("Hooks.Slack.com",)) == {"hooks.slack.com"}
    assert hosts.parse_allowed_hosts("  ", ()) == frozenset()
    assert hosts.parse_allowed_hosts("Hooks.Slack.com, .example.com 127.0.0.1 [::1]") == {
        "hooks.slack.com",
        ".example.com",
        "127.0.0.1",
        "[::1]",
    }


@pytest.mark.parametrize("raw", BAD)
def test_a_malformed_entry_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        hosts.parse_allowed_hosts(raw)


def test_it_agrees_with_the_notifiers_copy() -> None:
    """hitl.notify.http still holds the parser it had; until it imports this one, they must agree."""
    for raw in CASES:
        assert hosts.parse_allowed_hosts(raw, ("hooks.slack.com",)) == http.parse_allowed_hosts(raw, ("hooks.slack.com",))
    for raw in BAD:
        with pytest.raises(ValueError):
            http.parse_allowed_hosts(raw)
