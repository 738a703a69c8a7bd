"""The HTML pages approvers see, rendered from ``hitl/edges/templates/page_*.html``.

Every page is self-contained (inline CSS, no script, no external resource),
works without JavaScript, and is autoescaped. Link tokens appear only as the
values of the decision form's two buttons; serve every page with
:data:`HEADERS` so the URL that carried the token is not leaked as a
``Referer`` nor kept in a shared cache.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from hitl.model.policy import MAX_COMMENT_CHARS  # the one limit, also the comment box's maxlength
from hitl.model.records import Canceled, Closed, Decision, Expired, Invalid, Verdict, Vote

__all__ = [
    "HEADERS",
    "MAX_COMMENT_CHARS",
    "conflict_page",
    "decision_page",
    "done_page",
    "error_page",
    "inbox_page",
    "response",
    "signin_page",
    "wrong_account_page",
]

#: Response headers for every page.
HEADERS: Mapping[str, str] = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
    ),
}

#: Deeper parts of ``details`` are shown as compact JSON text.
MAX_TABLE_DEPTH = 32

_LABELS: dict[Verdict, str] = {
    "approved": "Approved",
    "rejected": "Rejected",
    "expired": "Expired",
    "canceled": "Canceled",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: A details node: text, or the rows (key, node) of a table.
type _Node = str | list[tuple[str, _Node]]


def decision_page(
    *,
    subject: str,
    details: Any,
    approver: str,
    deadline_at_iso: str,
    approve_token: str,
    reject_token: str,
    action_url: str,
    progress: Mapping[str, Any] | None = None,
    signed_in: str | None = None,
) -> str:
    """The page behind an emailed link: the request, a comment box, Approve and Reject.

    ``progress`` (from :func:`hitl.model.policy.progress`, plus ``approvers``: how many
    were asked) shows how many have decided when more than one approval counts.
    ``signed_in``: the account the person is signed in with (sign-in on).
    """
    return _render(
        "page_decision.html",
        title=subject,
        subject=subject,
        details=None if details in ({}, [], None, "") else _node(details, 0),
        approver=approver,
        deadline=_when(deadline_at_iso),
        approve_token=approve_token,
        reject_token=reject_token,
        action_url=action_url,
        max_comment=MAX_COMMENT_CHARS,
        progress=progress,
        signed_in=signed_in,
    )


def done_page(decision: Decision, *, subject: str | None = None) -> str:
    """The confirmation after a decision was recorded."""
    summary = _summary(decision)
    return _render("page_done.html", title=summary["label"], summary=summary, subject=subject)


def conflict_page(decision: Decision, *, subject: str | None = None, refused: bool = False) -> str:
    """The answer (409) for a request that was already decided (or expired); ``refused``
    when it answers a submitted decision that therefore did not count."""
    return _render(
        "page_conflict.html", title="Already decided", summary=_summary(decision), subject=subject, refused=refused
    )


def error_page(status: int, title: str, message: str) -> str:
    """Any other failure: 400, 403 (invalid or expired link), 404, 503..."""
    return _render("page_error.html", title=title, status=status, message=message)


def inbox_page(
    *,
    signed_in: str,
    switch: str,
    action_url: str,
    pending: list[dict[str, Any]],
    ended: list[dict[str, Any]],
    more: bool,
    notice: str | None,
    recent_days: int,
) -> str:
    """The signed-in person's inbox: what waits for them (each with Approve and Reject, as its
    link's page has), then what ended lately. Rows are prepared by the edge (tokens, times)."""
    return _render(
        "page_inbox.html", title="Waiting for you", signed_in=signed_in, switch=switch, action_url=action_url,
        pending=pending, ended=ended, more=more, notice=notice, recent_days=recent_days, max_comment=MAX_COMMENT_CHARS,
    )  # fmt: skip


def when(at_ms: int) -> dict[str, str]:
    """An instant (ms) for :func:`time` in the templates."""
    return _when(datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def relative(delta_ms: int) -> str:
    """A duration as people say it: ``in 3 hours``, ``2 days ago``, ``now``."""
    seconds = abs(delta_ms) // 1000
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)  # 1 h 59 min is "2 hours", not "1 hour"
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if delta_ms > 0 else f"{text} ago"
    return "now"


def outcome(state: Any, approver: str) -> str:
    """How a request ended for an approver, in words, from what their vote (entry) holds."""
    if isinstance(state, Vote):
        return f"You {state.decision}" if state.by == approver else f"{state.decision.capitalize()} by {state.by}"
    if isinstance(state, Closed):
        d = state.outcome
        return _LABELS[d.decision] + (f" by {d.by}" if d.by else "")
    if isinstance(state, Expired):
        return "Expired"
    if isinstance(state, Canceled):
        return f"Canceled by {state.by}" + (f": {state.reason}" if state.reason else "")
    if isinstance(state, Invalid):
        return "Closed"
    return "Ended"


def signin_page() -> str:
    """401: sign-in is on, and this request carries no verified sign-in."""
    return _render("page_signin.html", title="Sign in to continue")


def wrong_account_page(*, signed_in: str, approver: str, switch: str) -> str:
    """403: signed in, but not as the approver the link was made for (``switch``: the sign-out URL)."""
    return _render(
        "page_wrong_account.html", title="Sent to someone else", signed_in=signed_in, approver=approver, switch=switch
    )


def response(status: int, html: str, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """A page as an answer: :data:`HEADERS`, and never framed."""
    return HTMLResponse(html, status_code=status, headers={**HEADERS, "X-Frame-Options": "DENY", **(headers or {})})


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hitl.edges", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _node(value: Any, depth: int) -> _Node:
    if isinstance(value, dict | list) and depth >= MAX_TABLE_DEPTH:
        return json.dumps(value, ensure_ascii=False, separators=(",", ": "))
    if isinstance(value, dict):
        return [(str(k), _node(v, depth + 1)) for k, v in value.items()]
    if isinstance(value, list):
        return [(str(i), _node(v, depth + 1)) for i, v in enumerate(value, 1)]
    if isinstance(value, str):
        return value
    return json.dumps(value)  # numbers, true, false, null


def _when(iso: str) -> dict[str, str]:
    """An ISO-8601 instant for ``<time>``: machine-readable and human-readable."""
    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return {"iso": str(iso), "text": str(iso)}
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    text = f"{t.day} {_MONTHS[t.month - 1]} {t.year}, {t:%H:%M} UTC"
    return {"iso": iso, "text": text}


def _summary(decision: Decision) -> dict[str, Any]:
    return {
        "outcome": decision.decision,
        "label": _LABELS[decision.decision],
        "by": decision.by or None,
        "when": _when(decision.decided_at or ""),
        "comment": decision.comment,
    }
