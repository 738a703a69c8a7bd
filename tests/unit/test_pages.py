from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import pytest

from hitl.edges.pages import (
    HEADERS,
    MAX_COMMENT_CHARS,
    MAX_TABLE_DEPTH,
    conflict_page,
    decision_page,
    done_page,
    error_page,
)
from hitl.model.records import Decision

XSS = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
APPROVE = "YXBwcm92ZQ.approve-signature"
REJECT = "cmVqZWN0.reject-signature"
DECIDED = Decision("approved", "alice@example.com", "Looks good.\nShip it.", "2026-11-23T10:00:00Z")


class Page(HTMLParser):
    """The elements of a page, in document order, with their attributes and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self._skip:  # only what is shown on the page
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.elements if t == tag]

    def one(self, tag: str) -> dict[str, str | None]:
        (attrs,) = self.all(tag)
        return attrs

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def render_decision(**changes: Any) -> str:
    args: dict[str, Any] = {
        "subject": "Deploy v42",
        "details": {},
        "approver": "alice@example.com",
        "deadline_at_iso": "2026-11-30T10:00:00Z",
        "approve_token": APPROVE,
        "reject_token": REJECT,
        "action_url": "https://unblock.example/",
    }
    return decision_page(**{**args, **changes})


def test_decision_form_works_without_javascript() -> None:
    page = Page(render_decision())
    form = page.one("form")
    assert form["method"] == "post" and form["action"] == "https://unblock.example/"
    textarea = page.one("textarea")
    assert textarea["name"] == "comment" and textarea["id"] == "comment"
    assert textarea["maxlength"] == str(MAX_COMMENT_CHARS)
    assert page.one("label")["for"] == "comment"
    buttons = page.all("button")
    assert [(b["type"], b["name"], b["value"]) for b in buttons] == [
        ("submit", "token", APPROVE),
        ("submit", "token", REJECT),
    ]
    assert "Approve" in page.words and "Reject" in page.words
    assert not page.all("script")


def test_tokens_appear_only_as_button_values() -> None:
    html = render_decision()
    assert html.count(APPROVE) == 1 and html.count(REJECT) == 1
    assert f'value="{APPROVE}"' in html and f'value="{REJECT}"' in html


def test_decision_page_shows_request() -> None:
    page = Page(render_decision())
    assert page.one("h1") is not None
    assert "Deploy v42" in page.words
    assert "alice@example.com" in page.words
    assert page.one("time")["datetime"] == "2026-11-30T10:00:00Z"
    assert "30 Nov 2026, 10:00 UTC" in page.words
    assert not page.all("table")  # empty details: no section


def test_pages_are_accessible_and_self_contained() -> None:
    pages = [
        render_decision(details={"a": 1}),
        done_page(DECIDED),
        conflict_page(DECIDED),
        error_page(404, "Not found", "No such request."),
    ]
    for html in pages:
        page = Page(html)
        assert page.one("html")["lang"] == "en"
        assert page.one("main") == {}
        assert page.one("h1") == {}
        assert page.one("title") == {}
        assert {"name": "referrer", "content": "no-referrer"} in page.all("meta")
        assert not page.all("script") and not page.all("link") and not page.all("img")
        assert "src=" not in html and "href=" not in html and "url(" not in html
        assert ":focus-visible" in html


def test_details_render_as_nested_tables() -> None:
    details = {
        "version": "v42",
        "replicas": 3,
        "canary": True,
        "owner": None,
        "changes": [{"id": 7, "title": "Fix"}, "plain"],
        "empty": {},
    }
    page = Page(render_decision(details=details))
    assert len(page.all("table")) == 3  # details, changes, changes[1]
    rows = [attrs for tag, attrs in page.elements if tag == "th"]
    assert all(r == {"scope": "row"} for r in rows)
    words = page.words
    for fragment in [
        "version v42",
        "replicas 3",
        "canary true",
        "owner null",
        "1 id 7 title Fix",
        "2 plain",
        "empty (empty)",
    ]:
        assert fragment in words


@pytest.mark.parametrize("details", ["just text", 42, [1, 2]])
def test_details_of_any_json_type(details: Any) -> None:
    page = Page(render_decision(details=details))
    assert "Details" in page.words


def test_very_deep_details_fall_back_to_json_text() -> None:
    deep: Any = "bottom"
    for _ in range(MAX_TABLE_DEPTH + 10):
        deep = [deep]
    page = Page(render_decision(details=deep))
    assert len(page.all("table")) == MAX_TABLE_DEPTH
    assert '[[[[[[[[[["bottom"]]]]]]]]]]' in page.words  # the 10 levels left


def test_decision_page_escapes_everything() -> None:
    html = render_decision(
        subject=XSS,
        details={XSS: XSS, "list": [XSS]},
        approver=XSS,
        action_url='https://x/"><script>',
    )
    assert "<script" not in html and "<img" not in html
    page = Page(html)
    assert XSS in page.words
    assert page.one("form")["action"] == 'https://x/"><script>'
    assert page.one("title") == {}


@pytest.mark.parametrize("render", [done_page, conflict_page])
def test_decision_summaries_escape_everything(render: Any) -> None:
    decision = Decision("rejected", XSS, XSS, XSS)
    html = render(decision, subject=XSS)
    assert "<script" not in html and "<img" not in html
    assert Page(html).words.count(XSS) >= 3


def test_done_page() -> None:
    page = Page(done_page(DECIDED, subject="Deploy v42"))
    assert "Approved" in page.text
    words = page.words
    for fragment in [
        "alice@example.com",
        "23 Nov 2026, 10:00 UTC",
        "Deploy v42",
        "Looks good. Ship it.",
    ]:
        assert fragment in words
    assert page.one("time")["datetime"] == "2026-11-23T10:00:00Z"
    assert not page.all("form")


def test_done_page_without_comment() -> None:
    page = Page(done_page(replace(DECIDED, decision="rejected", comment="")))
    assert "Rejected" in page.text and "Comment" not in page.words


def test_conflict_page_shows_the_first_decision() -> None:
    words = Page(conflict_page(DECIDED)).words
    assert "Already decided" in words
    assert "already approved by alice@example.com" in words
    assert "23 Nov 2026, 10:00 UTC" in words


def test_conflict_page_after_expiry() -> None:
    expired = Decision("expired", None, "", "2026-11-30T10:00:00Z")
    words = Page(conflict_page(expired)).words
    assert "expired" in words and "Expired" in words and "By" not in words


def test_error_page() -> None:
    page = Page(error_page(403, "Link expired", "Ask for a <new> link."))
    assert page.words.startswith("Link expired")  # the title
    assert "Ask for a <new> link." in page.words and "403" in page.words


def test_unparseable_time_is_shown_as_given() -> None:
    assert "soon" in Page(render_decision(deadline_at_iso="soon")).words


def test_headers_keep_tokens_private() -> None:
    assert HEADERS["Referrer-Policy"] == "no-referrer"
    assert HEADERS["Cache-Control"] == "no-store"
    assert HEADERS["Content-Type"].startswith("text/html")


def test_durations_read_as_people_say_them() -> None:
    from hitl.edges.pages import relative

    assert [relative(ms) for ms in (0, 59_000, 7_140_000, -3 * 86_400_000, 90_000)] == [
        "now", "now", "in 2 hours", "3 days ago", "in 2 minutes",
    ]  # fmt: skip
