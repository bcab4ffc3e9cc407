"""axe-core on every state of the Settings page and on the AI Insights page, with a screenshot of each.

Screenshots go to artifacts/screenshots/ on every run (UPDATE_SCREENSHOTS=1 refreshes docs/screenshots/).
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from insights.models import InsightQuery, KeySource, Outcome
from orgs import mailer
from orgs import services as org_services
from orgs.models import AuditAction, AuditEvent, ClaudeApiKey, KeyStatus, Membership, Role
from tests.base import GOOD_KEY, PASSWORD, make_user
from tests.browser.support import PHONE, assert_no_accessibility_violations, create_token, screenshot, sign_in
from tests.insights.helpers import seed

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
def test_settings_page_has_no_accessibility_violations(app, page, world, console, state):
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
    assert_no_accessibility_violations(page)


def test_insights_page_with_an_answer_has_no_accessibility_violations(app, page):
    sign_in(page, app.url, "member@acme.test")
    ask(page, "What must a crypto-asset service provider do to obtain authorisation under MiCAR?")
    expect(page.locator("#answer-body h3")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()

    screenshot(page, "insights-answer")
    assert_no_accessibility_violations(page)


def test_insights_page_at_the_limit_has_no_accessibility_violations(app, page, world, console):
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
    page.get_by_label("Your question").fill("What does MiCAR require in a crypto-asset white paper?")
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_disabled()
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 48 min.")

    screenshot(page, "insights-limit-reached")
    assert_no_accessibility_violations(page)


def test_the_full_audit_log_has_no_accessibility_violations_and_fits_a_phone(app, page, world):
    AuditEvent.objects.bulk_create(
        AuditEvent(
            organisation=world.acme, action=AuditAction.KEY_SAVED, actor_email="admin@acme.test", ip="203.0.113.5"
        )
        for _ in range(120)
    )
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")
    page.get_by_role("link", name="Full audit log").click()
    expect(page.get_by_role("heading", name="Audit log", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Settings", exact=True)).to_have_attribute("aria-current", "page")
    assert_no_accessibility_violations(page)

    page.set_viewport_size(PHONE)
    page.get_by_role("link", name="Older").click()
    expect(page.get_by_text("120 changes, newest first; page 2 of 2.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"


def test_pages_fit_a_phone_width_screen(app, page, world):
    save_key(world, KeyStatus.VALID)
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "admin@acme.test")
    # Transaction hashes are everyday input: a long unbroken string must wrap, not widen the page.
    ask(page, "Is transaction 0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060 reportable?")
    expect(page.locator("#answer-body h3")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    page.reload()  # the question in "Your recent queries" and the answer card too
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    page.locator("details.switcher summary").click()  # the organisation menu, open, fits too
    expect(page.locator(".switcher__menu")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the open menu scrolls sideways"
    page.keyboard.press("Escape")
    screenshot(page, "insights-phone")
    assert_no_accessibility_violations(page)

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
        ({"width": 320, "height": 640}, "Reporting pipeline"),  # WCAG 1.4.10's width, with its expiry beneath
        ({"width": 1280, "height": 860}, "N" * 100),  # the longest name the form accepts
    ],
    ids=["phone", "320px", "desktop"],
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
    assert_no_accessibility_violations(page)


# WCAG contrast of an element's outline and of its border with the first opaque background behind it.
CONTRAST = """(el) => {
  const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const channel = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  let bg = el.parentElement;
  while (getComputedStyle(bg).backgroundColor === 'rgba(0, 0, 0, 0)') bg = bg.parentElement;
  const back = lum(rgb(getComputedStyle(bg).backgroundColor));
  const ratio = c => { const [a, b] = [lum(rgb(c)), back].sort((x, y) => y - x); return (a + 0.05) / (b + 0.05); };
  const style = getComputedStyle(el);
  return {ring: ratio(style.outlineColor), border: ratio(style.borderTopColor)};
}"""


def test_an_audit_entry_by_someone_with_a_long_address_does_not_make_the_page_scroll_sideways(app, page, world):
    # WCAG 1.4.10 Reflow (and the suite's own "the page scrolls sideways" rule, only ever tried with
    # admin@acme.test). Addresses of 30-45 characters are everyday ones.
    long = make_user("alexandra.konstantinou@acmedigitalassets.test")
    Membership.objects.create(user=long, organisation=world.acme, role=Role.ADMIN)
    org_services.claude_api_key_set(membership=world.membership(long, world.acme), raw_key=GOOD_KEY, ip=None)
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    # Nor out of sight in the audit log's own box: the address wraps after its "@" and dots.
    assert page.locator(".table-scroll").evaluate("el => el.scrollWidth <= el.clientWidth"), "the Who column is cut off"


def test_the_focus_ring_and_input_borders_contrast_3_to_1_with_the_card(app, page):
    # WCAG 1.4.11 Non-text Contrast: the focus indicator and a text field's boundary need 3:1
    # against what surrounds them (the white card).
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").focus()
    page.keyboard.press("Tab")  # keyboard focus on Ask: :focus-visible applies
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(ask).to_be_focused()

    assert ask.evaluate(CONTRAST)["ring"] >= 3, "the focus ring contrasts less than 3:1 with the white card"
    assert page.get_by_label("Your question").evaluate(CONTRAST)["border"] >= 3, (
        "the question box's border is too faint"
    )


def test_an_answers_headings_follow_the_answer_cards_heading_without_a_gap(app, page):
    # WCAG 1.3.1 (axe heading-order): Claude's "## Heading" is rendered as an h4 straight under the
    # card's h2 "Answer" (and under h2 "Your recent queries"), so heading navigation skips a level.
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("What must a CASP do to be authorised under MiCAR?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()

    levels = page.evaluate(
        "[...document.querySelectorAll('#answer h2, #answer h3, #answer h4, #answer h5, #answer h6')]"
        ".map(h => +h.tagName[1])"
    )
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), f"heading levels in the answer card: {levels}"


def test_a_failed_sign_in_marks_the_fields_and_ties_the_message_to_them(app, page, world):
    # WCAG 1.3.1 / 3.3.1: both fields are marked and described by the alert; focus is on the password, which
    # comes back empty (the address comes back typed), not on the address.
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct e-mail address and password")
    expect(page.get_by_label("Password")).to_be_focused()
    expect(page.get_by_label("Password")).to_have_accessible_description(
        "Please enter a correct e-mail address and password. The password is case-sensitive."
    )
    email = page.get_by_label("E-mail")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(
        "Please enter a correct e-mail address and password. The password is case-sensitive."
    )


def test_a_refused_token_name_takes_focus_like_a_refused_key_does(app, page, console):
    # WCAG 3.3.1 / 2.4.3: a refused key puts focus on its field (autofocus + aria-describedby); a
    # refused token name leaves focus at the top of the re-rendered page, 20 Tab stops away.
    console.allow(400)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")
    page.get_by_label("Token name").fill("   ")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-name-error")).to_have_text("Give the token a name, e.g. “CI pipeline”.")

    name = page.get_by_label("Token name")
    expect(name).to_be_focused()
    expect(name).to_have_value("")  # not the spaces again: the browser's `required` now stops an empty try
    expect(name).to_have_accessible_description("Give the token a name, e.g. “CI pipeline”.")


def test_without_javascript_a_refused_question_takes_focus_and_is_described_by_the_refusal(
    app, page_without_script, world
):
    # WCAG 4.1.3 / 2.4.3: the refusal comes on a new page load, where its role=alert is not announced and
    # focus starts at the top; as a refused key does, the question takes focus with the refusal read with it.
    page = page_without_script
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, *[600] * 20, user=world.acme_member)  # the platform key's 20, used since the page loaded
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()
    refusal = (
        "Rate limit reached (20/hour). Try again in 50 min. An Owner or Admin can raise the limit to 200 queries "
        "per 60 minutes by saving your organisation's own Anthropic key in Settings."
    )
    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(refusal)

    question = page.get_by_label("Your question")
    expect(question).to_be_focused()
    expect(question).to_have_value("What does MiCAR say about white papers?")
    expect(question).to_have_accessible_description(refusal)


def test_the_new_token_is_where_focus_lands(app, page):
    # WCAG 2.4.3 Focus Order: the one-time token is shown in the API tokens card, below the key card;
    # focus starts at the top of the page, and the role=status it sits in is not announced on a page load.
    create_token(page, app.url, "admin@acme.test", "Reporting pipeline")

    assert page.evaluate("document.activeElement.closest('.alert--success') !== null"), "focus is not on the new token"


def test_how_an_answer_ended_is_said_beside_ask_once_the_card_is_no_longer_busy(app, page):
    # Screen readers may not announce changes made inside a busy live region (the answer, its error).
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("What must a CASP do to be authorised under MiCAR?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#ask-status")).to_have_text("Answer ready.")
    expect(page.locator("#answer")).not_to_have_attribute("aria-busy", "true")


def test_focus_lands_on_the_message_after_a_key_is_saved(app, page):
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")
    page.get_by_label("Anthropic API key").fill(GOOD_KEY)
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".flash-stack")).to_be_focused()
    expect(page.locator(".flash-stack")).to_contain_text("saved")


def test_the_focus_ring_in_the_organisation_menu_contrasts_3_to_1_with_its_white_box(app, page):
    sign_in(page, app.url, "member@acme.test")
    page.locator("details.switcher summary").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    link = page.locator(".switcher__menu a").first

    expect(link).to_be_focused()
    assert link.evaluate("el => el.matches(':focus-visible')")
    assert link.evaluate(CONTRAST)["ring"] >= 3


def test_a_malformed_address_marks_only_the_address_field(app, page):
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_label("E-mail").fill("owner@acme")  # the browser lets it through; Django refuses it
    page.get_by_label("Password").fill("opsion-demo")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_label("E-mail")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Password")).not_to_have_attribute("aria-invalid", "true")


def test_changing_the_password_from_the_account_menu_on_a_phone(app, page, world):
    # Reached from every page's header, which still fits a phone with the extra link; a wrong current password
    # takes focus, marked invalid and described by what was wrong; the change itself lands back home, signed in.
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "member@acme.test")
    page.get_by_role("link", name="Change password").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    expect(page.get_by_label("Old password")).to_be_focused()
    page.get_by_label("Old password").fill("not-the-password")
    page.get_by_label("New password", exact=True).fill("a-New-passw0rd-for-acme")
    page.get_by_label("New password confirmation").fill("a-New-passw0rd-for-acme")
    page.get_by_role("button", name="Change password").click()

    old = page.get_by_label("Old password")
    expect(old).to_be_focused()
    expect(old).to_have_attribute("aria-invalid", "true")
    expect(old).to_have_accessible_description("Your old password was entered incorrectly. Please enter it again.")
    screenshot(page, "password-change-refused", docs=False)
    assert_no_accessibility_violations(page)

    old.fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a-New-passw0rd-for-acme")
    page.get_by_label("New password confirmation").fill("a-New-passw0rd-for-acme")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".flash")).to_have_text(
        "Your password was changed. Other browsers signed in as you were signed out."
    )
    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()


def test_revoking_the_api_tokens_with_a_new_password_by_keyboard(app, page, world):
    # The choice is a labelled checkbox, described by what it does, reached with Tab after the new password and
    # ticked with Space; a refused password keeps it ticked and revokes nothing; the change says how many went.
    org_services.api_token_create(user=world.acme_member, name="CI")
    _, raw = org_services.api_token_create(user=world.acme_member, name="Nightly export")
    sign_in(page, app.url, "member@acme.test")
    page.get_by_role("link", name="Change password").click()
    revoke = page.get_by_role("checkbox", name="Also revoke my 2 API tokens")
    expect(revoke).not_to_be_checked()
    expect(revoke).to_have_accessible_description(re.compile("^Integrations using them stop working at once."))
    assert_no_accessibility_violations(page)

    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("12345678")
    page.get_by_label("New password confirmation").fill("12345678")
    page.keyboard.press("Tab")
    expect(revoke).to_be_focused()
    page.keyboard.press("Space")
    expect(revoke).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Change password")).to_be_focused()
    page.keyboard.press("Enter")

    refused = page.get_by_label("New password", exact=True)  # the field the validators' message is about
    expect(refused).to_have_attribute("aria-invalid", "true")
    expect(refused).to_have_accessible_description(re.compile("This password is too common."))
    old = page.get_by_label("Old password")  # every field came back empty: typing again starts at the first
    expect(old).to_be_focused()
    expect(old).to_have_accessible_description(re.compile("This password is too common."))
    expect(revoke).to_be_checked()  # as it was: nothing revoked
    screenshot(page, "password-change-revoke-tokens-refused", docs=False)
    assert org_services.api_token_authenticate(raw) == world.acme_member

    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a-New-passw0rd-for-acme")
    page.get_by_label("New password confirmation").fill("a-New-passw0rd-for-acme")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".flash")).to_have_text(
        "Your password was changed. Other browsers signed in as you were signed out. Your 2 API tokens were revoked: "
        "integrations using them have stopped working."
    )
    assert org_services.api_token_authenticate(raw) is None


def test_a_reset_link_opened_while_signed_in_as_another_account_can_sign_out_first(
    app, page, world, settings, mailoutbox
):
    # The Owner's browser, the Member's link: the page says whose password it sets and who is signed in, and its Sign
    # out comes back to the same form signed out, the link still working, to set the password and sign in with it.
    settings.EMAIL_CONFIGURED = True
    sign_in(page, app.url, "owner@acme.test")
    page.goto(f"{app.url}/accounts/password/reset/")
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_role("button", name="Send the link").click()
    assert mailer.wait(timeout=10)
    page.goto(re.search(r"http://\S+/accounts/password/reset/\S+/", mailoutbox[0].body)[0])

    main = page.get_by_role("main")
    expect(main).to_contain_text(
        "This link sets the password of member@acme.test. You are signed in here as owner@acme.test."
    )
    assert_no_accessibility_violations(page)
    main.get_by_role("button", name="Sign out").click()

    expect(page.get_by_text("You are signed out.")).to_be_visible()
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect(page.get_by_label("New password", exact=True)).to_be_focused()
    assert_no_accessibility_violations(page)
    page.get_by_label("New password", exact=True).fill("a-New-passw0rd-for-acme")
    page.get_by_label("New password confirmation").fill("a-New-passw0rd-for-acme")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Your password was changed.")).to_be_visible()


def test_resetting_a_forgotten_password_by_email(app, page, world, settings, mailoutbox):
    # From the sign-in page's link to signed in with the new password; each page of the way axe-clean, focus where
    # the next thing is typed, a refused password marked invalid and described by why, and the used link explained.
    settings.EMAIL_CONFIGURED = True
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_label("E-mail")).to_be_focused()
    assert_no_accessibility_violations(page)
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert_no_accessibility_violations(page)

    assert mailer.wait(timeout=10)  # sent after the answer, on the server process's mail thread
    link = re.search(r"http://\S+/accounts/password/reset/\S+/", mailoutbox[0].body)[0]
    page.goto(link)
    new = page.get_by_label("New password", exact=True)
    expect(new).to_be_focused()
    new.fill("12345678")
    page.get_by_label("New password confirmation").fill("12345678")
    page.get_by_role("button", name="Set the new password").click()
    expect(new).to_be_focused()  # the validators' word is about the new password, not its confirmation
    expect(new).to_have_attribute("aria-invalid", "true")
    expect(new).to_have_accessible_description(re.compile("This password is too common."))
    expect(page.get_by_label("New password confirmation")).not_to_have_attribute("aria-invalid", "true")
    assert_no_accessibility_violations(page)
    screenshot(page, "password-reset-refused", docs=False)

    new.fill("a-New-passw0rd-for-acme")
    page.get_by_label("New password confirmation").fill("a-New-passw0rd-for-acme")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Your password was changed.")).to_be_visible()
    assert_no_accessibility_violations(page)
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_label("Password").fill("a-New-passw0rd-for-acme")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    page.goto(link)  # it worked once
    expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    expect(page.get_by_role("link", name="Ask for a new link")).to_be_visible()
    assert_no_accessibility_violations(page)
