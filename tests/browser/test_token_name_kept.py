"""Settings forms sent after the session expired, in a real browser: a new token's name comes back after signing in
(orgs.drafts), a Claude API key never does."""

import pytest
from playwright.sync_api import expect

from orgs.models import ApiToken, ClaudeApiKey
from tests.base import CANARY_KEY, PASSWORD
from tests.browser.support import NetworkLog, assert_no_accessibility_violations, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEPT = "You were signed out before this token was created: nothing was created yet. Press Create token to create it."


def sign_in_again(page, email: str) -> None:
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_token_name_typed_as_the_session_expired_is_back_in_the_form_after_signing_in(app, page, world):
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")
    page.context.clear_cookies(name="sessionid")  # the session expired (the CSRF cookie is still there)

    page.get_by_label("Token name").fill("Reporting pipeline")
    page.get_by_label("Expires").select_option(label="1 year")
    page.get_by_role("button", name="Create token").click()

    expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(
        "You were signed out before your token was created, so nothing was created. "
        "Sign in and its name will be back in the form, ready to create."
    )
    sign_in_again(page, "admin@acme.test")

    # Back on Settings, in the same organisation, the form as it was left: nothing created until Create token.
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    assert page.url == f"{app.url}/orgs/acme/settings/"
    name = page.get_by_label("Token name")
    expect(name).to_have_value("Reporting pipeline")
    expect(page.get_by_label("Expires")).to_have_value("365")
    # Said on a page load, where a role=status is not announced: focus starts on the name, read with it.
    expect(name).to_be_focused()
    expect(name).to_have_accessible_description(KEPT)
    assert not ApiToken.objects.exists()
    assert_no_accessibility_violations(page)

    page.get_by_role("button", name="Create token").click()

    expect(page.locator("#new-token")).to_be_visible()
    token = ApiToken.objects.get()
    assert (token.name, token.user) == ("Reporting pipeline", world.acme_admin)
    page.goto(f"{app.url}/orgs/acme/settings/")
    expect(page.get_by_label("Token name")).to_have_value("")  # handed back once, not forever


def test_a_key_typed_as_the_session_expired_is_kept_nowhere_and_must_be_pasted_again(app, page):
    network = NetworkLog(page)
    sign_in(page, app.url, "owner@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")
    page.context.clear_cookies(name="sessionid")

    page.get_by_label("Anthropic API key").fill(CANARY_KEY)
    page.locator("#byom").get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()
    sign_in_again(page, "owner@acme.test")

    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    assert network.containing(CANARY_KEY[7:30]) == []  # no page, header or address after the post carried it
    assert not [c for c in page.context.cookies() if CANARY_KEY[7:30] in c["value"]]
    stored = page.evaluate("() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])")
    assert CANARY_KEY[7:30] not in stored
    assert CANARY_KEY[7:30] not in page.content()
    assert not ClaudeApiKey.objects.exists()
    expect(page.get_by_text("your new key was not saved. Paste it again.")).to_be_visible()
    expect(page.get_by_label("Anthropic API key")).to_have_value("")
