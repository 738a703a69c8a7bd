"""Approval requests as Slack messages, posted through an incoming webhook.

:func:`slack_message` is pure: it builds a Block Kit payload with the
subject, the details as ``key.sub: value`` lines, the deadline and two URL
buttons (Approve / Reject) carrying the signed links. :func:`post_slack`
posts it once and raises :class:`NotifyError` on failure; the durable step
that calls it owns retries.

An incoming-webhook URL is a secret (its path is the credential) and the
buttons carry signed links: neither is logged. Slack has no idempotency key
for incoming webhooks, so a crash between the post and the step's completion
can post a message twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from hitl.notify.post import post_json
from hitl.notify.urls import NotifyError, check_link, check_url, parse_deadline

__all__ = ["DEFAULT_ALLOWED_HOSTS", "NotifyError", "check_url", "escape", "post_slack", "slack_message"]

#: Where Slack's incoming webhooks live.
DEFAULT_ALLOWED_HOSTS = frozenset({"hooks.slack.com"})

#: Block Kit limits: a header's text, a section's text, blocks per message.
_HEADER_CHARS = 150
_SECTION_CHARS = 3000
#: Sections used for the details at most (Slack allows 50 blocks in all).
_MAX_DETAIL_SECTIONS = 10
_FALLBACK_CHARS = 300
#: Deeper parts of the details are shown as compact JSON.
_MAX_DEPTH = 8
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def escape(text: str) -> str:
    """``text`` safe inside Slack ``mrkdwn``: ``&``, ``<`` and ``>`` as entities.

    This is what keeps ``<!channel>``, ``<@U123>`` and ``<https://x|label>``
    in caller-supplied text from pinging anyone or disguising a link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(
    *,
    approver: str,
    subject: str,
    details: object,
    approve_url: str,
    reject_url: str,
    deadline_at_iso: str,
    reminder: bool = False,
    progress: str | None = None,
) -> dict[str, Any]:
    """The Block Kit payload asking ``approver`` to decide, for an incoming webhook.

    ``progress`` (e.g. ``"1 of 2 approvals so far"``) is shown under the
    deadline. Raises :class:`ValueError` on malformed links or deadline.
    """
    check_link("approve_url", approve_url)
    check_link("reject_url", reject_url)
    deadline = parse_deadline(deadline_at_iso)
    unix = int(deadline.timestamp())
    deadline_text = deadline.astimezone(UTC).strftime("%a %d %b %Y, %H:%M UTC")

    title = _one_line(subject)
    heading = f"Approval requested: {title}"
    if reminder:
        heading = f"Reminder: {heading}"
    who = _one_line(approver)

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip_plain(heading, _HEADER_CHARS), "emoji": False}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _clip(f"*{escape(title)}*", _SECTION_CHARS)},
        },
    ]
    blocks.extend({"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in _detail_sections(details))
    context = [
        # Slack renders <!date^...> in each reader's time zone; the text after | is the fallback.
        f"Respond by <!date^{unix}^{{date_short_pretty}} at {{time}}|{escape(deadline_text)}>",
        f"For {escape(who)}",
    ]
    if progress:
        context.append(escape(_one_line(progress)))
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(t, _SECTION_CHARS)} for t in context]}
    )
    blocks.append(
        {
            "type": "actions",
            "block_id": "hitl_decision",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "text": {"type": "plain_text", "text": "Approve", "emoji": False},
                    "style": "primary",
                    "url": approve_url,
                },
                {
                    "type": "button",
                    "action_id": "reject",
                    "text": {"type": "plain_text", "text": "Reject", "emoji": False},
                    "style": "danger",
                    "url": reject_url,
                },
            ],
        }
    )
    fallback = f"{heading} (for {who}, respond by {deadline_text})"
    return {"text": _clip(escape(fallback), _FALLBACK_CHARS), "blocks": blocks}


async def post_slack(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> None:
    """Post ``payload`` to the incoming webhook at ``url``, once.

    Call :func:`check_url` on ``url`` first. Raises :class:`NotifyError`:
    ``permanent`` for Slack's 4xx answers (``invalid_payload``,
    ``no_service``, ``channel_is_archived``...) except 408 and 429.
    """
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    await post_json(url, body, timeout=timeout, what="slack message")


# --- details ------------------------------------------------------------------


def _detail_sections(details: object) -> list[str]:
    """The details as escaped ``key.sub: value`` lines, packed into section texts."""
    lines = [_clip(escape(line), _SECTION_CHARS) for line in _lines(details)]
    sections: list[str] = []
    current: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        if current and size + 1 + len(line) > _SECTION_CHARS:
            sections.append("\n".join(current))
            current, size = [], 0
            if len(sections) == _MAX_DETAIL_SECTIONS:
                more = f"_… and {len(lines) - i} more_"
                last = _clip(sections[-1], _SECTION_CHARS - 1 - len(more))
                sections[-1] = f"{last}\n{more}"
                return sections
        size += len(line) + (1 if current else 0)
        current.append(line)
    if current:
        sections.append("\n".join(current))
    return sections


def _lines(details: object) -> list[str]:
    if details is None or (_is_container(details) and not details):
        return []
    if not _is_container(details):
        return [f"value: {_scalar(details)}"]
    out: list[str] = []
    _flatten(details, "", 0, out)
    return out


def _flatten(value: object, prefix: str, depth: int, out: list[str]) -> None:
    if isinstance(value, Mapping):
        items = [(_one_line(str(k)), v) for k, v in value.items()]
    else:
        assert isinstance(value, Sequence)
        items = [(str(i), v) for i, v in enumerate(value, start=1)]
    for key, item in items:
        path = f"{prefix}.{key}" if prefix else key
        if _is_container(item) and item and depth + 1 < _MAX_DEPTH:
            _flatten(item, path, depth + 1, out)
        else:
            out.append(f"{path}: {_scalar(item)}")


def _is_container(value: object) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
    )


def _scalar(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool | int | float) or _is_container(value):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return _CONTROL.sub(" ", text)


# --- text ---------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())


def _clip_plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(text: str, limit: int) -> str:
    """``text`` (escaped mrkdwn) cut to ``limit`` characters without splitting an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 4))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"
