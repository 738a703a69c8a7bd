"""hitl.notify.slack, hitl.notify.urls and hitl.notify.post: Block Kit payloads, URL checks, posting to a real local server."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from support.ports import refused_port
from support.receivers import Handler, serve

from hitl.notify.post import post_json
from hitl.notify.slack import DEFAULT_ALLOWED_HOSTS, escape, post_slack, slack_message
from hitl.notify.urls import NotifyError, check_url

APPROVE = "https://unblock.example/unblock?token=APPROVE-TOKEN&x=1"
REJECT = "https://unblock.example/unblock?token=REJECT-TOKEN"
SECRET_PATH = "/services/T000/B000/SECRETSECRET"


def _message(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "approver": "alice@example.com",
        "subject": "Deploy v2 to production",
        "details": {"service": "billing", "replicas": 3},
        "approve_url": APPROVE,
        "reject_url": REJECT,
        "deadline_at_iso": "2026-11-23T10:00:00Z",
    }
    args.update(overrides)
    return slack_message(**args)


def _block(payload: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in payload["blocks"] if b["type"] == kind]


def _all_mrkdwn(payload: dict[str, Any]) -> str:
    texts = [b["text"]["text"] for b in _block(payload, "section")]
    texts += [e["text"] for b in _block(payload, "context") for e in b["elements"]]
    return "\n".join(texts)


# --- slack_message ------------------------------------------------------------


def test_message_has_header_subject_details_context_and_buttons() -> None:
    payload = _message()
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "section", "context", "actions"]
    assert payload["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "Approval requested: Deploy v2 to production",
        "emoji": False,
    }
    assert payload["blocks"][1]["text"] == {"type": "mrkdwn", "text": "*Deploy v2 to production*"}
    assert payload["blocks"][2]["text"]["text"] == "service: billing\nreplicas: 3"
    context = [e["text"] for e in _block(payload, "context")[0]["elements"]]
    assert context[0].startswith("Respond by <!date^1795428000^")
    assert context[0].endswith("|Mon 23 Nov 2026, 10:00 UTC>")
    assert context[1] == "For alice@example.com"
    (actions,) = _block(payload, "actions")
    approve, reject = actions["elements"]
    assert approve["text"]["text"] == "Approve" and approve["style"] == "primary" and approve["url"] == APPROVE
    assert reject["text"]["text"] == "Reject" and reject["style"] == "danger" and reject["url"] == REJECT
    assert approve["action_id"] != reject["action_id"]
    assert payload["text"] == (
        "Approval requested: Deploy v2 to production (for alice@example.com, respond by Mon 23 Nov 2026, 10:00 UTC)"
    )
    assert "TOKEN" not in payload["text"]
    json.dumps(payload)  # serializable as is


def test_reminder_and_progress() -> None:
    payload = _message(reminder=True, progress="1 of 2 approvals <so far>")
    assert payload["blocks"][0]["text"]["text"] == "Reminder: Approval requested: Deploy v2 to production"
    assert payload["text"].startswith("Reminder: Approval requested:")
    context = [e["text"] for e in _block(payload, "context")[0]["elements"]]
    assert context[2] == "1 of 2 approvals &lt;so far&gt;"


def test_nested_details_are_flattened_to_dotted_lines() -> None:
    details = {
        "change": {"service": "billing", "to": {"version": "2.0", "canary": True}},
        "hosts": ["a", {"name": "b"}],
        "empty": {},
        "none": None,
    }
    text = _message(details=details)["blocks"][2]["text"]["text"]
    assert text.splitlines() == [
        "change.service: billing",
        "change.to.version: 2.0",
        "change.to.canary: true",
        "hosts.1: a",
        "hosts.2.name: b",
        "empty: {}",
        "none: null",
    ]


def test_scalar_and_empty_details() -> None:
    assert _message(details="just text")["blocks"][2]["text"]["text"] == "value: just text"
    for empty in (None, {}, []):
        assert [b["type"] for b in _message(details=empty)["blocks"]] == ["header", "section", "context", "actions"]


def test_caller_text_is_escaped_for_slack() -> None:
    payload = _message(
        subject="Ship <!channel> & <https://evil.example|click>",
        approver="bob<@U123>@example.com",
        details={"<k>": "a & b <!here>", "n": {"x&y": "<@U999>"}},
    )
    text = _all_mrkdwn(payload)
    assert "<!channel>" not in text and "<!here>" not in text and "<@U" not in text and "<https" not in text
    assert "*Ship &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;*" in text
    assert "&lt;k&gt;: a &amp; b &lt;!here&gt;" in text
    assert "n.x&amp;y: &lt;@U999&gt;" in text
    assert "For bob&lt;@U123&gt;@example.com" in text
    assert "<!channel>" not in payload["text"]
    assert escape("a&b<c>") == "a&amp;b&lt;c&gt;"


def test_control_characters_do_not_break_lines() -> None:
    payload = _message(subject="two\nlines\x00", details={"k\nk": "v\x07v"})
    assert payload["blocks"][0]["text"]["text"] == "Approval requested: two lines"
    assert payload["blocks"][2]["text"]["text"] == "k k: v v"


def test_block_kit_limits_hold_for_huge_input() -> None:
    details = {f"key{i}": "<&>" * 400 for i in range(400)}
    payload = _message(subject="S" * 300, details=details)
    assert len(payload["blocks"]) <= 50
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    sections = _block(payload, "section")
    assert len(sections) <= 11
    for block in sections:
        text = block["text"]["text"]
        assert len(text) <= 3000
        # no entity cut in half
        for i, ch in enumerate(text):
            if ch == "&":
                assert text[i:].startswith(("&amp;", "&lt;", "&gt;"))
    assert sections[-1]["text"]["text"].endswith("more_")
    assert len(payload["text"]) <= 300


def test_malformed_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="approve_url"):
        _message(approve_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="reject_url"):
        _message(reject_url="/relative")
    with pytest.raises(ValueError, match="timezone"):
        _message(deadline_at_iso="2026-11-23T10:00:00")


# --- check_url ----------------------------------------------------------------


def test_check_url_accepts_slack_webhooks() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXX"
    assert check_url(url, allowed_hosts=DEFAULT_ALLOWED_HOSTS) == url
    assert check_url("https://HOOKS.slack.com/x", allowed_hosts=DEFAULT_ALLOWED_HOSTS)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.slack.com/services/x", "https"),
        ("https://user:pw@hooks.slack.com/services/x", "user name"),
        ("https://hooks.slack.com@evil.example/services/x", "user name"),
        ("https://evil.example/services/x", "not allowed"),
        ("https://hooks.slack.com.evil.example/x", "not allowed"),
        ("https://hooks.slack.com./x", "not allowed"),
        ("https://evilhooks.slack.com/x", "not allowed"),
        ("ftp://hooks.slack.com/x", "https"),
        ("https:///x", "host"),
        ("https://hooks.slack.com:99999/x", "malformed"),
        ("https://hooks.slack.com\\@evil.example/x", "backslash"),
        ("https://hooks.slack.com/x y", "whitespace"),
        ("https://hooks.slack.com/" + "x" * 2000, "longer"),
        ("", "empty"),
    ],
)
def test_check_url_refusals(url: str, reason: str) -> None:
    with pytest.raises(NotifyError, match=reason) as caught:
        check_url(url, allowed_hosts=DEFAULT_ALLOWED_HOSTS)
    assert caught.value.permanent
    assert "/services" not in str(caught.value) and "/x" not in str(caught.value)


def test_check_url_suffix_entries_match_subdomains_only() -> None:
    allowed = frozenset({".example.com", "exact.example.org"})
    assert check_url("https://a.example.com/h", allowed_hosts=allowed)
    assert check_url("https://a.b.example.com/h", allowed_hosts=allowed)
    assert check_url("https://exact.example.org/h", allowed_hosts=allowed)
    for url in ("https://example.com/h", "https://badexample.com/h", "https://sub.exact.example.org/h"):
        with pytest.raises(NotifyError, match="not allowed"):
            check_url(url, allowed_hosts=allowed)


def test_check_url_http_only_to_listed_loopback() -> None:
    assert check_url("http://127.0.0.1:8080/h", allowed_hosts=frozenset({"127.0.0.1"}))
    assert check_url("http://localhost:8080/h", allowed_hosts=frozenset({"localhost"}))
    assert check_url("http://[::1]:8080/h", allowed_hosts=frozenset({"[::1]"}))
    assert check_url("https://127.0.0.1/h", allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(NotifyError, match="not allowed"):  # loopback, but not listed
        check_url("http://127.0.0.1:8080/h", allowed_hosts=DEFAULT_ALLOWED_HOSTS)
    with pytest.raises(NotifyError, match="https"):  # listed, but not loopback
        check_url("http://10.0.0.1/h", allowed_hosts=frozenset({"10.0.0.1"}))
    with pytest.raises(NotifyError, match="https"):  # a suffix entry never allows http
        check_url("http://a.localhost/h", allowed_hosts=frozenset({".localhost"}))


# --- post_slack ---------------------------------------------------------------


def _slack_error(handler: Handler) -> NotifyError:
    """The error ``post_slack`` raises posting to a receiver that answers with ``handler``."""

    async def run() -> NotifyError:
        async with serve(handler) as base:
            with pytest.raises(NotifyError) as caught:
                await post_slack(base + SECRET_PATH, _message(), timeout=5)
            return caught.value

    return asyncio.run(run())


def test_post_slack_sends_the_payload_as_json(caplog: pytest.LogCaptureFixture) -> None:
    received: list[tuple[str, str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((request.path, request.headers["Content-Type"], await request.json()))
        return web.Response(text="ok")

    async def run() -> None:
        async with serve(handler) as base:
            url = check_url(base + SECRET_PATH + "?q=hush", allowed_hosts=frozenset({"127.0.0.1"}))
            await post_slack(url, _message(), timeout=5)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    assert received == [(SECRET_PATH, "application/json", _message())]
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "127.0.0.1" in logged and "200" in logged
    assert "SECRETSECRET" not in logged and "hush" not in logged and "TOKEN" not in logged


@pytest.mark.parametrize(
    ("status", "body", "permanent"),
    [
        (500, "internal_error", False),
        (503, "", False),
        (408, "", False),
        (429, "rate_limited", False),
        (400, "invalid_payload", True),
        (403, "action_prohibited", True),
        (404, "no_service", True),
        (410, "channel_is_archived", True),
    ],
)
def test_post_slack_classifies_http_errors(status: int, body: str, permanent: bool) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body)

    error = _slack_error(handler)
    assert error.permanent is permanent
    assert error.status == status
    assert f"HTTP {status}" in str(error) and "127.0.0.1" in str(error)
    if body:
        assert f"({body})" in str(error)
    assert "SECRET" not in str(error)


def test_post_error_body_is_shown_only_when_it_looks_like_an_error_code() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=400, text=(await request.text())[:200])  # echoes the links

    error = _slack_error(handler)
    assert error.permanent and "TOKEN" not in str(error) and "(" not in str(error)


def test_post_connection_refused_is_retryable() -> None:
    with refused_port() as port, pytest.raises(NotifyError) as caught:
        asyncio.run(post_slack(f"http://127.0.0.1:{port}{SECRET_PATH}", _message(), timeout=5))
    assert not caught.value.permanent and caught.value.status is None
    assert "SECRET" not in str(caught.value) and caught.value.__cause__ is None


def test_post_timeout_is_retryable() -> None:
    async def run() -> NotifyError:
        release = asyncio.Event()

        async def handler(request: web.Request) -> web.Response:
            await release.wait()
            return web.Response(text="ok")

        async with serve(handler) as base:
            with pytest.raises(NotifyError) as caught:
                await post_slack(base + SECRET_PATH, _message(), timeout=0.2)
            release.set()
            return caught.value

    error = asyncio.run(run())
    assert not error.permanent and "timed out" in str(error)


def test_post_does_not_follow_redirects() -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/internal":
            return web.Response(text="ok")
        raise web.HTTPFound("/internal")

    async def run() -> NotifyError:
        async with serve(handler) as base:
            with pytest.raises(NotifyError) as caught:
                await post_json(base + "/hook", b"{}", timeout=5)
            return caught.value

    error = asyncio.run(run())
    assert error.permanent and error.status == 302
    assert hits == ["/hook"]
