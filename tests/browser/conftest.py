"""Browser tests: Debian's Chromium, driven by Playwright, against the app running for real.

pytest-django's `live_server` serves the app (static files included) from a thread of this
process, so the `settings` fixture and the fake Anthropic server reach it. One Chromium per
run of this package and a fresh browser context (cookies, storage) per test.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.support import ConsoleLog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
LAPTOP = {"width": 1280, "height": 860}


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        # Never a silent skip: `make test` installs Chromium first (scripts/ensure-chromium).
        pytest.fail(f"The browser tests need Chromium at {CHROMIUM}: run scripts/ensure-chromium.", pytrace=False)
    # Playwright's sync API keeps an event loop running in this thread, so Django would refuse
    # ORM calls from the test body. Tests only; restored once this package's tests are done.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    ctx.set_default_timeout(8000)
    yield ctx
    ctx.close()


@pytest.fixture
def console(context: BrowserContext) -> ConsoleLog:
    """Errors logged by any page of this test's context (console errors, uncaught exceptions, CSP)."""
    return ConsoleLog(context)


@pytest.fixture
def page(context: BrowserContext, console: ConsoleLog) -> Iterator[Page]:
    page = context.new_page()
    yield page
    # Every journey also proves journey 8 for the pages it visited.
    assert console.errors == [], f"browser console errors: {console.errors}"


@pytest.fixture
def page_without_script(browser: Browser) -> Iterator[Page]:
    """A page in a browser with JavaScript turned off: the console as plain forms and full page loads."""
    ctx = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC", java_script_enabled=False)
    ctx.set_default_timeout(8000)
    yield ctx.new_page()
    ctx.close()


@pytest.fixture
def app(live_server, fake_anthropic, world):
    """The running app with its world, pointed at the fake Anthropic server."""
    yield live_server
    # A test that failed while the fake held a stream open must not leave the server waiting.
    fake_anthropic.release.set()
