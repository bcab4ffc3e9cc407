"""The address typed on the sign-in page goes along to "Forgot your password?", and back: typed once, not twice.

Carried in the link's fragment, which the browser never sends: no server, proxy or access log sees the address in an
URL, and the page it opens takes it out of its address bar (and history) as it fills the box in."""

import pytest
from playwright.sync_api import expect

from tests.base import CANARY_KEY, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mail(settings):
    settings.EMAIL_CONFIGURED = True


def test_a_refused_sign_in_s_address_is_in_the_reset_page_s_box(app, page, world, mail):
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()

    page.get_by_role("link", name="Forgot your password?").click()

    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("member@acme.test")
    assert page.url == f"{app.url}/accounts/password/reset/"  # out of the address bar once read
    assert page.evaluate("location.hash") == ""


def test_an_address_typed_but_not_sent_goes_along_and_comes_back(app, page, world, mail):
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_label("E-mail").fill("owner@acme.test")

    page.get_by_role("link", name="Forgot your password?").click()
    box = page.get_by_label("E-mail")
    expect(box).to_have_value("owner@acme.test")
    box.fill("admin@acme.test")  # mended there: that is the one taken back
    page.get_by_role("link", name="Back to sign in").click()

    expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("admin@acme.test")
    expect(page.get_by_label("Password")).to_be_focused()  # the address is there: the password is what is left
    assert page.url == f"{app.url}/accounts/login/"
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_an_empty_box_carries_nothing_and_a_mangled_fragment_is_ignored(app, page, world, mail):
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_label("E-mail")).to_have_value("")
    assert page.url == f"{app.url}/accounts/password/reset/"

    # Cut short when copied (not valid percent-encoding): the page still works, its box empty (the page fixture fails
    # the test on a script error).
    page.goto(f"{app.url}/accounts/password/reset/#email=member%40acme.te%E0%A4%A")
    expect(page.get_by_label("E-mail")).to_have_value("")
    expect(page.get_by_label("E-mail")).to_be_focused()


def test_a_key_pasted_into_the_address_box_is_not_carried_into_an_address_or_the_other_box(app, page, world, mail):
    # The wrong clipboard: what the server refuses to send back in the box (orgs.forms.AddressField) must not be put
    # into an address either, where the browser's history keeps it, nor into the other page's box. Only what the
    # browser takes for an e-mail address goes along.
    visited = []
    page.on("framenavigated", lambda frame: visited.append(frame.url))
    page.goto(f"{app.url}/accounts/login/")
    page.get_by_label("E-mail").fill(CANARY_KEY)

    page.get_by_role("link", name="Forgot your password?").click()

    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("")
    assert not [url for url in visited if CANARY_KEY[13:45] in url], visited
