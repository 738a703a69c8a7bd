"""Fixtures for the browser tests: headless Chromium driven by Playwright, and a stack.

Chromium is Debian's (``scripts/install_browser.sh`` installs it); Playwright never
downloads a browser here, it is given the binary's path. When the binary or the
``playwright`` package is missing, every test here is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.api import Api, Target
from support.stacks import targets

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

#: The browser binary (override with ``HITL_CHROMIUM``).
CHROMIUM = os.environ.get("HITL_CHROMIUM", "/usr/bin/chromium")

#: The network is closed: no background traffic, no GPU, no sandbox (root in CI).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

#: Milliseconds any single browser action or wait may take.
ACTION_TIMEOUT_MS = 15_000


# Module scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it lives, and every later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: run scripts/install_browser.sh (or set HITL_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the module. Playwright starts it with a fresh, temporary
    ``--user-data-dir`` of its own and removes it on close."""
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


def new_context(browser: Browser, **options) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1024, "height": 768}, locale="en-US", timezone_id="UTC", **options)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    c = new_context(browser)
    yield c
    c.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="module")
def target(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A deployment when ``HITL_START_URL`` is set (links minted with the key), else a local
    stack as real processes. Depends on ``browser`` so a missing browser skips before any
    process starts."""
    yield from targets(tmp_path_factory, "browser-stack")


@pytest.fixture
def api(target: Target) -> Api:
    return Api(target)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a test puts its screenshots (kept under pytest's basetemp for inspection)."""
    d = tmp_path / "screenshots"
    d.mkdir()
    return d
