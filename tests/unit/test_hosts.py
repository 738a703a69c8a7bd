"""Host allowlists as the settings read them (hitl.security.hosts)."""

from __future__ import annotations

import pytest

from hitl.security import hosts

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
