"""Journeys 1-3: the Bring Your Own Model card in Settings, in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from orgs import services as org_services
from orgs.models import ApiToken
from tests.base import CANARY_KEY, GOOD_KEY
from tests.browser.support import MASK, PHONE, NetworkLog, create_token, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_settings(page) -> None:
    page.get_by_role("navigation", name="Organisation").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()


def is_green(css_color: str) -> bool:
    """An `rgb(r, g, b)` whose green clearly outweighs its red and blue: the documentation's "green indicator"."""
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_color)[:3])
    return green > red + 40 and green > blue + 40


def test_show_key_draws_the_typed_key_in_clear_to_check_it_and_hide_key_masks_it_again(app, page):
    sign_in(page, app.url, "admin@acme.test")
    open_settings(page)
    card = page.locator("#byom")
    key_input = card.get_by_label("Anthropic API key")
    key_input.fill(GOOD_KEY)

    card.get_by_role("button", name="Show key").click()

    expect(key_input).to_have_css("-webkit-text-security", "none")
    expect(key_input).to_be_focused()  # back to the field, to go on typing or correct it
    expect(key_input).to_have_value(GOOD_KEY)
    screenshot(page, "settings-key-shown", docs=False)

    card.get_by_role("button", name="Hide key").click()

    expect(key_input).to_have_css("-webkit-text-security", "disc")
    expect(card.get_by_role("button", name="Show key")).to_be_visible()
    card.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Claude API key saved.")).to_be_visible()
    # Replacing it: the new key's field has its own button, and starts masked.
    card.get_by_text("Replace with a new key").click()
    new_key = card.get_by_label("New Anthropic API key")
    expect(new_key).to_have_css("-webkit-text-security", "disc")
    card.get_by_role("button", name="Show key").click()
    expect(new_key).to_have_css("-webkit-text-security", "none")


def test_without_javascript_the_key_field_stays_masked_and_offers_no_show_button(app, page_without_script):
    sign_in(page_without_script, app.url, "admin@acme.test")
    open_settings(page_without_script)
    card = page_without_script.locator("#byom")

    expect(card.get_by_label("Anthropic API key")).to_have_css("-webkit-text-security", "disc")
    expect(card.get_by_role("button", name="Show key")).to_have_count(0)  # a button that could do nothing


def test_admin_saves_a_key_sees_it_masked_and_the_browser_never_receives_it(app, page):
    network = NetworkLog(page)
    sign_in(page, app.url, "admin@acme.test")
    open_settings(page)
    card = page.locator("#byom")
    expect(card.get_by_text("No key stored.")).to_be_visible()

    card.get_by_label("Anthropic API key").fill(CANARY_KEY)
    card.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_role("status").filter(has_text="Claude API key saved.")).to_be_visible()
    expect(card.locator("#byom-masked")).to_have_value(MASK)
    expect(card.locator(".indicator--ok")).to_be_visible()
    # "Once saved, the field displays a masked placeholder … and a green confirmation indicator."
    indicator = card.locator(".indicator--ok")
    assert is_green(indicator.evaluate("e => getComputedStyle(e).color"))
    assert is_green(indicator.locator(".dot").evaluate("e => getComputedStyle(e).backgroundColor"))
    assert CANARY_KEY not in page.content()
    assert any(MASK.encode() in (r.body or b"") for r in network.responses), "the network log recorded nothing"
    assert network.containing(CANARY_KEY) == []
    # A distinctive fragment too, in case a page ever echoes part of the key.
    assert network.containing("NEVER-LEAK-ME") == []


def test_a_key_typed_in_shows_only_discs_and_the_saved_key_answers_questions(app, page, fake_anthropic):
    # A text field masked by CSS, not a password field: no password manager offers to save the key as the
    # Opsion password, or fills that password in here.
    sign_in(page, app.url, "admin@acme.test")
    open_settings(page)
    key_input = page.locator("#byom").get_by_label("Anthropic API key")
    expect(key_input).to_have_attribute("type", "text")
    expect(key_input).to_have_css("-webkit-text-security", "disc")

    key_input.press_sequentially(GOOD_KEY)

    expect(key_input).to_have_value(GOOD_KEY)  # the field holds what was typed; only its drawing is masked
    expect(key_input).to_have_css("-webkit-text-security", "disc")
    page.locator("#byom").get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Claude API key saved.")).to_be_visible()
    assert GOOD_KEY not in page.content()

    page.get_by_role("navigation", name="Organisation").get_by_role("link", name="AI Insights").click()
    expect(page.locator("#usage-limit")).to_have_text("200")
    page.get_by_label("Your question").fill("Which MiCAR articles cover CASP authorisation?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", level=3)).to_have_text("Authorisation under MiCAR")
    assert fake_anthropic.keys_used == [GOOD_KEY]


def test_admin_removes_the_key_through_the_confirmation_step(app, page, world):
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    network = NetworkLog(page)
    sign_in(page, app.url, "admin@acme.test")
    open_settings(page)
    card = page.locator("#byom")
    expect(card.locator("#byom-masked")).to_have_value(MASK)

    card.get_by_role("button", name="Remove the stored key").click()
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text("Remove the stored key?")
    expect(card.locator("#byom-masked")).to_have_value(MASK)  # nothing removed until confirmed
    confirm.get_by_role("button", name="Yes, remove the key").click()

    expect(page.get_by_role("status").filter(has_text="Claude API key removed.")).to_be_visible()
    key_input = card.get_by_label("Anthropic API key")
    expect(key_input).to_have_value("")
    expect(key_input).to_have_attribute("type", "text")
    expect(key_input).to_have_css("-webkit-text-security", "disc")
    expect(card.locator("#byom-masked")).to_have_count(0)
    expect(card.locator(".indicator")).to_have_count(0)
    assert network.containing(GOOD_KEY) == []
    # Back leads to the confirmation page again, not to Chromium's "Confirm Form Resubmission".
    page.go_back()
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    expect(page.locator("#byom")).to_contain_text("No key stored.")


def test_remove_pressed_after_a_colleague_removed_the_key_says_nothing_was_removed(app, page, world):
    # The page still showed the masked key and its Remove button; pressing it landed on "No key stored." without a
    # word, leaving the Owner to wonder whether they had just removed it.
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)
    sign_in(page, app.url, "owner@acme.test")
    open_settings(page)
    card = page.locator("#byom")
    org_services.claude_api_key_remove(membership=admin, ip=None)

    card.get_by_role("button", name="Remove the stored key").click()

    expect(page.get_by_role("status").filter(has_text="nothing was removed")).to_have_text(
        "No Claude API key is stored, so nothing was removed: it had already been removed (the audit log below says "
        "by whom and when)."
    )
    expect(page.get_by_role("alertdialog")).to_have_count(0)
    expect(card).to_contain_text("No key stored.")
    expect(page.get_by_role("region", name="Audit log").get_by_role("row").nth(1)).to_contain_text(
        "Claude API key removed"
    )


def test_member_sees_the_card_read_only(app, page, world):
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    sign_in(page, app.url, "member@acme.test")
    open_settings(page)
    card = page.locator("#byom")

    expect(card.locator("#byom-masked")).to_have_value(MASK)
    expect(card.locator(".indicator--ok")).to_be_visible()
    expect(card).to_contain_text("Only an Owner or Admin can change this key. Your role is Member.")
    expect(card.get_by_role("button")).to_have_count(0)
    expect(card.locator("form")).to_have_count(0)
    expect(card.locator("input:not([readonly])")).to_have_count(0)


def test_admin_of_a_professional_organisation_sees_no_card(app, page):
    sign_in(page, app.url, "admin@globex.test")
    open_settings(page)

    expect(page.get_by_role("heading", name="Organisation")).to_be_visible()
    expect(page.get_by_text("Professional", exact=True)).to_be_visible()
    expect(page.locator("#byom")).to_have_count(0)
    expect(page.get_by_text("Bring Your Own Model")).to_have_count(0)
    expect(page.get_by_label("Anthropic API key")).to_have_count(0)


def test_malformed_key_is_refused_next_to_the_field_and_the_input_comes_back_empty(app, page, console):
    console.allow(400)  # the refusal re-renders the page with status 400
    sign_in(page, app.url, "admin@acme.test")
    open_settings(page)
    card = page.locator("#byom")
    malformed = "sk-ant-api03-this key has spaces in it and is long enough"
    # The form's rule is read with the field, before anything is refused.
    expect(card.get_by_label("Anthropic API key")).to_have_accessible_description(
        "Create one at console.anthropic.com. It starts with sk-ant-."
    )

    card.get_by_label("Anthropic API key").fill(malformed)
    card.get_by_role("button", name="Save", exact=True).click()

    error = card.locator("#byom-error")
    expect(error).to_have_text("The key must not contain spaces or line breaks.")
    key_input = card.get_by_label("Anthropic API key")
    expect(key_input).to_have_value("")
    expect(key_input).to_have_attribute("aria-invalid", "true")
    expect(key_input).to_have_accessible_description(
        "The key must not contain spaces or line breaks. Create one at console.anthropic.com. It starts with sk-ant-."
    )
    error_box, input_box = error.bounding_box(), key_input.bounding_box()
    assert abs(input_box["y"] - (error_box["y"] + error_box["height"])) < 80, "the message is not next to the field"
    expect(card.locator("#byom-masked")).to_have_count(0)
    assert "this key has spaces" not in page.content()


def test_on_a_phone_a_refused_replacement_brings_the_field_and_its_error_into_view(app, page, world, console):
    # The green "Key saved and accepted" of the stored key sits at the top; the refusal must not hide below it.
    console.allow(400)
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    page.set_viewport_size(PHONE)
    sign_in(page, app.url, "admin@acme.test")
    open_settings(page)
    card = page.locator("#byom")
    expect(card.get_by_label("Stored Anthropic API key")).to_have_value(MASK)
    card.get_by_text("Replace with a new key").click()

    card.get_by_label("New Anthropic API key").fill("sk-ant-api03-this key has spaces in it and is long enough")
    card.get_by_role("button", name="Save new key").click()

    key_input = card.get_by_label("New Anthropic API key")
    expect(key_input).to_be_focused()
    expect(key_input).to_be_in_viewport()
    expect(card.locator("#byom-error")).to_be_in_viewport()
    expect(card.locator("#byom-error")).to_have_text(
        "The key must not contain spaces or line breaks. Your new key was not saved: the stored key is unchanged."
    )


def test_copy_token_puts_the_new_token_on_the_clipboard_and_says_so(app, page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    create_token(page, app.url, "member@acme.test")
    token = page.locator("#new-token").inner_text()

    page.get_by_role("button", name="Copy token").click()

    expect(page.locator("#new-token-copied")).to_have_text("Copied to the clipboard.")
    screenshot(page, "settings-token-copied", docs=False)
    assert page.evaluate("navigator.clipboard.readText()") == token


def test_where_the_browser_refuses_the_clipboard_copy_token_selects_it_for_ctrl_c(app, page):
    page.context.clear_permissions()
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    create_token(page, app.url, "member@acme.test")

    page.get_by_role("button", name="Copy token").click()

    expect(page.locator("#new-token-copied")).to_contain_text("the token is selected, press Ctrl+C")
    assert page.evaluate("window.getSelection().toString()") == page.locator("#new-token").inner_text()


def test_without_javascript_a_new_token_offers_no_copy_button(app, page_without_script):
    create_token(page_without_script, app.url, "member@acme.test")

    expect(page_without_script.get_by_role("button", name="Copy token")).to_have_count(0)


def test_a_new_api_token_is_shown_once_and_a_reload_creates_no_second_one(app, page, world, console):
    console.allow(409)  # the reload's answer
    create_token(page, app.url, "member@acme.test")

    new_token = page.locator("#new-token")
    expect(new_token).to_have_text(re.compile(r"^opsn_"))
    page.reload()  # the browser posts the form again

    expect(page.get_by_role("alert")).to_contain_text("This form already created its token")
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.get_by_role("button", name="Revoke token Nightly export")).to_have_count(1)
    assert ApiToken.objects.filter(user=world.acme_member).count() == 1
