"""Journey 8: no errors in the browser console on any page (every other journey checks its own pages too)."""

import pytest
from playwright.sync_api import expect

from orgs import services as org_services
from tests.base import GOOD_KEY
from tests.browser.support import ConsoleLog, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_every_page_loads_without_console_errors(app, page, world, console):
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    page.goto(f"{app.url}/accounts/login/")
    expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()
    for email, slug in (("admin@acme.test", "acme"), ("member@acme.test", "acme"), ("admin@globex.test", "globex")):
        sign_in(page, app.url, email)
        for path in (f"/orgs/{slug}/insights/", f"/orgs/{slug}/settings/"):
            page.goto(f"{app.url}{path}")
            expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.goto(f"{app.url}/api/v1/docs")  # Swagger UI from our own static files, under the CSP
        expect(page.locator(".opblock").first).to_be_visible()
        page.goto(f"{app.url}/orgs/{slug}/settings/")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()
    sign_in(page, app.url, "outsider@elsewhere.test")  # belongs to no organisation
    page.goto(f"{app.url}/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()

    assert console.errors == []


def test_the_console_check_catches_a_csp_violation_and_a_script_error(app, browser):
    # The check above must be able to fail: break the page in two ways and watch it notice.
    context = browser.new_context()
    try:
        console = ConsoleLog(context)
        page = context.new_page()
        page.goto(f"{app.url}/accounts/login/")
        with page.expect_console_message(lambda message: message.type == "error"):
            page.evaluate("document.body.setAttribute('style', 'color: red')")  # an inline style: the CSP refuses it
        with page.expect_event("pageerror"):
            page.evaluate("setTimeout(() => { throw new Error('boom') }, 0)")
        assert len(console.errors) == 2, console.errors
        assert "Content Security Policy" in console.errors[0]
        assert "boom" in console.errors[1]
    finally:
        context.close()
