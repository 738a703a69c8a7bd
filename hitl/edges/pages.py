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

from hitl.model.policy import MAX_COMMENT_CHARS  # the one limit, also the comment box's maxlength
from hitl.model.records import Decision, Verdict

__all__ = [
    "HEADERS",
    "MAX_COMMENT_CHARS",
    "conflict_page",
    "decision_page",
    "done_page",
    "error_page",
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
) -> str:
    """The page behind an emailed link: the request, a comment box, Approve and Reject.

    ``progress`` (from :func:`hitl.model.policy.progress`, plus ``approvers``: how many
    were asked) shows how many have decided when more than one approval counts.
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
