"""Token expiry in a real browser: the Expires choice, each token's expiry in words, the notice before one expires,
and the cap's refusal, with axe-core on each state."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from orgs import services
from orgs.models import ApiToken, Membership
from tests.browser.support import PHONE, assert_no_accessibility_violations, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def make(user, name: str, *, expires_in: timedelta | None) -> None:
    token, _ = services.api_token_create(user=user, name=name)
    at = None if expires_in is None else timezone.now() + expires_in
    ApiToken.objects.filter(pk=token.pk).update(expires_at=at)


def expires_cell(rows, name: str):
    """The Expires column's cell of the token named `name` (the column's header is the third)."""
    return rows.filter(has_text=name).locator("td").nth(2)


def test_on_a_phone_each_token_says_it_expires_where_no_header_does(app, page, world):
    make(world.acme_admin, "Nightly export", expires_in=timedelta(days=2, hours=23))
    at = ApiToken.objects.get().expires_at
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    row = page.locator("table tbody tr").filter(has_text="Nightly export")
    expect(page.get_by_role("columnheader", name="Expires")).to_be_hidden()
    expect(row.locator(".token-narrow")).to_be_visible()
    expect(row.locator(".token-narrow time")).to_have_text(f"Expires {at:%-d %b %Y, %H:%M} UTC (in 3 days)")


def test_tokens_say_when_they_expire_and_a_new_one_lives_as_long_as_chosen(app, page, world):
    make(world.acme_admin, "Nightly export", expires_in=timedelta(days=3, hours=2))
    make(world.acme_admin, "Old script", expires_in=None)
    make(world.acme_admin, "Last quarter", expires_in=-timedelta(days=2, hours=1))
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    notice = page.get_by_role("status").filter(has_text="expires in 3 days")
    expect(notice).to_contain_text("“Nightly export” expires in 3 days")
    rows = page.locator("table tbody tr")
    nightly, last_quarter = (ApiToken.objects.get(name=n).expires_at for n in ("Nightly export", "Last quarter"))
    # Under the Expires header, the date without the word again; how long, rounded to the nearest day.
    expect(expires_cell(rows, "Nightly export")).to_have_text(f"{nightly:%-d %b %Y, %H:%M} UTC (in 3 days)")
    expect(expires_cell(rows, "Old script")).to_contain_text("No expiry")
    expect(expires_cell(rows, "Last quarter")).to_have_text(f"Expired {last_quarter:%-d %b %Y, %H:%M} UTC (2 days ago)")
    expires = page.get_by_label("Expires")
    expect(expires).to_have_value("90")
    assert_no_accessibility_violations(page)
    screenshot(page, "settings-token-expiry")

    page.get_by_label("Token name").fill("Yearly audit")
    expires.select_option(label="1 year")
    page.get_by_role("button", name="Create token").click()

    created = page.get_by_role("status").filter(has_text="Token “Yearly audit” created.")
    expected = ApiToken.objects.get(name="Yearly audit").expires_at
    assert timedelta(days=364) < expected - timezone.now() <= timedelta(days=365)
    expect(created).to_contain_text(f"It expires on {expected:%-d %b %Y}.")
    expect(expires_cell(rows, "Yearly audit")).to_have_text(f"{expected:%-d %b %Y}")
    assert_no_accessibility_violations(page)


def test_the_twenty_first_token_is_refused_in_words_keeping_the_name(app, page, world, console):
    console.allow(409)
    for n in range(20):
        make(world.acme_admin, f"t{n}", expires_in=timedelta(days=30))
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    page.get_by_label("Token name").fill("Nightly compliance export")
    page.get_by_role("button", name="Create token").click()

    expect(page.get_by_role("alert")).to_have_text("You have 20 active tokens: revoke one you no longer use first.")
    name = page.get_by_label("Token name")
    expect(name).to_have_value("Nightly compliance export")
    expect(name).to_be_focused()
    expect(name).to_have_accessible_description(re.compile("You have 20 active tokens"))
    assert_no_accessibility_violations(page)
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 20


def test_revoke_asks_first_with_focus_on_the_confirmation_and_revokes_only_when_confirmed(app, page, world, console):
    make(world.acme_admin, "Nightly export", expires_in=timedelta(days=80))
    make(world.acme_admin, "Backup job", expires_in=timedelta(days=30))
    token = ApiToken.objects.get(name="Nightly export")
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    page.get_by_role("button", name="Revoke token Nightly export").click()

    confirm = page.get_by_role("alertdialog", name="Revoke the API token “Nightly export”?")
    expect(confirm).to_be_visible()
    expect(confirm).to_have_accessible_description("Requests using it will be refused at once; this cannot be undone.")
    expect(confirm.locator("dt")).to_have_text(["Token", "Last used", "Expires"])
    expect(confirm.locator("dd")).to_have_text([f"{token.prefix}…", "never", f"{token.expires_at:%-d %b %Y}"])
    # Focus lands in the confirmation, on its way out: a stray Enter must not revoke.
    cancel = confirm.get_by_role("link", name="Cancel")
    expect(cancel).to_be_focused()
    expect(cancel).to_be_in_viewport()
    assert ApiToken.objects.filter(pk=token.pk).exists()  # nothing revoked by asking
    assert_no_accessibility_violations(page)
    screenshot(page, "settings-token-confirm-revoke")

    page.keyboard.press("Shift+Tab")
    expect(confirm.get_by_role("button", name="Revoke token")).to_be_focused()
    page.keyboard.press("Enter")

    flash = page.locator(".flash-stack")
    expect(flash).to_have_text("API token “Nightly export” revoked. Requests using it are now refused.")
    expect(flash).to_be_focused()
    expect(page.get_by_role("alertdialog")).to_have_count(0)
    expect(page.get_by_role("button", name="Revoke token Nightly export")).to_have_count(0)
    expect(page.get_by_role("button", name="Revoke token Backup job")).to_have_count(1)
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["Backup job"]

    # Back returns to the confirmation's own page (no "Confirm Form Resubmission"): the token is gone, and it says so.
    console.allow(404)
    page.go_back()
    expect(page.locator(".flash-stack")).to_have_text("That token does not exist or was already revoked.")
    expect(page.get_by_role("alertdialog")).to_have_count(0)


def test_without_javascript_someone_in_no_organisation_can_cancel_or_confirm_on_the_home_page(
    app, page_without_script, world
):
    page = page_without_script
    make(world.acme_member, "leaked laptop", expires_in=timedelta(days=80))
    token = ApiToken.objects.get()
    Membership.objects.filter(user=world.acme_member).delete()
    sign_in(page, app.url, "member@acme.test")
    expect(page.get_by_role("heading", name="Your API tokens")).to_be_visible()

    page.get_by_role("button", name="Revoke token leaked laptop").click()
    confirm = page.get_by_role("alertdialog", name="Revoke the API token “leaked laptop”?")
    expect(confirm.get_by_role("link", name="Cancel")).to_be_focused()
    confirm.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("alertdialog")).to_have_count(0)
    assert ApiToken.objects.filter(pk=token.pk).exists()

    page.get_by_role("button", name="Revoke token leaked laptop").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("status").filter(has_text="revoked")).to_have_text(
        "API token “leaked laptop” revoked. Requests using it are now refused."
    )
    assert not ApiToken.objects.exists()
