"""Journeys 4-6: asking AI Insights in a real browser, with the fake Anthropic server behind the app."""

import re

import pytest
from playwright.sync_api import expect

from insights.models import KeySource
from insights.suggestions import SUGGESTED_QUERIES
from orgs import services as org_services
from orgs.models import Membership, Role
from tests.base import GOOD_KEY, PASSWORD
from tests.browser.support import DRAFTS_KEPT, assert_no_accessibility_violations, sign_in
from tests.conftest import PLATFORM_KEY
from tests.insights.helpers import seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INVALID_KEY_MESSAGE = "Your organisation's Claude API key is invalid. Update it in Settings → AI Insights."
OWN_KEY_HINT_MEMBER = (
    " An Owner or Admin can raise the limit to 200 queries per {window} by saving your organisation's own "
    "Anthropic key in Settings."
)
OWN_KEY_HINT_ADMIN = (
    " Save your organisation's own Anthropic key in Settings to raise the limit to 200 queries per 60 minutes."
)


def test_end_user_picks_a_micar_suggestion_and_watches_the_answer_stream_in(app, page, fake_anthropic):
    fake_anthropic.behave(PLATFORM_KEY, "hold")  # first piece of the answer, then wait for release
    sign_in(page, app.url, "member@acme.test")
    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()
    expect(page.locator("#usage-used")).to_have_text("0")
    question = next(q for q in SUGGESTED_QUERIES if "MiCAR" in q)

    page.get_by_role("button", name=question).click()
    expect(page.get_by_label("Your question")).to_have_value(question)
    page.get_by_role("button", name="Ask", exact=True).click()

    body = page.locator("#answer-body")
    expect(body).to_contain_text("## Authorisation under")  # streamed while Anthropic still holds
    expect(body.locator("h3")).to_have_count(0)
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_disabled()
    expect(page.locator("#usage-used")).to_have_text("1")

    fake_anthropic.release.set()
    expect(body.get_by_role("heading", level=3, name="Authorisation under MiCAR")).to_be_visible()
    expect(body.locator("strong")).to_have_text("authorised by the competent authority")
    expect(body.get_by_role("listitem")).to_have_count(2)
    expect(body).not_to_contain_text("##")
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    expect(page.locator("#usage-used")).to_have_text("1")
    assert fake_anthropic.keys_used == [PLATFORM_KEY]
    assert question in str(fake_anthropic.requests[0]["body"]["messages"])


def test_at_the_limit_ask_waits_beside_a_usable_question_box_until_the_next_query_frees_up(
    app, page, world, fake_anthropic
):
    # Nineteen asked ten minutes ago and one whose hour ends a few seconds after the page loads: the limit.
    seed(world.acme, 3590, *[600] * 19, user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(page.locator("#usage-used")).to_have_text("20")
    expect(ask).to_be_disabled()
    expect(ask).to_have_accessible_description(re.compile(r"^Rate limit reached \(20/hour\)\. Try again in \d+ s\.$"))
    question = page.get_by_label("Your question")
    question.fill("What does MiCAR say about white papers?")  # typed while Ask waits: nothing is lost
    question.press("Control+Enter")  # Ask's shortcut waits too
    assert fake_anthropic.requests == []

    # The script enables Ask once the refusal's time has passed, as a reload would show it.
    expect(ask).to_be_enabled(timeout=20_000)
    expect(page.locator("#ask-limit")).to_be_hidden()
    expect(page.locator("#ask-status")).to_have_text("A query has freed up: you can ask again.")
    expect(question).to_have_value("What does MiCAR say about white papers?")
    ask.click()

    # That answer took the last query again: Ask waits for the next, saying so in the page's words.
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    expect(ask).to_be_disabled()
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    page.reload()
    expect(ask).to_be_disabled()
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    assert len(fake_anthropic.requests) == 1  # the one Ask sent once enabled; Ctrl+Enter sent nothing


def test_at_the_limit_the_question_box_is_described_by_why_ask_is_disabled_until_a_query_frees_up(
    app, page, world, fake_anthropic
):
    # A screen reader landing in the question box heard nothing of the limit: only the disabled Ask, out of the
    # keyboard's reach, was described by it.
    seed(world.acme, 3590, *[600] * 19, user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    question = page.get_by_label("Your question")
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_disabled()
    expect(question).to_have_accessible_description(
        re.compile(r"^Rate limit reached \(20/hour\)\. Try again in \d+ s\.$")
    )

    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled(timeout=20_000)
    expect(question).not_to_have_attribute("aria-describedby", re.compile("ask-limit"))
    expect(question).to_have_accessible_description("")


def test_at_the_limit_a_question_box_already_described_keeps_that_description_beside_the_limits(
    app, page, world, fake_anthropic
):
    # Signed out before the question was sent, and the limit reached meanwhile: the page the sign-in leads back to
    # describes the box by what happened to the question, and by the limit while Ask waits.
    sign_in(page, app.url, "member@acme.test")
    page.context.clear_cookies(name="sessionid")
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    seed(world.acme, 3590, *[600] * 19, user=world.acme_member)
    page.get_by_role("button", name="Ask", exact=True).click()
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    question = page.get_by_label("Your question")
    expect(question).to_have_value("What does MiCAR say about white papers?")
    expect(question).to_have_accessible_description(
        re.compile(
            r"^You were signed out before this question was sent: nothing was asked yet\. Press Ask to send it\. "
            r"Rate limit reached \(20/hour\)\. Try again in \d+ s\.$"
        )
    )

    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled(timeout=20_000)
    expect(question).to_have_attribute("aria-describedby", "ask-status")
    expect(question).to_have_accessible_description("A query has freed up: you can ask again.")
    assert fake_anthropic.requests == []


def test_at_the_limit_the_meter_counts_down_and_stops_saying_limit_reached_once_a_query_frees_up(
    app, page, world, fake_anthropic
):
    # The hour's oldest query leaves a few seconds after the page loads: the meter said "frees up in 9 s" until a
    # reload, and went on saying "Limit reached" with the count at 20 of 20 beside an Ask enabled again.
    seed(world.acme, 3585, *[600] * 19, user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    reset_in, beside_ask = page.locator("#usage-reset-in"), page.locator("#ask-limit")
    expect(page.locator("#usage-reset")).to_be_visible()
    loaded = int(reset_in.inner_text().removesuffix(" s"))

    expect(reset_in).to_have_text(f"{loaded - 2} s", timeout=4000)  # as a clock would, a second at a time
    expect(beside_ask).to_have_text(f"Rate limit reached (20/hour). Try again in {loaded - 2} s.")

    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled(timeout=20_000)
    expect(page.locator("#usage-reset")).to_be_hidden()  # as a reload now shows the meter
    expect(page.locator("#usage-used")).to_have_text("19")
    expect(page.locator("#usage-meter")).not_to_have_class(re.compile(r"meter--full"))
    expect(page.locator("#usage-bar")).to_have_attribute("value", "19")


def test_once_a_query_frees_up_ask_waits_for_the_window_to_be_read_again(app, page, world, fake_anthropic):
    # Ask was enabled as the oldest query left, before the read of the window answered: a question asked meanwhile
    # could meet a window a colleague had filled again, beside a meter still saying "Limit reached". Now Ask waits
    # for the read, however long a busy server takes to answer it.
    seed(world.acme, 3590, *[600] * 19, user=world.acme_member)
    held = []
    page.route("**/insights/usage", lambda route: held.append((route, route.fetch())))
    sign_in(page, app.url, "member@acme.test")
    ask = page.get_by_role("button", name="Ask", exact=True)
    while not held:  # the read, answered by the app, and held here
        page.wait_for_timeout(50)
    page.wait_for_timeout(300)

    expect(ask).to_be_disabled()
    expect(page.locator("#usage-reset")).to_be_visible()
    expect(page.locator("#ask-limit")).to_be_visible()

    route, read = held[0]
    assert read.json()["used"] == 19
    route.fulfill(response=read)
    expect(ask).to_be_enabled()
    expect(page.locator("#usage-used")).to_have_text("19")
    expect(page.locator("#usage-reset")).to_be_hidden()


def test_a_limit_reached_since_the_page_loaded_is_refused_and_ask_then_waits(app, page, world, fake_anthropic, console):
    console.allow(429)  # the refused query's answer to fetch
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, *[600] * 20, user=world.acme_admin)  # the team used the hour's twenty meanwhile

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    # The wait is said once, beside Ask, where it counts down (and in the meter); the alert gives the refusal.
    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "Rate limit reached (20/hour)." + OWN_KEY_HINT_MEMBER.format(window="60 minutes")
    )
    expect(page.locator("#usage-used")).to_have_text("20")
    expect(page.locator("#usage-reset")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_disabled()
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    assert fake_anthropic.requests == []


def test_an_admin_reaching_the_platform_limit_by_streaming_is_told_their_own_key_raises_it(
    app, page, world, fake_anthropic, console
):
    # The streamed path says what a reload says: the meter's "Limit reached" and a refusal both point an Owner or
    # Admin of an Institutional organisation without its own key to the Settings card.
    console.allow(429)
    seed(world.acme, *[600] * 18, user=world.acme_admin)
    sign_in(page, app.url, "admin@acme.test")
    expect(page.locator("#usage-reset")).to_be_hidden()

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#usage-used")).to_have_text("19")
    expect(page.locator("#ask-status")).to_have_text("Answer ready.")
    seed(world.acme, 600, user=world.acme_member)  # the twentieth, asked meanwhile by a colleague

    page.get_by_role("button", name="Ask", exact=True).click()
    alert = page.locator("#answer-error").get_by_role("alert")
    expect(alert).to_have_text("Rate limit reached (20/hour)." + OWN_KEY_HINT_ADMIN)
    expect(page.locator("#usage-reset")).to_have_text(
        "Limit reached. The next query frees up in 50 min." + OWN_KEY_HINT_ADMIN
    )
    alert.get_by_role("link", name="Settings").click()
    expect(page).to_have_url(f"{app.url}/orgs/acme/settings/#byom")


def test_past_an_hour_the_script_rounds_the_time_to_retry_up_as_the_page_does(
    app, page, world, fake_anthropic, console, settings
):
    # A 2-hour window whose oldest query leaves in just over an hour: "1 h" would be early.
    console.allow(429)
    settings.INSIGHTS_WINDOW_SECONDS = 7200
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, *[3590] * 20, user=world.acme_member)  # reached since the page loaded; leaves in 3,610 s

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "Rate limit reached (20 per 2 hours)." + OWN_KEY_HINT_MEMBER.format(window="2 hours")
    )
    expect(page.locator("#usage-reset")).to_have_text(
        "Limit reached. The next query frees up in 1 h 1 min." + OWN_KEY_HINT_MEMBER.format(window="2 hours")
    )
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20 per 2 hours). Try again in 1 h 1 min.")
    page.reload()  # the page says the same
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20 per 2 hours). Try again in 1 h 1 min.")


def test_refused_above_a_lowered_limit_the_meter_keeps_the_real_count(app, page, world, fake_anthropic, console):
    console.allow(429)
    # 25 asked on the organisation's own key, removed once the page had loaded: the limit is now 20.
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)
    seed(world.acme, *[300] * 25, user=world.acme_member, source=KeySource.ORGANISATION)
    sign_in(page, app.url, "member@acme.test")
    expect(page.locator("#usage-used")).to_have_text("25")
    org_services.claude_api_key_remove(membership=admin, ip=None)

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-error").get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")
    expect(page.locator("#usage-used")).to_have_text("25")
    expect(page.locator("#usage-over")).to_be_visible()
    assert fake_anthropic.requests == []


def test_a_question_refused_after_the_key_was_removed_names_the_platform_key_beside_its_limit(
    app, page, world, fake_anthropic, console
):
    # Another Admin removed the key after this page loaded, and the window already holds more than the platform's
    # 20: the question is refused, the meter goes to "25 of 20", says the limit was lowered because the organisation's
    # own key was removed, and went on saying "Queries use your organisation's Anthropic key" beside it.
    console.allow(429)
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)
    seed(world.acme, *[300] * 25, user=world.acme_member, source=KeySource.ORGANISATION)
    sign_in(page, app.url, "member@acme.test")
    expect(page.locator("#usage-meter")).to_contain_text("Queries use your organisation's Anthropic key.")
    org_services.claude_api_key_remove(membership=admin, ip=None)

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 55 min.")
    expect(page.locator("#usage-limit")).to_have_text("20")
    expect(page.locator("#usage-over")).to_be_visible()
    expect(page.locator("#usage-meter")).to_contain_text("Queries use Opsion's platform key.")
    expect(page.locator("#usage-meter")).not_to_contain_text("200-query cap", use_inner_text=True)
    page.reload()  # what the page says of the same window
    expect(page.locator("#usage-meter")).to_contain_text("Queries use Opsion's platform key.")
    assert fake_anthropic.requests == []


def test_a_key_removed_since_the_page_loaded_leaves_no_meter_naming_it_beside_the_platform_limit(
    app, page, world, fake_anthropic
):
    # Another Admin removed the key after this page loaded: the answer came on Opsion's platform key, the meter went to
    # "of 20", and it must not go on saying the organisation's key answers (nor offer the 200-query cap's words).
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)
    seed(world.acme, *[300] * 19, user=world.acme_member, source=KeySource.ORGANISATION)  # this answer is the 20th
    sign_in(page, app.url, "member@acme.test")
    expect(page.locator("#usage-meter")).to_contain_text("Queries use your organisation's Anthropic key.")
    org_services.claude_api_key_remove(membership=admin, ip=None)

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-body").get_by_role("heading", level=3)).to_be_visible()
    expect(page.locator("#usage-limit")).to_have_text("20")
    expect(page.locator("#usage-meter")).to_contain_text("Queries use Opsion's platform key.")
    expect(page.locator("#usage-reset")).to_contain_text("Limit reached.")
    expect(page.locator("#usage-meter")).not_to_contain_text("200-query cap", use_inner_text=True)
    expect(page.locator("#history li").first).to_contain_text("Opsion's platform key")
    assert fake_anthropic.keys_used == [PLATFORM_KEY]


def test_a_key_saved_since_the_page_loaded_is_named_by_the_meter_once_it_answers(app, page, world, fake_anthropic):
    sign_in(page, app.url, "member@acme.test")
    expect(page.locator("#usage-meter")).to_contain_text("Queries use Opsion's platform key.")
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-body").get_by_role("heading", level=3)).to_be_visible()
    expect(page.locator("#usage-limit")).to_have_text("200")
    expect(page.locator("#usage-meter")).to_contain_text("Queries use your organisation's Anthropic key.")
    assert fake_anthropic.keys_used == [GOOD_KEY]


def ask_on_acmes_own_key(page, app, world, fake_anthropic, behaviour: str, *, as_: str):
    """Acme's own key saved, Anthropic answering it with `behaviour`: `as_` signs in and asks. Returns the answer
    card's alert."""
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    fake_anthropic.behave(GOOD_KEY, behaviour)
    sign_in(page, app.url, as_)
    page.get_by_label("Your question").fill("Which MiCAR articles cover CASP authorisation?")
    page.get_by_role("button", name="Ask", exact=True).click()
    return page.locator("#answer-error").get_by_role("alert")


def test_a_streamed_billing_refusal_links_to_the_anthropic_console(app, page, world, fake_anthropic):
    alert = ask_on_acmes_own_key(page, app, world, fake_anthropic, "billing_error", as_="member@acme.test")

    expect(alert).to_contain_text("should check Plans & Billing at console.anthropic.com; then ask again.")
    link = alert.get_by_role("link", name="console.anthropic.com")
    expect(link).to_have_attribute("href", "https://console.anthropic.com/")
    expect(link).not_to_have_attribute("target", "_blank")


def test_a_key_anthropic_rejects_shows_the_invalid_key_message_and_settings_turns_red(app, page, world, fake_anthropic):
    alert = ask_on_acmes_own_key(page, app, world, fake_anthropic, "auth_error", as_="admin@acme.test")

    expect(page.locator("#usage-limit")).to_have_text("200")
    expect(page.locator("#usage-meter")).to_contain_text("your organisation's Anthropic key")
    expect(alert).to_have_text(INVALID_KEY_MESSAGE + " Go to Settings.")  # the way to fix it, at hand
    assert fake_anthropic.keys_used == [GOOD_KEY]
    alert.get_by_role("link", name="Go to Settings").click()
    indicator = page.locator("#byom .indicator")
    expect(indicator).to_have_class("indicator indicator--bad")
    expect(indicator).to_have_text(INVALID_KEY_MESSAGE)


def test_a_member_whose_organisations_key_is_rejected_is_told_whom_to_ask(app, page, world, fake_anthropic):
    alert = ask_on_acmes_own_key(page, app, world, fake_anthropic, "auth_error", as_="member@acme.test")

    expect(alert).to_have_text(INVALID_KEY_MESSAGE + " Ask an Owner or Admin of your organisation to update it.")
    expect(alert.get_by_role("link")).to_have_count(0)


def test_asking_after_the_session_expired_leads_to_sign_in_not_a_blank_answer(app, page, fake_anthropic):
    sign_in(page, app.url, "member@acme.test")
    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()
    page.context.clear_cookies(name="sessionid")  # the session expired (the CSRF cookie is still there)

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(
        "You were signed out before your question was sent, so nothing was asked. "
        "Sign in and it will be back in the box, ready to send."
    )
    assert fake_anthropic.requests == []

    # Signed in again, the person is back on the page with their question still in the box.
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    question = page.get_by_label("Your question")
    expect(question).to_have_value("What does MiCAR say about white papers?")
    expect(page.locator("#ask-status")).to_have_text(
        "You were signed out before this question was sent: nothing was asked yet. Press Ask to send it."
    )
    # Said on a page load, where a role=status is not announced: focus starts on the question, read with it.
    expect(question).to_be_focused()
    expect(question).to_have_accessible_description(
        "You were signed out before this question was sent: nothing was asked yet. Press Ask to send it."
    )
    # The server hands it back once; the tab keeps it, unsent, over a reload, without saying so again.
    page.reload()
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    expect(page.locator("#ask-status")).to_have_text("")
    assert fake_anthropic.requests == []


def test_a_question_typed_as_the_session_expired_is_not_put_back_for_whoever_else_signs_in_there(
    app, page, fake_anthropic
):
    # A shared computer: the member's session ends while they type, they walk away from the sign-in page, and a
    # colleague of the same organisation signs in on it. The page itself kept the question in the tab's storage,
    # beside the server's copy on the sign-in page: neither may hand it to the colleague.
    sign_in(page, app.url, "member@acme.test")
    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()
    page.context.clear_cookies(name="sessionid")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in to Opsion")).to_be_visible()

    page.get_by_label("E-mail").fill("admin@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()
    page.wait_for_load_state("load")  # the page's script has run: whatever it would put back is there
    assert page.get_by_label("Your question").input_value() == ""
    expect(page.locator("#ask-status")).to_have_text("")
    assert fake_anthropic.requests == []


def test_asking_from_a_page_whose_form_went_stale_refreshes_it_and_keeps_the_question(
    app, page, fake_anthropic, console
):
    console.allow(403)  # the stale form's refusal, before the page refreshes itself
    sign_in(page, app.url, "member@acme.test")
    expect(page.get_by_role("heading", name="AI Insights")).to_be_visible()
    other_tab = page.context.new_page()  # signed out and in again there: this tab's CSRF token is stale
    other_tab.goto(f"{app.url}/orgs/acme/insights/")
    other_tab.get_by_role("button", name="Sign out").click()
    sign_in(other_tab, app.url, "member@acme.test")
    other_tab.close()

    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#ask-status")).to_contain_text("Your sign-in changed since this page was loaded")
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    assert fake_anthropic.requests == []
    page.get_by_role("button", name="Ask", exact=True).click()  # now with the fresh form
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    assert len(fake_anthropic.requests) == 1


def test_each_question_joins_recent_queries_at_once_answered_or_failed(app, page, fake_anthropic):
    sign_in(page, app.url, "member@acme.test")
    history = page.locator("#history")
    expect(page.get_by_text("No queries yet.")).to_be_visible()

    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    expect(history.locator("> li")).to_have_count(1)
    expect(history.locator("> li").first).to_contain_text("Which MiCAR articles govern ART reserves?")
    expect(page.get_by_text("No queries yet.")).to_have_count(0)

    fake_anthropic.behave(PLATFORM_KEY, "midstream_error")
    page.get_by_label("Your question").fill("Does DORA apply to CASPs?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "AI Insights is temporarily unavailable. Please try again shortly."
    )
    # The part that arrived stays, rendered like any answer rather than as raw Markdown.
    expect(page.locator("#answer-body h3")).to_have_text("Authorisation under MiCAR")
    expect(page.locator("#answer-body")).not_to_contain_text("##")
    newest = history.locator("> li").first
    expect(history.locator("> li")).to_have_count(2)
    expect(newest).to_contain_text("Does DORA apply to CASPs?")
    expect(newest.locator(".badge--bad")).to_have_text("failed")

    shown = history.inner_html()
    page.reload()
    expect(history.locator("> li")).to_have_count(2)
    # What the page showed without a reload is what a reload shows (the newest entry opens then).
    assert shown.split() == history.inner_html().replace('<details open="" data-auto-open="">', "<details>").split()


def test_the_part_of_an_answer_that_arrived_before_a_failure_says_it_is_only_part(app, page, fake_anthropic):
    # The answer card keeps what Claude wrote before the failure; read on its own (a list missing its last items,
    # a sentence cut at a full stop) it could pass for the whole answer, which the card must not let it do.
    fake_anthropic.behave(PLATFORM_KEY, "midstream_error")
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Does DORA apply to CASPs?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "AI Insights is temporarily unavailable. Please try again shortly."
    )
    expect(page.locator("#answer-body h3")).to_have_text("Authorisation under MiCAR")
    expect(page.locator("#answer-notice")).to_have_text(
        "Only part of the answer was received: it stops where the failure cut it off. Ask again for a whole answer."
    )

    fake_anthropic.reset()
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body h3")).to_have_text("Authorisation under MiCAR")
    expect(page.locator("#answer-notice")).to_be_empty()  # a whole answer: nothing to say


@pytest.mark.parametrize(
    ("error_type", "alert_says"),
    [("authentication_error", INVALID_KEY_MESSAGE), ("billing_error", "should check Plans & Billing")],
)
def test_part_of_an_answer_cut_off_by_the_organisations_key_or_account_does_not_invite_asking_again(
    app, page, world, fake_anthropic, error_type, alert_says
):
    # The alert says the key or the Anthropic account must be fixed first; the notice above the part that arrived said
    # "Ask again for a whole answer", and asking again fails the same way until then.
    fake_anthropic.midstream_error = error_type
    alert = ask_on_acmes_own_key(page, app, world, fake_anthropic, "midstream_error", as_="member@acme.test")

    expect(alert).to_contain_text(alert_says)
    expect(page.locator("#answer-body h3")).to_have_text("Authorisation under MiCAR")
    expect(page.locator("#answer-notice")).to_have_text(
        "Only part of the answer was received: it stops where the failure cut it off."
    )


def test_a_new_answer_closes_the_entry_the_page_had_opened_but_not_those_the_reader_opened(
    app, page, world, fake_anthropic
):
    seed(world.acme, 600, 300, user=world.acme_member)  # "seeded 1" is the newest
    sign_in(page, app.url, "member@acme.test")
    entries = page.locator("#history > li details")
    expect(entries.nth(0)).to_have_attribute("open", "")  # no answer showing: the newest is open
    entries.nth(1).locator("summary").click()  # the reader opens the older one
    expect(entries.nth(1)).to_have_attribute("open", "")

    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    expect(entries).to_have_count(3)
    expect(entries.nth(0)).not_to_have_attribute("open", "")  # its answer is in the answer card
    expect(entries.nth(1)).not_to_have_attribute("open", "")  # the one the page had opened
    expect(entries.nth(2)).to_have_attribute("open", "")  # the one the reader opened


def test_a_question_over_the_limit_is_refused_whole_not_cut_short_in_silence(app, page, fake_anthropic, console):
    # The box used to drop everything past 4,000 characters from a paste, often the question itself.
    console.allow(400)
    sign_in(page, app.url, "member@acme.test")
    long_question = (
        "Background: " + "our CASP offers custody and exchange services. " * 90 + "So: do we need a licence?"
    )
    assert len(long_question) > 4000

    page.get_by_label("Your question").fill(long_question)
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        f"Questions are limited to 4,000 characters; yours has {len(long_question):,}. Shorten it and ask again."
    )
    expect(page.get_by_label("Your question")).to_have_value(long_question)
    assert fake_anthropic.requests == []


def test_a_suggestion_picked_over_a_typed_question_can_be_undone(app, page):
    # A suggestion replaces what the box holds; a click on one by mistake must not lose a long question for good.
    sign_in(page, app.url, "member@acme.test")
    box = page.get_by_label("Your question")
    typed = "Our CASP holds client assets with a sub-custodian in Malta: what must our custody policy say?"
    box.fill(typed)

    page.get_by_role("button", name=SUGGESTED_QUERIES[1]).click()
    expect(box).to_have_value(SUGGESTED_QUERIES[1])
    expect(box).to_be_focused()

    page.keyboard.press("Control+z")
    expect(box).to_have_value(typed)


def test_a_question_of_only_spaces_is_answered_with_what_to_do_not_silence(app, page, fake_anthropic):
    # The box's `required` lets spaces through; the page must say why nothing happened, as the plain form does.
    sign_in(page, app.url, "member@acme.test")
    box = page.get_by_label("Your question")
    box.fill("   \n  ")

    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#ask-status")).to_have_text("Type a question first.")
    expect(box).to_be_focused()
    expect(page.locator("#usage-used")).to_have_text("0")
    assert fake_anthropic.requests == []


CUT_SHORT = (
    "Incomplete answer: Claude stopped at the length limit (1,024 tokens), so this answer was cut short. "
    "Ask a narrower question, or one part of it at a time, for a whole answer."
)


def test_a_streamed_answer_cut_off_at_the_length_cap_is_marked_incomplete_and_says_so(app, page, fake_anthropic):
    fake_anthropic.default = "max_tokens"
    sign_in(page, app.url, "member@acme.test")

    page.get_by_label("Your question").fill("Tell me everything MiCAR requires of a CASP.")
    page.get_by_role("button", name="Ask", exact=True).click()

    card = page.locator("#answer")
    expect(card.get_by_role("note")).to_have_text(CUT_SHORT)
    expect(card.locator("#answer-body h3")).to_have_text("Authorisation under MiCAR")
    # Announced once the card is no longer busy, in words (the notice's colour says nothing to a screen reader).
    expect(page.locator("#ask-status")).to_have_text(CUT_SHORT)
    newest = page.locator("#history > li").first
    expect(newest.locator(".badge--warn")).to_have_text("incomplete")
    expect(newest.locator(".stop-notice")).to_have_text(CUT_SHORT)  # inside the closed entry: its answer is above
    assert_no_accessibility_violations(page)

    # The next answer, whole, leaves no notice behind from this one.
    fake_anthropic.default = "ok"
    page.get_by_label("Your question").fill("And for an issuer of ARTs?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#ask-status")).to_have_text("Answer ready.")
    expect(card.get_by_role("note")).to_have_count(0)


def test_without_javascript_an_answer_claude_declined_says_so(app, page_without_script, fake_anthropic):
    page = page_without_script
    fake_anthropic.default = "refusal"
    sign_in(page, app.url, "member@acme.test")

    page.get_by_label("Your question").fill("Draft a way around the travel rule.")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer").get_by_role("note")).to_have_text(
        "Claude declined to answer this question. Any text shown was written before it stopped and is not an "
        "answer to rely on."
    )
    expect(page.locator(".answer__question .badge--warn")).to_have_text("declined")


def test_a_failed_or_refused_question_shows_its_reference_and_an_answer_clears_it(
    app, page, world, fake_anthropic, console
):
    console.allow(429)  # the refused query's answer to fetch
    sign_in(page, app.url, "member@acme.test")
    reference = page.locator("#answer-reference")

    fake_anthropic.behave(PLATFORM_KEY, "midstream_error")
    page.get_by_label("Your question").fill("Does DORA apply to CASPs?")
    with page.expect_response(lambda response: response.request.method == "POST") as failed:
        page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "AI Insights is temporarily unavailable. Please try again shortly."
    )
    expect(reference).to_have_text(f"Reference: {failed.value.headers['x-request-id']}")

    fake_anthropic.reset()
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    expect(reference).to_be_empty()

    seed(world.acme, *[600] * 20, user=world.acme_member)  # the limit reached meanwhile
    with page.expect_response(lambda response: response.request.method == "POST") as refused:
        page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-error").get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")
    expect(reference).to_have_text(f"Reference: {refused.value.headers['x-request-id']}")


def test_an_answers_bullets_look_the_same_in_the_answer_card_and_in_recent_queries(app, page, fake_anthropic):
    # Inside the history's own list an answer's list was a second level to the browser: hollow circles, not discs.
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("How does a CASP get authorised?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body ul > li").first).to_be_visible()

    def bullet(selector: str) -> str:
        return page.locator(selector).first.evaluate("li => getComputedStyle(li).listStyleType")

    in_the_card = bullet("#answer-body ul > li")
    page.reload()
    page.locator("#history > li summary").first.click()

    assert in_the_card == bullet("#history .prose ul > li") == "disc"


# --- Older queries -------------------------------------------------------------------------------------------------
# Seeded more than an hour ago: out of the rolling window, so asking is never refused for them.


def test_without_javascript_show_older_queries_pages_back_and_leads_back_to_the_newest(app, page_without_script, world):
    page = page_without_script
    seed(world.acme, *range(4000, 4015), user=world.acme_member)  # "seeded 0" is the newest
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/orgs/acme/insights/")
    entries = page.locator("#history > li .history__q")
    expect(entries).to_have_text([f"seeded {i}" for i in range(10)])

    page.get_by_role("link", name="Show older queries").click()

    expect(page).to_have_title("AI Insights, older queries · Acme Digital Assets · Opsion")
    expect(entries).to_have_text([f"seeded {i}" for i in range(10, 15)])
    expect(page.get_by_role("link", name="Show older queries")).to_have_count(0)  # the oldest: nothing further

    page.get_by_role("link", name="Back to your newest queries").click()

    expect(entries).to_have_text([f"seeded {i}" for i in range(10)])
    expect(page.get_by_role("link", name="Back to your newest queries")).to_have_count(0)


def test_without_javascript_a_question_that_failed_on_an_older_page_leaves_it_for_the_newest(
    app, page_without_script, world, fake_anthropic
):
    page = page_without_script
    fake_anthropic.behave(PLATFORM_KEY, "server_error")
    seed(world.acme, *range(4000, 4015), user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/orgs/acme/insights/")
    page.get_by_role("link", name="Show older queries").click()

    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "AI Insights is temporarily unavailable. Please try again shortly."
    )
    # The page lists the newest queries, the failed one on top, at the newest page's address: not at the older
    # page's, whose reload or bookmark would show other queries.
    assert page.url == f"{app.url}/orgs/acme/insights/"
    entries = page.locator("#history > li .history__q")
    expect(entries.first).to_have_text("Which MiCAR articles govern ART reserves?")


def test_an_answer_that_fills_the_newest_page_moves_the_entry_it_pushed_off_to_show_older_queries(
    app, page, world, fake_anthropic
):
    seed(world.acme, *range(4000, 4010), user=world.acme_member)  # exactly a page: no older queries yet
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/orgs/acme/insights/")
    entries = page.locator("#history > li .history__q")
    expect(page.get_by_role("link", name="Show older queries")).to_have_count(0)

    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()

    expect(entries).to_have_text(["Which MiCAR articles govern ART reserves?", *[f"seeded {i}" for i in range(9)]])
    page.get_by_role("link", name="Show older queries").click()
    expect(entries).to_have_text(["seeded 9"])  # the one pushed off, not lost between the pages


def test_an_answer_asked_on_an_older_page_shows_in_the_card_and_heads_the_newest_page_not_the_older_one(
    app, page, world, fake_anthropic
):
    seed(world.acme, *range(4000, 4015), user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/orgs/acme/insights/")
    page.get_by_role("link", name="Show older queries").click()
    entries = page.locator("#history > li .history__q")
    expect(entries).to_have_text([f"seeded {i}" for i in range(10, 15)])
    assert_no_accessibility_violations(page)

    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()

    expect(entries).to_have_text([f"seeded {i}" for i in range(10, 15)])  # older queries only, as before
    page.get_by_role("link", name="Back to your newest queries").click()
    expect(entries.first).to_have_text("Which MiCAR articles govern ART reserves?")


def test_answers_that_fill_a_page_begun_empty_offer_show_older_queries_too(app, page, fake_anthropic, monkeypatch):
    # A first visit: no queries, so no "Show older queries" to move. The entry the next answers push off the page must
    # still be a link away, as after a reload, not gone until one.
    monkeypatch.setattr("insights.views.HISTORY_PAGE", 2)
    sign_in(page, app.url, "member@acme.test")
    entries = page.locator("#history > li .history__q")
    for question in ("First question?", "Second question?", "Third question?"):
        page.get_by_label("Your question").fill(question)
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(entries.first).to_have_text(question)

    expect(entries).to_have_text(["Third question?", "Second question?"])
    page.get_by_role("link", name="Show older queries").click()
    expect(entries).to_have_text(["First question?"])


def test_an_unsent_question_survives_a_reload_in_the_same_tab_until_it_is_answered(app, page, world, fake_anthropic):
    # F5 emptied the box (only Back/Forward kept it): a question typed at length was lost to a stray key press.
    Membership.objects.create(user=world.acme_member, organisation=world.globex, role=Role.MEMBER)
    sign_in(page, app.url, "member@acme.test")
    question = page.get_by_label("Your question")
    question.fill("What does MiCAR say about white papers?")

    page.reload()

    expect(question).to_have_value("What does MiCAR say about white papers?")
    expect(page.locator("#ask-status")).to_have_text("")  # nothing to say: it is simply still there
    page.goto(f"{app.url}/orgs/globex/insights/")  # kept per organisation: not another one's question
    page.wait_for_load_state("load")
    assert question.input_value() == ""
    page.goto(f"{app.url}/orgs/acme/insights/")
    expect(question).to_have_value("What does MiCAR say about white papers?")

    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    page.reload()
    page.wait_for_load_state("load")
    assert question.input_value() == ""  # sent and answered: no longer a draft
    assert page.evaluate(DRAFTS_KEPT) == []


def test_signing_out_forgets_the_unsent_question_this_tab_kept(app, page, fake_anthropic):
    # A shared computer: the member types a question, signs out and walks away. Neither the page after signing out
    # nor signing in again in that tab may find it (the tab's storage is readable by anyone at its keyboard).
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")

    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.wait_for_load_state("load")
    assert page.evaluate(DRAFTS_KEPT) == []
    sign_in(page, app.url, "member@acme.test")
    assert page.get_by_label("Your question").input_value() == ""
    assert fake_anthropic.requests == []


def test_another_users_ai_insights_page_in_the_tab_deletes_the_question_kept_for_another_organisation(
    app, page, world, fake_anthropic
):
    # A shared computer: the session of the member who typed the question ends without a sign-out; someone else signs
    # in in that tab. Only a page of the same organisation deleted the question: the next person's own organisation's
    # page left it in the tab's storage, readable by whoever sits there.
    from django.contrib.sessions.models import Session

    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    assert page.evaluate(DRAFTS_KEPT) != []
    Session.objects.all().delete()  # expired, or signed out in another tab

    sign_in(page, app.url, world.globex_member.email)
    page.goto(f"{app.url}/orgs/globex/insights/")
    page.wait_for_load_state("load")

    assert page.evaluate(DRAFTS_KEPT) == []
    assert fake_anthropic.requests == []


def _back_to_insights_without_its_script(page, app, console) -> list:
    """Type a question on Acme's page, go to Settings, and come Back with the page's script failing to load (a flaky
    network): the browser puts the question back in the box, and Ask then sends the form as a plain post. Returns the
    script requests refused."""
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    assert page.evaluate(DRAFTS_KEPT) != []  # kept by the script as it was typed
    page.goto(f"{app.url}/orgs/acme/settings/")
    console.allow(503)
    refused = []

    def fail_first(route):
        if refused:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.fulfill(status=503, body="")

    page.route("**/js/insights.js", fail_first)
    page.go_back()
    expect(page.get_by_label("Your question")).to_have_value("Can we delay our MiCAR white paper?")
    assert refused, "the script was not refused: Ask would not be a plain post"
    return refused


def test_a_question_asked_before_the_script_loaded_does_not_come_back_once_answered(app, page, fake_anthropic, console):
    # Back put the question in the box and Ask sent it by a plain post, the script having failed to load, so no script
    # learnt it was sent: the answered page's empty box got it back from the tab's storage, as if still unsent.
    _back_to_insights_without_its_script(page, app, console)

    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-body").get_by_role("heading", name="Authorisation under MiCAR")).to_be_visible()
    page.wait_for_load_state("load")
    assert page.get_by_label("Your question").input_value() == ""
    assert page.evaluate(DRAFTS_KEPT) == []
    page.reload()
    page.wait_for_load_state("load")
    assert page.get_by_label("Your question").input_value() == ""
    assert len(fake_anthropic.requests) == 1
    # Said once, to the page the post led to: a question typed on it afterwards is kept over a reload as ever.
    page.get_by_label("Your question").fill("And for e-money tokens?")
    page.reload()
    expect(page.get_by_label("Your question")).to_have_value("And for e-money tokens?")


def test_a_question_rewritten_after_back_and_asked_before_the_script_loaded_leaves_no_older_draft(
    app, page, fake_anthropic, console
):
    # The question Back restored was rewritten before Ask: the older wording, never sent, came back once answered.
    _back_to_insights_without_its_script(page, app, console)
    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")

    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer .answer__question")).to_contain_text("Which MiCAR articles govern ART reserves?")
    page.wait_for_load_state("load")
    assert page.get_by_label("Your question").input_value() == ""
    assert page.evaluate(DRAFTS_KEPT) == []


def test_a_suggestion_asked_before_the_script_loaded_leaves_the_typed_question_in_the_box(
    app, page, fake_anthropic, console
):
    # The suggestion was asked, not the question in the box: that one is still unsent, and stays, kept over a reload.
    _back_to_insights_without_its_script(page, app, console)
    page.get_by_label("Your question").fill("Which MiCAR articles govern ART reserves?")

    page.get_by_role("button", name=SUGGESTED_QUERIES[1]).click()

    expect(page.locator("#answer .answer__question")).to_contain_text(SUGGESTED_QUERIES[1])
    page.wait_for_load_state("load")
    expect(page.get_by_label("Your question")).to_have_value("Which MiCAR articles govern ART reserves?")
    page.reload()
    expect(page.get_by_label("Your question")).to_have_value("Which MiCAR articles govern ART reserves?")


def test_a_reload_while_the_answer_is_written_does_not_offer_the_question_as_unsent(app, page, fake_anthropic):
    # The tab kept the question until its answer was done: a reload while Claude was still writing put it back in the
    # box, saying nothing, beside its history entry "still being written", and Ask would send it, and bill it, twice.
    fake_anthropic.behave(PLATFORM_KEY, "hold")
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body")).to_contain_text("## Authorisation under")  # sent, and being answered

    page.reload()

    expect(page.locator("#history .history__item").first).to_contain_text("The answer is still being written.")
    page.wait_for_load_state("load")
    assert page.get_by_label("Your question").input_value() == ""
    assert page.evaluate(DRAFTS_KEPT) == []
    fake_anthropic.release.set()


def test_a_question_whose_answer_failed_midway_stays_kept_over_a_reload(app, page, fake_anthropic):
    fake_anthropic.behave(PLATFORM_KEY, "midstream_error")
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-error").get_by_role("alert")).to_be_visible()

    page.reload()

    expect(page.get_by_label("Your question")).to_have_value("Can we delay our MiCAR white paper?")


def test_a_page_back_from_the_back_forward_cache_keeps_a_question_whose_connection_then_failed(
    app, page, fake_anthropic
):
    # Leaving the page (pagehide) marked it as left for good, so its own cut stream would not count as a failure; back
    # from the back/forward cache (pageshow, persisted) it stayed marked, and a question whose connection then failed
    # was dropped from the tab: a reload lost it.
    fake_anthropic.behave(PLATFORM_KEY, "hold")
    sign_in(page, app.url, "member@acme.test")
    page.evaluate(
        """() => {
            window.dispatchEvent(new PageTransitionEvent("pagehide", { persisted: true }));
            window.dispatchEvent(new PageTransitionEvent("pageshow", { persisted: true }));
        }"""
    )
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body")).to_contain_text("## Authorisation under")  # sent, and being answered
    assert page.evaluate(DRAFTS_KEPT) == []

    page.evaluate("() => window.stop()")  # the connection to the app fails (as the browser's Stop does)

    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        "The connection was interrupted. Please try again."
    )
    fake_anthropic.release.set()
    assert page.evaluate(DRAFTS_KEPT) != []
    page.reload()
    expect(page.get_by_label("Your question")).to_have_value("Can we delay our MiCAR white paper?")


def test_a_question_holding_a_pasted_key_is_refused_and_stays_in_the_box(app, page, fake_anthropic, console):
    console.allow(400)
    sign_in(page, app.url, "member@acme.test")
    question = f"Our key {GOOD_KEY} stopped working: why?"

    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()

    alert = page.locator("#answer-error").get_by_role("alert")
    expect(alert).to_contain_text("Your question holds what looks like a Claude API key or an API token")
    expect(alert).not_to_contain_text(GOOD_KEY[13:30])
    expect(page.get_by_label("Your question")).to_have_value(question)
    expect(page.locator("#usage-used")).to_have_text("0")
    assert fake_anthropic.requests == []
