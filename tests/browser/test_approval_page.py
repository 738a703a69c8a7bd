"""The approval page as a person meets it: the emailed link opened in real headless Chromium.

Each test starts its own workflow on one shared stack, opens the link from the captured
email, acts only through the page (mouse, keyboard, no JavaScript) and checks the
outcome through the status API. Accessibility checks run in the browser: accessible
names from Chromium's own accessibility tree, focus order from real Tab presses,
contrast from ``getComputedStyle``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support.api import Api, unique

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

from .conftest import new_context  # noqa: E402

#: A request whose details nest objects and lists, to be shown as nested tables.
DETAILS: dict[str, Any] = {
    "service": "api",
    "version": "v42",
    "changes": ["faster login", "fix #1234"],
    "rollout": {"regions": ["europe-west1", "us-central1"], "canary": {"percent": 5, "duration": "30m"}},
    "risky": False,
}
#: The same, as the page's tables read back (lists are numbered rows; scalars are JSON text).
DETAILS_AS_TABLE: dict[str, Any] = {
    "service": "api",
    "version": "v42",
    "changes": {"1": "faster login", "2": "fix #1234"},
    "rollout": {"regions": {"1": "europe-west1", "2": "us-central1"}, "canary": {"percent": "5", "duration": "30m"}},
    "risky": "false",
}

#: WCAG 2.x AA: normal text 4.5:1 (1.4.3); the boundary of a form control 3:1 (1.4.11).
TEXT_CONTRAST = 4.5
UI_CONTRAST = 3.0


def start(api: Api, **fields: Any) -> tuple[str, str, dict[str, str]]:
    """Start a request; answer its id, subject and emailed links."""
    workflow_id = unique("browser")
    subject = f"Deploy api v42 to production ({workflow_id})"
    r = api.start(api.request_body(workflow_id, subject=subject, details=DETAILS, **fields))
    assert r.status_code == 202, r.text
    return workflow_id, subject, api.wait_email(workflow_id)


# -- colour contrast ---------------------------------------------------------------------

_RGB = re.compile(r"rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)")

type RGBA = tuple[float, float, float, float]


def parse_color(css: str) -> RGBA:
    m = _RGB.fullmatch(css.strip())
    assert m, f"unexpected computed colour {css!r}"
    r, g, b, a = m.groups()
    alpha = 1.0 if a is None else (float(a[:-1]) / 100 if a.endswith("%") else float(a))
    return float(r), float(g), float(b), alpha


def over(top: RGBA, below: tuple[float, float, float]) -> tuple[float, float, float]:
    """``top`` composited over the opaque colour ``below``."""
    a = top[3]
    return tuple(a * t + (1 - a) * b for t, b in zip(top[:3], below, strict=True))  # type: ignore[return-value]


def luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG relative luminance of an sRGB colour (0-255 channels)."""

    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_luminance_helper() -> None:
    white, black = (255.0, 255.0, 255.0), (0.0, 0.0, 0.0)
    assert contrast(white, black) == pytest.approx(21.0)
    assert contrast(white, white) == pytest.approx(1.0)
    assert contrast((118.0, 118.0, 118.0), white) == pytest.approx(4.54, abs=0.01)  # #767676, the classic AA grey
    assert over((0.0, 0.0, 0.0, 0.5), white) == (127.5, 127.5, 127.5)
    assert parse_color("rgba(1, 2, 3, 0)") == (1, 2, 3, 0)


#: For every visible element with its own text (and every button): its text colour and the
#: background colours from it up to <html>, with anything that would defeat the computation.
_TEXT_COLOURS_JS = """
() => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (!own && el.tagName !== 'BUTTON') continue;
    if (!el.getClientRects().length) continue;
    const bgs = [];
    let images = [];
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      bgs.push(s.backgroundColor);
      if (s.backgroundImage !== 'none') images.push(e.tagName);
    }
    const s = getComputedStyle(el);
    out.push({what: el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' "' + el.textContent.trim().slice(0, 30) + '"',
              color: s.color, opacity: s.opacity, bgs, images});
  }
  return out;
}
"""


def text_contrasts(page: sync_api.Page) -> list[tuple[str, float]]:
    """(element, contrast ratio of its text against what is behind it) for the page as shown."""
    results = []
    for item in page.evaluate(_TEXT_COLOURS_JS):
        assert not item["images"], f"{item['what']}: background image on {item['images']}, contrast not computable"
        assert item["opacity"] == "1", f"{item['what']}: opacity {item['opacity']}"
        behind = (255.0, 255.0, 255.0)  # the canvas
        for css in reversed(item["bgs"]):  # from <html> down to the element
            behind = over(parse_color(css), behind)
        results.append((item["what"], contrast(over(parse_color(item["color"]), behind), behind)))
    return results


def assert_contrast(page: sync_api.Page, state: str) -> list[tuple[str, float]]:
    ratios = text_contrasts(page)
    assert ratios, "no text found"
    low = [(what, round(r, 2)) for what, r in ratios if r < TEXT_CONTRAST]
    assert not low, f"text below {TEXT_CONTRAST}:1 ({state}): {low}"
    return ratios


# -- accessibility helpers ----------------------------------------------------------------

_CONTROL_ROLES = {
    "textbox",
    "button",
    "checkbox",
    "radio",
    "combobox",
    "listbox",
    "spinbutton",
    "slider",
    "switch",
    "searchbox",
}


def accessibility_tree(page: sync_api.Page) -> list[dict[str, Any]]:
    """Chromium's own accessibility tree (the names a screen reader would announce)."""
    session = page.context.new_cdp_session(page)
    try:
        return session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()


def named_controls(page: sync_api.Page) -> dict[str, list[str]]:
    """role -> accessible names of the page's form controls; an unnamed one fails."""
    controls: dict[str, list[str]] = {}
    for node in accessibility_tree(page):
        role = node.get("role", {}).get("value")
        if node.get("ignored") or role not in _CONTROL_ROLES:
            continue
        name = (node.get("name") or {}).get("value", "").strip()
        assert name, f"a {role} has no accessible name: {node}"
        controls.setdefault(role, []).append(name)
    return controls


def focused(page: sync_api.Page) -> str:
    """The focused element, as ``tag#id`` or ``tag "text"``."""
    return page.evaluate(
        """() => { const e = document.activeElement;
                   if (!e || e === document.body) return 'body';
                   return e.tagName.toLowerCase() + (e.id ? '#' + e.id : ' "' + e.textContent.trim() + '"'); }"""
    )


def tab_order(page: sync_api.Page, limit: int = 30) -> list[str]:
    """What Tab visits, from the top of the page until focus leaves it."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    order: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if now == "body" or (order and now == order[0]):
            break
        order.append(now)
    return order


def assert_page_structure(page: sync_api.Page) -> None:
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.locator("h1").count() == 1
    assert page.title().strip()
    viewport = page.evaluate("() => document.querySelector('meta[name=viewport]')?.content || ''")
    assert "width=device-width" in viewport


def read_details(page: sync_api.Page) -> Any:
    """The details section's tables read back into nested dicts (cell text for leaves)."""
    return page.evaluate(
        """() => {
          const read = cell => {
            const t = cell.querySelector(':scope > table');
            if (!t) return cell.textContent.trim();
            const o = {};
            for (const row of t.querySelectorAll(':scope > tbody > tr, :scope > tr'))
              o[row.querySelector(':scope > th').textContent.trim()] = read(row.querySelector(':scope > td'));
            return o;
          };
          const section = document.querySelector('section[aria-labelledby=details-heading]');
          return section ? read(section) : null;
        }"""
    )


# -- the tests ----------------------------------------------------------------------------


def test_reject_with_a_comment(api: Api, page: sync_api.Page, shots: Path) -> None:
    workflow_id, subject, links = start(api)
    page.goto(links["reject"])

    expect(page.locator("h1")).to_have_text(subject)
    expect(page.get_by_role("heading", name="Details")).to_be_visible()
    assert read_details(page) == DETAILS_AS_TABLE
    assert page.locator("section table table table").count() == 2  # rollout > regions, rollout > canary
    expect(page.get_by_text("alice@example.com")).to_be_visible()
    page.screenshot(path=shots / "decision.png", full_page=True)

    page.get_by_label("Comment (optional)").fill("Not during the freeze, please.")
    page.get_by_role("button", name="Reject").click()

    expect(page.locator("h1")).to_have_text("Rejected")
    expect(page.get_by_role("status")).to_have_text("Thank you: your decision was recorded.")
    expect(page.locator("dd.comment")).to_have_text("Not during the freeze, please.")
    page.screenshot(path=shots / "done.png", full_page=True)

    result = api.wait_done(workflow_id)["result"]
    assert result["decision"] == "rejected"
    assert result["comment"] == "Not during the freeze, please."
    assert result["by"] == "alice@example.com"

    # The link again, after the decision: the page says so and offers no buttons.
    page.goto(links["approve"])
    assert page.get_by_role("button").count() == 0
    expect(page.locator("h1")).to_contain_text(re.compile("decided|rejected", re.I))
    page.screenshot(path=shots / "after.png", full_page=True)


def test_keyboard_only_approves(api: Api, page: sync_api.Page) -> None:
    workflow_id, _, links = start(api)
    page.goto(links["approve"])

    page.keyboard.press("Tab")
    assert focused(page) == "textarea#comment"
    page.keyboard.type("Ship it (keyboard only)")
    page.keyboard.press("Tab")
    assert focused(page) == 'button "Approve"'
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused button shows no focus indicator"
    page.keyboard.press("Enter")

    expect(page.locator("h1")).to_have_text("Approved")
    expect(page.get_by_role("status")).to_have_text("Thank you: your decision was recorded.")
    result = api.wait_done(workflow_id)["result"]
    assert result["decision"] == "approved"
    assert result["comment"] == "Ship it (keyboard only)"


def test_works_without_javascript(api: Api, browser: sync_api.Browser, shots: Path) -> None:
    context = new_context(browser, java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_content("<p id=x>off</p><script>document.getElementById('x').textContent = 'on'</script>")
        assert page.inner_text("#x") == "off", "JavaScript is not disabled"

        workflow_id, subject, links = start(api)
        page.goto(links["approve"])
        expect(page.locator("h1")).to_have_text(subject)
        assert read_details(page) == DETAILS_AS_TABLE
        page.get_by_label("Comment (optional)").fill("Fine by me.\nSecond line, naïve ✓")
        page.get_by_role("button", name="Approve").click()

        expect(page.locator("h1")).to_have_text("Approved")
        page.screenshot(path=shots / "done-nojs.png", full_page=True)
        result = api.wait_done(workflow_id)["result"]
        assert result["decision"] == "approved"
        # A browser submits a textarea's line breaks as CRLF (HTML's form encoding).
        assert result["comment"].replace("\r\n", "\n") == "Fine by me.\nSecond line, naïve ✓"
    finally:
        context.close()


def test_accessibility(api: Api, page: sync_api.Page, shots: Path) -> None:
    workflow_id, _, links = start(api)
    page.goto(links["approve"])

    assert_page_structure(page)
    assert named_controls(page) == {"textbox": ["Comment (optional)"], "button": ["Approve", "Reject"]}
    assert (
        page.locator("textarea, input:not([type=hidden]), select").evaluate_all(
            "els => els.filter(e => !e.labels || !e.labels.length).map(e => e.outerHTML)"
        )
        == []
    ), "a form control without a <label>"
    assert tab_order(page) == ["textarea#comment", 'button "Approve"', 'button "Reject"']

    ratios = assert_contrast(page, "at rest")
    assert any(what.startswith("button.approve") for what, _ in ratios)
    assert any(what.startswith("button.reject") for what, _ in ratios)
    for name in ("Approve", "Reject"):
        page.get_by_role("button", name=name).hover()
        assert_contrast(page, f"hovering {name}")
    page.mouse.move(0, 0)

    # The comment box's border and the focus ring stand out from the white card (3:1).
    border = page.evaluate("() => getComputedStyle(document.querySelector('#comment')).borderTopColor")
    white = (255.0, 255.0, 255.0)
    assert contrast(over(parse_color(border), white), white) >= UI_CONTRAST
    page.keyboard.press("Tab")
    ring = page.evaluate("() => getComputedStyle(document.activeElement).outlineColor")
    assert contrast(over(parse_color(ring), white), white) >= UI_CONTRAST

    # Reflow (WCAG 1.4.10): at 320 CSS px nothing scrolls sideways.
    page.set_viewport_size({"width": 320, "height": 640})
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.screenshot(path=shots / "narrow.png", full_page=True)

    # The confirmation page too.
    page.set_viewport_size({"width": 1024, "height": 768})
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("h1")).to_have_text("Approved")
    assert_page_structure(page)
    assert_contrast(page, "confirmation")
    assert api.wait_done(workflow_id)["result"]["decision"] == "approved"


# -- page problems found by these tests, fixed -------------------------------------------


def test_multiline_comment_at_maxlength_is_accepted(api: Api, page: sync_api.Page) -> None:
    workflow_id, _, links = start(api)
    page.goto(links["approve"])
    box = page.get_by_label("Comment (optional)")
    maxlength = int(box.get_attribute("maxlength") or 0)
    text = "x\n" * (maxlength // 2 - 1) + "xx"  # exactly maxlength characters, as the browser counts
    box.fill(text)
    assert box.evaluate("e => e.value.length") == maxlength
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("h1")).to_have_text("Approved")
    assert api.wait_done(workflow_id)["result"]["comment"] == text


#: Row headers (keys) of the details whose single word the browser split across lines.
_BROKEN_KEYS_JS = """
() => [...document.querySelectorAll('section th')].filter(th => {
  const text = th.textContent.trim();
  if (/[\\s-]/.test(text)) return false;
  const range = document.createRange();
  range.selectNodeContents(th);
  return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
}).map(th => th.textContent.trim())
"""


@pytest.mark.parametrize("width", [1024, 320])
def test_detail_keys_are_not_broken_mid_word(api: Api, page: sync_api.Page, width: int) -> None:
    _, _, links = start(api)
    page.set_viewport_size({"width": width, "height": 768})
    page.goto(links["approve"])
    assert page.evaluate(_BROKEN_KEYS_JS) == []
