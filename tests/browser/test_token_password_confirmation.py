"""A new API token after the session's password is over 15 minutes old: the password asked again, in a real
browser, with axe-core on each state."""

import re
import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import BrowserContext, expect

from orgs import recent_auth
from orgs.models import ApiToken
from tests.base import PASSWORD
from tests.browser.support import assert_no_accessibility_violations, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def password_last_entered(context: BrowserContext, *, minutes_ago: float) -> None:
    """This browser's session as it stands that long after its user last typed their password."""
    (cookie,) = [c for c in context.cookies() if c["name"] == "sessionid"]
    session = SessionStore(session_key=cookie["value"])
    session[recent_auth.SESSION_KEY] = time.time() - minutes_ago * 60
    session.save()


def test_past_fifteen_minutes_a_new_token_asks_for_the_password_once(app, page, context, world, console):
    console.allow(400)  # the wrong password's answer
    sign_in(page, app.url, "admin@acme.test")
    password_last_entered(context, minutes_ago=16)
    page.goto(f"{app.url}/orgs/acme/settings/")

    confirm = page.get_by_label("Confirm your password")
    expect(confirm).to_have_attribute("type", "password")
    expect(confirm).to_have_attribute("autocomplete", "current-password")
    expect(confirm).to_have_accessible_description(
        "You last entered your password more than 15 minutes ago. Enter it again to create a token."
    )
    assert_no_accessibility_violations(page)
    screenshot(page, "settings-token-confirm-password", docs=False)

    page.get_by_label("Token name").fill("Nightly export")
    confirm.fill("not-the-password")
    page.get_by_role("button", name="Create token").click()

    confirm = page.get_by_label("Confirm your password")
    expect(confirm).to_be_focused()
    expect(confirm).to_have_attribute("aria-invalid", "true")
    expect(confirm).to_have_accessible_description("Your password was entered incorrectly. Please enter it again.")
    expect(confirm).to_have_value("")
    expect(page.get_by_label("Token name")).to_have_value("Nightly export")
    assert_no_accessibility_violations(page)
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 0

    confirm.fill(PASSWORD)
    page.get_by_role("button", name="Create token").click()

    expect(page.locator("#new-token")).to_have_text(re.compile(r"^opsn_"))
    expect(page.get_by_label("Confirm your password")).to_have_count(0)  # the window starts again
    page.goto(f"{app.url}/orgs/acme/settings/")
    page.get_by_label("Token name").fill("Second")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 2


def test_a_page_loaded_in_the_window_and_sent_after_it_asks_and_keeps_the_name(app, page, context, world, console):
    console.allow(400)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")
    expect(page.get_by_label("Confirm your password")).to_have_count(0)
    page.get_by_label("Token name").fill("Nightly export")
    password_last_entered(context, minutes_ago=16)  # the page stood open

    page.get_by_role("button", name="Create token").click()

    confirm = page.get_by_label("Confirm your password")
    expect(confirm).to_be_focused()
    expect(confirm).to_have_accessible_description(
        "Enter your password to create a token: you last entered it more than 15 minutes ago."
    )
    expect(page.get_by_label("Token name")).to_have_value("Nightly export")
    assert_no_accessibility_violations(page)
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 0

    confirm.fill(PASSWORD)
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("status").filter(has_text="Token “Nightly export” created.")).to_be_visible()


def beside_or_above(label: dict, field: dict) -> bool:
    """A label reads with its field: on the same line before it, or on the line above it, over it."""
    same_line = label["y"] < field["y"] + field["height"] and field["y"] < label["y"] + label["height"]
    above = label["y"] + label["height"] <= field["y"] + 1 and label["x"] < field["x"] + field["width"]
    return (same_line and label["x"] + label["width"] <= field["x"]) or (
        above and field["x"] < label["x"] + label["width"]
    )


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 860}, {"width": 320, "height": 640}], ids=str)
def test_each_label_of_the_token_form_stays_with_its_field_when_the_password_is_asked(app, page, context, viewport):
    page.set_viewport_size(viewport)
    sign_in(page, app.url, "admin@acme.test")
    password_last_entered(context, minutes_ago=16)
    page.goto(f"{app.url}/orgs/acme/settings/")

    form = page.locator("form", has=page.get_by_role("button", name="Create token"))
    for name in ("Token name", "Expires", "Confirm your password"):
        label = form.locator("label", has_text=name).bounding_box()
        field = page.get_by_label(name).bounding_box()
        assert beside_or_above(label, field), f"{name!r} at {label} is apart from its field at {field}"
