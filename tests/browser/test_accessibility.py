"""axe-core on every state of the Settings page and on the AI Insights page, with a screenshot of each.

Screenshots go to artifacts/screenshots/ on every run (UPDATE_SCREENSHOTS=1 refreshes docs/screenshots/).
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from insights.models import InsightQuery, KeySource, Outcome
from orgs import services as org_services
from orgs.models import ClaudeApiKey, KeyStatus
from tests.base import GOOD_KEY
from tests.browser.support import PHONE, assert_no_serious_accessibility_violations, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SETTINGS_STATES = {
    # state: (who looks, key stored, status Anthropic gave it)
    "no-key": ("admin@acme.test", False, None),
    "key-saved": ("admin@acme.test", True, KeyStatus.VALID),
    "key-invalid": ("admin@acme.test", True, KeyStatus.INVALID),
    "confirm-remove": ("admin@acme.test", True, KeyStatus.VALID),
    "key-refused": ("admin@acme.test", False, None),
    "member-read-only": ("member@acme.test", True, KeyStatus.VALID),
    "professional": ("admin@globex.test", False, None),
}


def save_key(world, status: str | None) -> None:
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    if status:
        ClaudeApiKey.objects.filter(organisation=world.acme).update(status=status)


def ask(page, question: str) -> None:
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()


@pytest.mark.parametrize("state", SETTINGS_STATES)
def test_settings_page_has_no_serious_accessibility_violations(app, page, world, console, state):
    email, stored, status = SETTINGS_STATES[state]
    if stored:
        save_key(world, status)
    sign_in(page, app.url, email)
    slug = email.split("@")[1].removesuffix(".test")
    page.goto(f"{app.url}/orgs/{slug}/settings/")
    if state == "confirm-remove":
        page.get_by_role("button", name="Remove the stored key").click()
        expect(page.get_by_role("alertdialog")).to_be_visible()
    if state == "key-refused":
        console.allow(400)
        page.get_by_label("Anthropic API key").fill("sk-proj-not-an-anthropic-key-0000000000000000")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator("#byom-error")).to_be_visible()
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()

    screenshot(page, f"settings-{state}")
    assert_no_serious_accessibility_violations(page)


def test_insights_page_with_an_answer_has_no_serious_accessibility_violations(app, page):
    sign_in(page, app.url, "member@acme.test")
    ask(page, "What must a crypto-asset service provider do to obtain authorisation under MiCAR?")
    expect(page.locator("#answer-body h4")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()

    screenshot(page, "insights-answer")
    assert_no_serious_accessibility_violations(page)


def test_insights_page_at_the_limit_has_no_serious_accessibility_violations(app, page, world, console):
    console.allow(429)
    # The team has used the hour's twenty queries; two of them were this member's.
    earlier = timezone.now() - timedelta(minutes=12)
    mine = [
        (
            "Which MiCAR provisions apply to crypto-asset custody?",
            "Custody is a **crypto-asset service** (Article 75).",
        ),
        ("When does MiCAR's transitional period end for our CASP?", "At the latest on **1 July 2026** (Article 143)."),
    ]
    InsightQuery.objects.bulk_create(
        InsightQuery(
            organisation=world.acme,
            user=world.acme_member if n < len(mine) else world.acme_admin,
            created_at=earlier,
            key_source=KeySource.PLATFORM,
            query=mine[n][0] if n < len(mine) else f"Team question {n}",
            answer=mine[n][1] if n < len(mine) else "An answer.",
            outcome=Outcome.ANSWERED,
        )
        for n in range(20)
    )
    sign_in(page, app.url, "member@acme.test")
    ask(page, "What does MiCAR require in a crypto-asset white paper?")
    expect(page.locator("#answer-error")).to_contain_text("Rate limit reached (20/hour)")

    screenshot(page, "insights-limit-reached")
    assert_no_serious_accessibility_violations(page)


def test_pages_fit_a_phone_width_screen(app, page, world):
    save_key(world, KeyStatus.VALID)
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "admin@acme.test")
    # Transaction hashes are everyday input: a long unbroken string must wrap, not widen the page.
    ask(page, "Is transaction 0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060 reportable?")
    expect(page.locator("#answer-body h4")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    page.reload()  # the question in "Your recent queries" and the answer card too
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    page.locator("details.switcher summary").click()  # the organisation menu, open, fits too
    expect(page.locator(".switcher__menu")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the open menu scrolls sideways"
    page.keyboard.press("Escape")
    screenshot(page, "insights-phone")
    assert_no_serious_accessibility_violations(page)

    org_services.api_token_create(user=world.acme_admin, name="Quarterly reporting pipeline")
    page.goto(f"{app.url}/orgs/acme/settings/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    # Narrow screens drop the least useful columns, never who changed the key or the Revoke button.
    expect(page.get_by_role("columnheader", name="Who")).to_be_visible()
    revoke = page.get_by_role("button", name="Revoke token Quarterly reporting pipeline").bounding_box()
    card = page.locator("section", has=page.get_by_role("heading", name="API tokens")).bounding_box()
    assert revoke["x"] + revoke["width"] <= card["x"] + card["width"], "the Revoke button sticks out of its card"
    screenshot(page, "settings-phone", docs=False)


@pytest.mark.parametrize(
    ("viewport", "name"),
    [
        (PHONE, "compliance-bot@acme.test"),  # an everyday name: whom the token is for
        ({"width": 1280, "height": 860}, "N" * 100),  # the longest name the form accepts
    ],
    ids=["phone", "desktop"],
)
def test_a_long_token_name_wraps_inside_its_card(app, page, world, viewport, name):
    org_services.api_token_create(user=world.acme_admin, name=name)
    page.set_viewport_size(viewport)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    revoke = page.get_by_role("button", name=f"Revoke token {name}").bounding_box()
    card = page.locator("section", has=page.get_by_role("heading", name="API tokens")).bounding_box()

    assert revoke["x"] + revoke["width"] <= card["x"] + card["width"], "the Revoke button sticks out of its card"
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], "the page scrolls sideways"


LINES_OF = (
    "el => { const r = document.createRange(); r.selectNodeContents(el); "
    "return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }"
)


def test_short_values_in_the_settings_tables_stay_on_one_line_on_a_phone(app, page, world):
    org_services.api_token_create(user=world.acme_admin, name="Nightly export")
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip="203.0.113.7")
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    audit = page.locator("section", has=page.get_by_role("heading", name="Audit log"))
    who = audit.locator("td", has_text="admin@acme.test")
    prefix = page.locator("section", has=page.get_by_role("heading", name="API tokens")).locator("td code").first

    assert who.evaluate(LINES_OF) == 1, "the actor's e-mail address is split mid-word"
    assert prefix.evaluate(LINES_OF) == 1, "the token prefix is split mid-token"


RICH_ANSWER = (
    "## Thresholds\n\n"
    "| Article | Obligation | Competent authority | Deadline |\n"
    "|---|---|---|---|\n"
    "| Article 36 | Reserve of assets held by issuers of asset-referenced tokens | National competent "
    "authority of the home Member State | Continuously, with monthly independent audits |\n\n"
    "Check it with:\n\n```\nreserve_ratio = reserve_assets / tokens_in_circulation\n```\n"
)


def test_a_wide_table_and_code_in_an_answer_stay_readable_on_a_phone(app, page, fake_anthropic):
    fake_anthropic.answer_text = RICH_ANSWER
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "member@acme.test")

    ask(page, "Which reserve obligations apply to ART issuers under MiCAR?")

    box = page.locator("#answer-body .prose__table")
    expect(box).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    # The table scrolls in its own box rather than breaking words apart letter by letter.
    assert box.evaluate("el => el.scrollWidth > el.clientWidth"), "the table was squeezed into the screen"
    lines = page.get_by_role("cell", name="Article 36").evaluate(
        "el => { const r = document.createRange(); r.selectNodeContents(el); "
        "return new Set([...r.getClientRects()].map(rect => Math.round(rect.top))).size; }"
    )
    assert lines <= 2, f"'Article 36' was broken over {lines} lines"
    # Code keeps the dark block's light text (it was light grey on a light grey background).
    code = page.locator("#answer-body pre code")
    assert code.evaluate("el => getComputedStyle(el).backgroundColor") == "rgba(0, 0, 0, 0)"
    assert code.evaluate("el => getComputedStyle(el).color") == "rgb(226, 232, 240)"
    screenshot(page, "insights-phone-table", docs=False)
    assert_no_serious_accessibility_violations(page)
