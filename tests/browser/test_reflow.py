"""The console at 320 CSS px (WCAG 1.4.10 Reflow: a 1280 px screen at 400% zoom, or a small phone) with the
longest things people put in it.

Screenshots go to artifacts/screenshots/ (never to the README's: these are checks, not pictures of the product).
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from insights.models import InsightQuery, KeySource, Outcome
from orgs import services as org_services
from orgs.models import Membership, Organisation, Role
from tests.base import GOOD_KEY, make_user
from tests.browser.support import LONG_EMAIL, LONG_URL, WIDE_ANSWER, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NARROW = {"width": 320, "height": 640}
LONG_ORG = "Finanzdienstleistungsunternehmensgruppe AG"  # a one-word name wider than a small phone
OVERFLOW = """() => {
    const width = window.innerWidth;
    return {width: document.documentElement.scrollWidth, viewport: width};
}"""


class Reflow:
    """Every page that scrolls sideways, gathered so one run names them all."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.failures: list[str] = []

    def check(self, where: str) -> None:
        self.page.wait_for_load_state("load")  # measured with the stylesheet, after a click's navigation
        size = self.page.evaluate(OVERFLOW)
        if size["width"] > size["viewport"]:
            self.failures.append(f"{where}: {size['width']} px wide in {size['viewport']} px")
            screenshot(self.page, f"reflow-{where.replace(' ', '-')}", docs=False)


def ask(page: Page, question: str) -> None:
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body h3")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()


def test_every_console_page_reflows_at_320_px_with_long_names_addresses_and_answers(
    app, page, world, fake_anthropic, settings, console
):
    settings.EMAIL_CONFIGURED = True
    console.allow(403)
    console.allow(404)
    Organisation.objects.filter(pk=world.acme.pk).update(name=LONG_ORG)
    alexandra = make_user(LONG_EMAIL)
    Membership.objects.create(user=alexandra, organisation=world.acme, role=Role.ADMIN)
    org_services.claude_api_key_set(membership=world.membership(alexandra, world.acme), raw_key=GOOD_KEY, ip=None)
    InsightQuery.objects.create(
        organisation=world.acme,
        user=alexandra,
        created_at=timezone.now() - timedelta(minutes=5),
        key_source=KeySource.ORGANISATION,
        query=f"Is {LONG_URL} the regulation's current text?",
        answer=WIDE_ANSWER,
        outcome=Outcome.ANSWERED,
    )
    fake_anthropic.answer_text = WIDE_ANSWER
    page.set_viewport_size(NARROW)
    reflow = Reflow(page)

    page.goto(f"{app.url}/accounts/login/")
    reflow.check("sign-in")
    page.goto(f"{app.url}/accounts/password/reset/")
    reflow.check("password reset")
    page.goto(f"{app.url}/no-such-page/")
    reflow.check("404")

    sign_in(page, app.url, LONG_EMAIL)
    reflow.check("insights")
    # Who is signed in is read in full, not cut to "alexa…".
    if page.locator(".account__email").evaluate("el => el.scrollWidth > el.clientWidth"):
        reflow.failures.append("insights: the signed-in address is cut off")
    page.locator("details.switcher summary").click()
    reflow.check("insights, organisation menu open")
    page.keyboard.press("Escape")
    ask(page, f"Which reserve rules apply? {LONG_URL}")
    reflow.check("insights, answer streamed")
    page.reload()
    page.locator(".history__item summary").nth(1).click()  # the earlier answer, opened
    expect(page.locator(".history__item .prose h3").nth(1)).to_be_visible()
    reflow.check("insights, history")

    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    reflow.check("settings")
    page.get_by_label("Token name").fill("T" * 100)  # the longest name the form takes, in one word
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    reflow.check("settings, new token")
    page.get_by_role("button", name="Remove the stored key").click()
    reflow.check("settings, removal confirmation")
    page.get_by_role("button", name=f"Revoke token {'T' * 100}").click()
    expect(page.get_by_role("alertdialog")).to_contain_text("Revoke the API token")
    reflow.check("settings, revoke confirmation")
    page.goto(f"{app.url}/orgs/acme/settings/audit-log/")
    reflow.check("audit log")

    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
    page.locator("details.switcher summary").click()  # beside the brand here: no organisation is current
    expect(page.locator(".switcher__menu")).to_be_visible()
    reflow.check("password change, organisation menu open")

    page.keyboard.press("Escape")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/audit-log/")
    expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    reflow.check("403")

    assert reflow.failures == [], "at 320 px:\n" + "\n".join(reflow.failures)
