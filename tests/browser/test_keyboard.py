"""Journey 7: Save, Remove and Ask with the keyboard alone, and focus always visible."""

import re

import pytest
from playwright.sync_api import expect

from insights.suggestions import SUGGESTED_QUERIES
from orgs.models import Membership, Role
from tests.base import GOOD_KEY, PASSWORD
from tests.browser.support import MASK, PHONE, focus_outline, sign_in, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_keyboard_user_saves_and_removes_a_key_and_asks_a_question(app, page):
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    tab_to(page, "#byom-key")
    page.keyboard.type(GOOD_KEY)
    tab_to(page, "#byom button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.locator("#byom-masked")).to_have_value(MASK)

    tab_to(page, "#byom-remove")
    page.keyboard.press("Enter")
    # The confirmation step takes focus itself, on Cancel: a stray Enter must not remove the key.
    expect(page.get_by_role("link", name="Cancel")).to_be_focused()
    assert focus_outline(page)["outlineStyle"] != "none"
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Yes, remove the key")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Anthropic API key")).to_have_value("")
    # Focus starts on the message saying it was removed; the organisation switcher is back up the page.
    expect(page.locator(".flash-stack")).to_be_focused()
    expect(page.locator(".flash-stack")).to_contain_text("removed")

    tab_to(page, "details.switcher summary", backwards=True)
    expect(page.locator("details.switcher summary")).to_have_accessible_name(
        re.compile(r"^Acme Digital Assets ?, switch organisation$")
    )
    page.keyboard.press("Enter")
    expect(page.locator("details.switcher")).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.locator("details.switcher")).not_to_have_attribute("open", "")
    expect(page.locator("details.switcher summary")).to_be_focused()

    tab_to(page, "nav[aria-label=Organisation] a[href$='/insights/']")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()
    tab_to(page, "button.suggestion")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Your question")).to_be_focused()
    expect(page.get_by_label("Your question")).to_have_value(SUGGESTED_QUERIES[0])
    tab_to(page, "#ask-button", limit=1)
    page.keyboard.press("Enter")
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    expect(page.locator("#usage-used")).to_have_text("1")
    # The button was disabled while the answer streamed; focus comes back to it, not to the page's start.
    expect(page.locator("#ask-button")).to_be_focused()


def test_the_organisation_menu_closes_on_a_click_elsewhere_as_menus_do(app, page):
    # Left open, it lies over the Settings tab on a phone until its own button is found and pressed again.
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "member@acme.test")
    page.locator("details.switcher summary").click()
    expect(page.locator(".switcher__menu")).to_be_visible()

    page.get_by_role("heading", name="AI Insights", level=1).click()

    expect(page.locator("details.switcher")).not_to_have_attribute("open", "")
    page.locator("details.switcher summary").click()  # and a click inside still works as before
    page.locator(".switcher__menu").click(position={"x": 2, "y": 2})
    expect(page.locator(".switcher__menu")).to_be_visible()


def test_after_signing_in_the_keyboard_user_types_a_question_at_once(app, page):
    sign_in(page, app.url, "member@acme.test")

    expect(page.get_by_label("Your question")).to_be_focused()
    page.keyboard.type("What does MiCAR require of a CASP?")
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR require of a CASP?")
    page.reload()  # an ordinary load starts at the top: Tab reaches the skip link first
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()


def test_switching_organisation_from_settings_opens_the_other_organisations_settings(app, page, world):
    Membership.objects.create(user=world.acme_admin, organisation=world.globex, role=Role.MEMBER)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/")

    page.locator("details.switcher summary").focus()
    page.keyboard.press("Enter")
    tab_to(page, ".switcher__menu a[href^='/orgs/globex/']")
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{app.url}/orgs/globex/settings/")
    expect(page.locator("details.switcher summary")).to_contain_text("Globex Payments")


def test_after_a_wrong_password_the_keyboard_user_types_it_again_and_presses_enter(app, page, world):
    page.goto(f"{app.url}/accounts/login/")
    # Typed only once the page has put focus on E-mail, as a person sees it there: keys sent before autofocus took
    # effect were lost ("ember@acme.test", a wrong account, whose right password then failed too).
    expect(page.get_by_label("E-mail")).to_be_focused()
    page.keyboard.type("member@acme.test")
    page.keyboard.press("Tab")
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct e-mail address and password")

    password = page.get_by_label("Password")
    expect(password).to_be_focused()
    expect(password).to_have_accessible_description(
        "Please enter a correct e-mail address and password. The password is case-sensitive."
    )
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_after_a_mismatch_the_keyboard_user_types_the_passwords_again_from_the_top_and_presses_enter(app, page, world):
    # All three fields come back empty. With focus on the confirmation, typing it and pressing Enter was stopped by
    # the browser's `required` on the fields above; focus starts at the first, described by the mismatch.
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/accounts/password/")
    new = "a-New-passw0rd-for-acme"
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password confirmation").fill(new + "x")
    page.get_by_role("button", name="Change password").click()

    old = page.get_by_label("Old password")
    expect(old).to_be_focused()
    expect(old).to_have_accessible_description("The two password fields didn’t match.")
    for typed in (PASSWORD, new, new):
        page.keyboard.type(typed)
        page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Your password was changed.")).to_be_visible()


def test_ctrl_enter_in_the_question_box_asks_and_enter_alone_starts_a_new_line(app, page, fake_anthropic):
    sign_in(page, app.url, "member@acme.test")
    box = page.get_by_label("Your question")
    box.focus()
    page.keyboard.type("Which MiCAR articles cover CASP authorisation?")
    page.keyboard.press("Enter")
    page.keyboard.type("And for ART issuers?")
    expect(box).to_have_value("Which MiCAR articles cover CASP authorisation?\nAnd for ART issuers?")
    expect(box).to_have_attribute("aria-keyshortcuts", "Control+Enter Meta+Enter")
    assert fake_anthropic.requests == []

    page.keyboard.press("Control+Enter")

    expect(page.locator("#answer-body h3")).to_have_text("Authorisation under MiCAR")
    expect(page.locator("#usage-used")).to_have_text("1")
    assert len(fake_anthropic.requests) == 1
    assert "And for ART issuers?" in str(fake_anthropic.requests[0]["body"]["messages"])


def test_ctrl_enter_on_an_empty_box_is_stopped_by_the_forms_own_check_and_sends_nothing(app, page, fake_anthropic):
    # form.submit() would skip the box's `required` and the page's script, posting the empty form as a page load.
    sign_in(page, app.url, "member@acme.test")
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.get_by_label("Your question").focus()

    page.keyboard.press("Control+Enter")
    page.get_by_role("button", name="Ask", exact=True).hover()  # a round trip to the page: any post has been sent

    assert page.evaluate("document.getElementById('query').validity.valueMissing")
    assert posts == []
    assert fake_anthropic.requests == []


def test_ctrl_enter_at_the_limit_says_nothing_was_sent_and_why(app, page, world, fake_anthropic):
    # Ask is disabled at the limit, so a keyboard user never reaches it; its shortcut did nothing, without a word, and a
    # screen reader user typing in the box was never told why the question was not sent.
    from tests.insights.helpers import seed

    seed(world.acme, *[600] * 20, user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    box = page.get_by_label("Your question")
    box.fill("What does MiCAR say about white papers?")

    box.press("Control+Enter")

    expect(page.locator("#ask-status")).to_have_text(
        "Not sent: your organisation's limit is reached. Ask is enabled again once a query frees up."
    )
    expect(box).to_have_value("What does MiCAR say about white papers?")
    expect(box).to_be_focused()
    assert fake_anthropic.requests == []
