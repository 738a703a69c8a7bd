"""The inbox as a signed-in approver meets it, in real headless Chromium.

The stack has approver sign-in on: the development sign-in (devstack.signin) asks
for an email where IAP would ask for a Google account, and forwards to unblock
with an assertion unblock verifies. The person signs in, sees what waits for
them, approves one request with a comment (it leaves the list), and the
request's result names the verified identity. Screenshots land in pytest's
basetemp (``screenshots/``), to be looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api import Api, Target, unique
from support.stacks import local_stack

from devstack.stack import Stack

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

from .conftest import new_context  # noqa: E402


@pytest.fixture(scope="module")
def stack(browser: sync_api.Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local stack with sign-in (after ``browser``: a missing browser skips before any process starts)."""
    yield from local_stack(tmp_path_factory, "browser-signin", sign_in=True)


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(Target.local(stack))


def ask(api: Api, approver: str, subject: str, **fields: Any) -> str:
    workflow_id = unique("inbox")
    body = api.request_body(workflow_id, approvers=[approver], subject=f"{subject} ({workflow_id})", **fields)
    assert api.start(body).status_code == 202, body
    api.wait_email(workflow_id, approver)
    return workflow_id


def sign_in(page: sync_api.Page, stack: Stack, email: str, shots: Path | None = None) -> None:
    page.goto(stack.unblock_url)
    expect(page.get_by_role("heading", name="Development sign-in")).to_be_visible()
    expect(page.get_by_text("For development only, never deployed.")).to_be_visible()
    if shots is not None:
        page.screenshot(path=shots / "signin.png", full_page=True)
    page.get_by_label("Sign in as (email)").fill(email)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Waiting for you", level=1)).to_be_visible()


def rows(page: sync_api.Page) -> list[str]:
    return page.locator("article.request h2").all_inner_texts()


def test_sign_in_see_what_waits_approve_one_with_a_comment(
    api: Api, stack: Stack, page: sync_api.Page, shots: Path
) -> None:
    me = f"{unique('carol')}@example.com"
    deploy = ask(api, me, "Deploy api v42 to production", deadline="2h", requester="ci: deploy pipeline")
    refund = ask(api, me, "Refund 1,200 EUR to order 881", deadline="1d", required=1)
    ask(api, "someone-else@example.com", "Not for carol")

    sign_in(page, stack, me, shots)
    expect(page.get_by_text(f"Signed in as {me}")).to_be_visible()
    assert [r.split(" (")[0] for r in rows(page)] == ["Deploy api v42 to production", "Refund 1,200 EUR to order 881"]
    expect(page.get_by_text("ci: deploy pipeline")).to_be_visible()
    assert page.get_by_text("Not for carol").count() == 0
    page.screenshot(path=shots / "inbox.png", full_page=True)

    first = page.locator("article.request").first
    first.get_by_label("Comment (optional)").fill("Go ahead, after the 14:00 freeze.")
    first.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("status")).to_contain_text("Recorded: you approved")
    assert [r.split(" (")[0] for r in rows(page)] == ["Refund 1,200 EUR to order 881"]
    expect(page.get_by_role("cell", name=f"Deploy api v42 to production ({deploy})")).to_be_visible()
    page.screenshot(path=shots / "inbox-after.png", full_page=True)

    result = api.wait_done(deploy)["result"]
    [vote] = result["decisions"]
    assert (result["decision"], result["by"], vote["comment"]) == (
        "approved", me, "Go ahead, after the 14:00 freeze.",
    )  # fmt: skip
    assert vote["identity"]["method"] == "iap" and vote["identity"]["email"] == me
    assert api.status(refund).json()["status"] == "pending"


def test_the_inbox_works_by_keyboard_alone_and_without_javascript(
    api: Api, stack: Stack, browser: sync_api.Browser, shots: Path
) -> None:
    me = f"{unique('dave')}@example.com"
    wf = ask(api, me, "Open firewall port 8443")
    context = new_context(browser, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, stack, me)
        page.keyboard.press("Tab")  # the subject's link, then the switch link... until the comment box
        for _ in range(10):
            if page.evaluate("() => document.activeElement.tagName") == "TEXTAREA":
                break
            page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.tagName") == "TEXTAREA"
        page.keyboard.type("No: use the bastion (keyboard only)")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")  # past Approve, to Reject
        assert page.evaluate("() => document.activeElement.textContent") == "Reject"
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("Recorded: you rejected")
        assert rows(page) == []
        expect(page.get_by_text("Nothing waits for your decision.")).to_be_visible()
    finally:
        context.close()
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["comment"]) == ("rejected", "No: use the bastion (keyboard only)")


def test_the_inbox_on_a_phone(api: Api, stack: Stack, browser: sync_api.Browser, shots: Path) -> None:
    me = f"{unique('erin')}@example.com"
    ask(api, me, "Grant prod read access to contractor", requester="access-bot")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, stack, me)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the inbox scrolls sideways on a phone ({width}px)"
        expect(page.get_by_role("button", name="Approve")).to_be_visible()
        page.screenshot(path=shots / "inbox-phone.png", full_page=True)
    finally:
        context.close()
