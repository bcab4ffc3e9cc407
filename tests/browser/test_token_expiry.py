"""Token expiry in a real browser: the Expires choice, each token's expiry in words, the notice before one expires,
and the cap's refusal, with axe-core on each state."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from orgs import services
from orgs.models import ApiToken
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
    screenshot(page, "settings-token-expiry", docs=False)

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
