"""What the browser tests share: signing in, the console and network logs, axe-core, screenshots."""

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page, Response, expect

from tests.base import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
MASK = "sk-ant-••••••••••••••••"
PHONE = {"width": 390, "height": 844}
# Content wider than a phone or a printed page: an address, a link and an answer holding a long word, code and a table.
LONG_EMAIL = "alexandra.konstantinou@acmedigitalassets.test"
LONG_URL = "https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX%3A32023R1114&qid=1700000000000#d1e40-1-1"
WIDE_ANSWER = (
    "## Sources\n\n"
    f"See {LONG_URL} and `reserve_assets_per_token_in_circulation_ratio_threshold`.\n\n"
    "```python\nreserve_ratio = compute_reserve_ratio(reserve_assets=reserve_assets_in_euro, tokens=issued)\n```\n\n"
    "| Article | Obligation | Competent authority | Deadline | Notes |\n|---|---|---|---|---|\n"
    "| Article 36 | Reserve of assets held by issuers of asset-referenced tokens | National competent authority of "
    f"the home Member State | Continuously | Monthly independent audits, published at {LONG_URL} |\n"
)
_FAILED_LOAD = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")
_axe = Axe()


def sign_in(page: Page, base_url: str, email: str) -> None:
    """Sign in through the real form, as a person would."""
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # The landing page's scripts (deferred) have run: a click now is the enhanced page's, not a plain post.
    page.wait_for_load_state("load")


def create_token(page: Page, base_url: str, email: str, name: str = "Nightly export") -> None:
    """Sign in as `email` and create an API token named `name` in Acme's Settings; the page then shows it once."""
    sign_in(page, base_url, email)
    page.goto(f"{base_url}/orgs/acme/settings/")
    page.get_by_label("Token name").fill(name)
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()


@dataclass
class ConsoleLog:
    """Console errors, uncaught exceptions and CSP violations from every page of a context.

    Chromium reports a CSP violation as a console error, so the CSP is covered by the same list.
    A response the app sends on purpose with an error status (a 400 re-render, a 429 answer to
    `fetch`) also logs "Failed to load resource"; a test names those it expects with `allow`.
    """

    context: BrowserContext
    errors: list[str] = field(default_factory=list)
    allowed_statuses: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught exception: {exc}"))

    def allow(self, status: int) -> None:
        self.allowed_statuses.add(status)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        failed = _FAILED_LOAD.match(message.text)
        if failed and int(failed.group(1)) in self.allowed_statuses:
            return
        self.errors.append(f"{message.text} [{message.location.get('url', '')}]")


@dataclass
class Received:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes | None


class NetworkLog:
    """Every response the page received, with its headers and body, read as it arrives."""

    def __init__(self, page: Page) -> None:
        self.responses: list[Received] = []
        page.on("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        try:
            body = response.body()
        except Error:
            body = None  # redirects have no body; their headers are still checked
        self.responses.append(Received(response.url, response.status, response.all_headers(), body))

    def containing(self, secret: str) -> list[str]:
        needle = secret.encode()
        return [
            r.url
            for r in self.responses
            if needle in (r.body or b"") or any(secret in value for value in r.headers.values())
        ]


def assert_no_accessibility_violations(page: Page) -> None:
    """No axe-core violation of moderate impact or more (minor ones are best practice, not barriers)."""
    violations = _axe.run(page).response["violations"]
    barriers = [v for v in violations if v["impact"] in ("moderate", "serious", "critical")]
    report = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']]}" for v in barriers
    )
    assert not barriers, f"axe-core found moderate, serious or critical violations on {page.url}:\n{report}"


_FOCUS_JS = """(selector) => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return {
        element: el.outerHTML.slice(0, 80),
        focusVisible: el.matches(':focus-visible'),
        outlineStyle: style.outlineStyle,
        outlineWidth: parseFloat(style.outlineWidth),
        matches: selector ? el.matches(selector) : false,
    };
}"""


def focus_outline(page: Page, selector: str | None = None) -> dict:
    """How the focused element looks: whether it matches :focus-visible (and `selector`), its outline."""
    return page.evaluate(_FOCUS_JS, selector)


def tab_to(page: Page, selector: str, *, limit: int = 40, backwards: bool = False) -> None:
    """Press Tab (Shift+Tab `backwards`) until `selector` has focus, checking that every stop on the way
    shows its focus."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focus = focus_outline(page, selector)
        assert focus["focusVisible"], f"focus is not visible on {focus['element']}"
        assert focus["outlineStyle"] != "none" and focus["outlineWidth"] >= 2, f"no focus outline: {focus}"
        if focus["matches"]:
            return
    raise AssertionError(f"{selector} was not reached with {limit} presses of Tab")


def screenshot(page: Page, name: str, *, docs: bool = True) -> Path:
    """Write artifacts/screenshots/<name>.png; with UPDATE_SCREENSHOTS=1 also refresh docs/screenshots/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True, animations="disabled", caret="hide")
    if docs and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
    return path


# What this tab's pages keep in its sessionStorage (AI Insights' unsent question): every sign-out forgets it.
DRAFTS_KEPT = "() => Object.keys(sessionStorage).filter((key) => key.startsWith('opsion:'))"
