"""The usage meter and Ask never contradict each other: "Limit reached" beside a disabled Ask counting down, and an
enabled Ask beside a meter with queries left, whatever changed the window (the clock, a colleague, a refusal)."""

import re

import pytest
from django.contrib.sessions.models import Session
from playwright.sync_api import Page, expect

from insights.models import KeySource
from orgs import services as org_services
from tests.base import GOOD_KEY, PASSWORD
from tests.browser.support import sign_in
from tests.insights.helpers import seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Watches the page from now on and keeps every state in which the meter and Ask disagree: the meter's "Limit reached"
# without the countdown beside a disabled Ask (or the reverse), or Ask enabled beside a meter with no query left.
WATCH = """() => {
    const button = document.getElementById("ask-button");
    const meterSays = document.getElementById("usage-reset");
    const askSays = document.getElementById("ask-limit");
    window.contradictions = [];
    function check() {
        const full = Number(document.getElementById("usage-used").textContent)
            >= Number(document.getElementById("usage-limit").textContent);
        const meterLimited = !meterSays.hidden, askLimited = !askSays.hidden, enabled = !button.disabled;
        if (meterLimited !== askLimited || (askLimited && enabled) || (enabled && full)) {
            window.contradictions.push({meterLimited, askLimited, enabled, full, meter: meterSays.textContent});
        }
    }
    new MutationObserver(check).observe(document.body, {attributes: true, childList: true, subtree: true,
                                                        characterData: true});
    check();
}"""


def watch(page: Page) -> None:
    page.evaluate(WATCH)


def contradictions(page: Page) -> list:
    return page.evaluate("() => window.contradictions")


def test_a_freed_query_a_colleague_takes_before_the_meter_is_read_again_keeps_ask_waiting(
    app, page, world, fake_anthropic
):
    # The hour's oldest query leaves a few seconds after the page loads. Between the countdown's end and the script's
    # read of the window, a colleague asks the freed query: Ask was enabled beside a meter saying "Limit reached",
    # and pressing it only met the refusal.
    seed(world.acme, 3590, *[600] * 19, user=world.acme_member)
    taken = []

    def colleague_asks_first(route):
        if not taken:
            taken.extend(seed(world.acme, 0, user=world.acme_admin))
        route.continue_()

    page.route("**/insights/usage*", colleague_asks_first)
    sign_in(page, app.url, "member@acme.test")
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(ask).to_be_disabled()
    watch(page)

    expect(page.locator("#usage-reset-in")).to_have_text(re.compile(r"min$"), timeout=20_000)  # read again

    assert taken, "the script read the window again once the countdown ended"
    expect(page.locator("#usage-used")).to_have_text("20")
    expect(page.locator("#usage-reset")).to_be_visible()
    expect(page.locator("#usage-reset-in")).to_have_text("50 min")
    expect(ask).to_be_disabled()
    expect(ask).to_have_accessible_description("Rate limit reached (20/hour). Try again in 50 min.")
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    expect(page.locator("#ask-status")).not_to_have_text(re.compile("freed up"))
    assert contradictions(page) == []
    assert fake_anthropic.requests == []


def test_a_freed_query_enables_ask_only_with_the_meter_showing_it(app, page, world, fake_anthropic):
    # Nobody takes it: Ask is enabled, and at no moment beside a meter still saying "Limit reached".
    seed(world.acme, 3590, *[600] * 19, user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    watch(page)
    ask = page.get_by_role("button", name="Ask", exact=True)

    expect(ask).to_be_enabled(timeout=20_000)

    expect(page.locator("#usage-used")).to_have_text("19")
    expect(page.locator("#usage-reset")).to_be_hidden()
    expect(page.locator("#ask-status")).to_have_text("A query has freed up: you can ask again.")
    assert contradictions(page) == []


def test_a_key_removed_while_ask_waits_keeps_it_waiting_under_the_lower_limit_in_its_words(
    app, page, world, fake_anthropic
):
    # At the 200 of the organisation's own key, the oldest leaving in a few seconds; the key is removed meanwhile, so
    # the limit is 20 again and 199 still count: the freed query is no query at all.
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)
    seed(world.acme, 3590, *[600] * 199, user=world.acme_member, source=KeySource.ORGANISATION)
    sign_in(page, app.url, "member@acme.test")
    expect(page.locator("#ask-limit")).to_contain_text("Rate limit reached (200/hour)")
    watch(page)
    org_services.claude_api_key_remove(membership=admin, ip=None)

    expect(page.locator("#usage-limit")).to_have_text("20", timeout=20_000)

    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(page.locator("#usage-used")).to_have_text("199")
    expect(page.locator("#usage-over")).to_be_visible()
    expect(page.locator("#usage-reset")).to_be_visible()
    expect(ask).to_be_disabled()
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    assert contradictions(page) == []
    assert fake_anthropic.requests == []


def test_an_answer_cut_off_after_taking_the_last_query_leaves_ask_waiting_beside_limit_reached(
    app, page, world, fake_anthropic
):
    # The question took the window's last query (the stream's `start` said so), then the connection dropped before
    # the stream's last event, `usage`, which says the limit is reached: Ask was enabled beside a full meter.
    seed(world.acme, *[600] * 19, user=world.acme_member)

    def cut_after_start(route):
        if route.request.method != "POST":
            return route.continue_()
        whole = route.fetch()
        route.fulfill(response=whole, body=whole.text().split("\n\n")[0] + "\n\n")

    page.route("**/orgs/acme/insights/", cut_after_start)
    sign_in(page, app.url, "member@acme.test")
    watch(page)
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    ask = page.get_by_role("button", name="Ask", exact=True)
    ask.click()

    expect(page.locator("#answer-error")).to_contain_text("The answer was interrupted before it finished.")
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    expect(ask).to_be_disabled()
    expect(page.locator("#usage-used")).to_have_text("20")
    expect(page.locator("#usage-reset")).to_be_visible()
    assert contradictions(page) == []


def test_an_answer_whose_connection_failed_after_taking_the_last_query_leaves_ask_waiting(
    app, page, world, fake_anthropic, console
):
    # The question reached the server, which counted the window's last query, and the connection failed before the
    # answer's headers came back: the page had no `start` to show, read nothing, and enabled Ask beside a meter still
    # saying 19 of 20.
    seed(world.acme, *[600] * 19, user=world.acme_member)

    def lost_after_counting(route):
        if route.request.method != "POST":
            return route.continue_()
        route.fetch()  # the server counts and answers; the browser never hears back
        route.abort("connectionreset")

    page.route("**/orgs/acme/insights/", lost_after_counting)
    sign_in(page, app.url, "member@acme.test")
    watch(page)
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    ask = page.get_by_role("button", name="Ask", exact=True)
    ask.click()

    expect(page.locator("#answer-error")).to_contain_text("The connection was interrupted.")
    expect(page.locator("#ask-limit")).to_have_text("Rate limit reached (20/hour). Try again in 50 min.")
    expect(ask).to_be_disabled()
    expect(page.locator("#usage-used")).to_have_text("20")
    expect(page.locator("#usage-reset")).to_be_visible()
    assert contradictions(page) == []
    lost = [error for error in console.errors if "net::ERR_CONNECTION_RESET" in error]
    assert len(lost) == 1, console.errors  # the connection this test cut, and nothing else
    console.errors.remove(lost[0])


def times_said(page: Page) -> set[str]:
    """Every wait the page shows in words ("Try again in 52 s", "frees up in 52 s"), as a reader sees them."""
    text = page.locator("main").inner_text()
    return set(re.findall(r"(?:Try again in|frees up in) ([0-9][^.]*)\.", text))


def test_a_question_refused_at_the_limit_says_one_wait_as_it_counts_down(app, page, world, fake_anthropic, console):
    # The window filled since the page loaded, its oldest query leaving in a minute: the refusal said "Try again in
    # 60 s" beside Ask, in the answer card and in the status line, and only the first counted down, so a few seconds
    # later the page said 57 s and 60 s at once (minutes later, "3 min" beside "57 s").
    console.allow(429)
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, 3540, *[600] * 19, user=world.acme_admin)
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#ask-limit")).to_be_visible()
    said = page.locator("#ask-limit").inner_text()

    expect(page.locator("#ask-limit")).not_to_have_text(said, timeout=4000)  # counted down a second or more

    assert len(times_said(page)) == 1, times_said(page)
    expect(page.locator("#answer-error").get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")
    expect(page.locator("#ask-status")).to_contain_text("Rate limit reached (20/hour)")
    assert fake_anthropic.requests == []


@pytest.mark.parametrize("returns", ["visibilitychange", "focus"])
def test_a_key_saved_elsewhere_while_ask_waits_enables_it_when_the_page_is_back_in_view(
    app, page, world, fake_anthropic, returns
):
    # At the platform key's 20, the meter tells the member an Owner or Admin can raise the limit to 200 by saving the
    # organisation's own key. An Admin does (another tab, another person); back on the page, Ask went on counting
    # down the platform key's 50 minutes, the meter saying "Limit reached" and "Opsion's platform key", until a reload.
    seed(world.acme, *[3000] * 20, user=world.acme_member)
    sign_in(page, app.url, "member@acme.test")
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(ask).to_be_disabled()
    expect(page.locator("#ask-limit")).to_contain_text("Rate limit reached (20/hour)")
    watch(page)
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)

    # What the browser fires when its user comes back to the tab (switched back to it, or to the window).
    target = "document" if returns == "visibilitychange" else "window"
    page.evaluate(f"() => {target}.dispatchEvent(new Event('{returns}'))")

    expect(ask).to_be_enabled()
    expect(page.locator("#usage-limit")).to_have_text("200")
    expect(page.locator("#usage-used")).to_have_text("20")
    expect(page.locator("#usage-key-name")).to_have_text("your organisation's Anthropic key")
    expect(page.locator("#usage-reset")).to_be_hidden()
    expect(page.locator("#ask-limit")).to_be_hidden()
    expect(page.locator("#ask-status")).to_have_text("Your organisation's limit was raised: you can ask again.")
    assert contradictions(page) == []


# A plain post of the question form, as the browser sends it when Ask is pressed before the page's script has loaded
# (or the script itself sends it): form.submit() runs no submit handler.
PLAIN_POST = "() => HTMLFormElement.prototype.submit.call(document.getElementById('ask-form'))"


def test_a_question_refused_at_the_limit_by_a_plain_post_says_one_wait_once_the_script_counts_it_down(
    app, page, world, fake_anthropic, console
):
    # The page answering the plain post said "Try again in 1 min" in the answer card's alert, standing still, while
    # the script counted down beside Ask and in the meter: seconds later the page said "1 min" beside "57 s".
    console.allow(429)
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, 3540, *[600] * 19, user=world.acme_admin)
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    with page.expect_navigation():
        page.evaluate(PLAIN_POST)
    expect(page.locator("#ask-limit")).to_be_visible()
    said = page.locator("#ask-limit").inner_text()

    expect(page.locator("#ask-limit")).not_to_have_text(said, timeout=4000)  # counted down a second or more

    assert len(times_said(page)) == 1, times_said(page)
    expect(page.locator("#answer-error").get_by_role("alert")).to_have_text(
        re.compile(r"^Rate limit reached \(20/hour\)\. An Owner or Admin can raise the limit")
    )
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    assert fake_anthropic.requests == []


def test_without_javascript_a_question_refused_at_the_limit_keeps_the_wait_in_its_alert(
    app, page_without_script, world, fake_anthropic
):
    # Nothing counts down without the script: the wait the alert gives is the page's, the same as beside Ask.
    page = page_without_script
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, 3540, *[600] * 19, user=world.acme_admin)
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.get_by_role("button", name="Ask", exact=True).click()

    expect(page.locator("#answer-error").get_by_role("alert")).to_contain_text(
        "Rate limit reached (20/hour). Try again in 1 min."
    )
    assert times_said(page) == {"1 min"}, times_said(page)
    assert fake_anthropic.requests == []


@pytest.mark.parametrize("first", ["at-the-limit", "empty"])
def test_a_question_box_described_by_a_refusal_at_the_limit_hears_the_limit_once(
    app, page, world, fake_anthropic, console, first
):
    # The page answering a plain post refused at the limit describes the box by that refusal alone; the script, once
    # it ran at the limit, added the sentence beside Ask to it, so a screen reader heard "Rate limit reached" twice.
    # So too for a question then refused at the limit by the script, on a page answering a plain post refused first.
    console.allow(400)
    console.allow(429)
    sign_in(page, app.url, "member@acme.test")
    if first == "at-the-limit":
        seed(world.acme, 3540, *[600] * 19, user=world.acme_admin)
    question = page.get_by_label("Your question")
    question.fill("What does MiCAR say about white papers?" if first == "at-the-limit" else "   ")
    with page.expect_navigation():
        page.evaluate(PLAIN_POST)
    if first == "empty":
        expect(page.locator("#answer-error").get_by_role("alert")).to_have_text("Type a question first.")
        seed(world.acme, 3540, *[600] * 19, user=world.acme_admin)
        question.fill("What does MiCAR say about white papers?")
        page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#ask-limit")).to_be_visible()
    expect(page.locator("#answer-error .retry-wait")).to_have_count(0)  # the script ran, at the limit
    expect(page.locator("#answer-error").get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")

    expect(question).to_have_attribute("aria-describedby", "answer-error")
    expect(question).to_have_accessible_description(
        re.compile(r"^Rate limit reached \(20/hour\)\. An Owner or Admin can raise the limit[^()]*$")
    )
    assert fake_anthropic.requests == []


@pytest.mark.parametrize("plain", [False, True], ids=["streamed", "plain-post"])
def test_a_refusal_in_the_answer_card_no_longer_claims_the_limit_once_a_query_frees_up(
    app, page, world, fake_anthropic, console, plain
):
    # The refusal stayed in the answer card, "Rate limit reached", beside an enabled Ask and "A query has freed up"
    # until the next question was asked.
    console.allow(429)
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, 3594, *[600] * 19, user=world.acme_admin)  # the oldest leaves a few seconds from now
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    if plain:
        with page.expect_navigation():
            page.evaluate(PLAIN_POST)
    else:
        page.get_by_role("button", name="Ask", exact=True).click()
    card = page.locator("#answer-error")
    expect(card.get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")

    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled(timeout=20_000)

    expect(page.locator("#ask-status")).to_have_text("A query has freed up: you can ask again.")
    expect(card.get_by_role("alert")).to_have_count(0)
    expect(card).not_to_contain_text("Rate limit reached")
    expect(card).to_have_text(
        "This question was not asked: the limit was reached at the time. A query has freed up since."
    )
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    assert fake_anthropic.requests == []


def test_a_session_ended_while_ask_waits_says_so_and_offers_sign_in_keeping_the_question(
    app, page, world, fake_anthropic, console
):
    # The usage read answered a signed-out request with the sign-in page, which the script took for a failed read: Ask
    # was enabled beside the old count, "A query has freed up: you can ask again", and pressing it led to sign in.
    console.allow(401)
    seed(world.acme, 3592, *[600] * 19, user=world.acme_admin)  # the oldest leaves a few seconds from now
    sign_in(page, app.url, "member@acme.test")
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(ask).to_be_disabled()
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    watch(page)
    Session.objects.all().delete()  # the session ends (expired, or signed out in another tab)

    status = page.locator("#ask-status")
    expect(status).to_have_text("Your session has ended. Sign in again to ask: your question is kept.", timeout=20_000)
    expect(status).not_to_contain_text("freed up")
    expect(ask).to_be_disabled()
    expect(ask).to_have_accessible_description("Your session has ended. Sign in again to ask: your question is kept.")
    expect(page.locator("#usage-reset")).to_be_hidden()  # the window is not known any more
    assert contradictions(page) == []

    status.get_by_role("link", name="Sign in again").click()
    page.get_by_label("E-mail").fill("member@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/orgs/acme/insights/$"))
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    assert fake_anthropic.requests == []


def test_a_refusal_in_the_answer_card_says_the_limit_was_raised_when_a_key_saved_elsewhere_lifts_it(
    app, page, world, fake_anthropic, console
):
    # Refused at the platform key's 20, then an Admin saves the organisation's key elsewhere: back on the page, the
    # status line said the limit was raised while the card said "A query has freed up since", which none had.
    console.allow(429)
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, *[3000] * 20, user=world.acme_admin)
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.evaluate(PLAIN_POST)
    card = page.locator("#answer-error")
    expect(card.get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)

    page.evaluate("() => window.dispatchEvent(new Event('focus'))")

    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    expect(page.locator("#ask-status")).to_have_text("Your organisation's limit was raised: you can ask again.")
    expect(card).to_have_text(
        "This question was not asked: the limit was reached at the time. "
        "Your organisation's limit has been raised since."
    )
    assert fake_anthropic.requests == []


def test_a_refusal_lifted_after_the_key_was_removed_does_not_say_the_limit_was_raised(
    app, page, world, fake_anthropic, console
):
    # Refused at the organisation's own key's 200; an Admin then removes the key (the limit is 20 again) and the window
    # drains below it. The script took any change of the limit for a raise: the status line said "Your organisation's
    # limit was raised" and the card "Your organisation's limit has been raised since", after it had been lowered.
    console.allow(429)
    admin = world.membership(world.acme_admin, world.acme)
    org_services.claude_api_key_set(membership=admin, raw_key=GOOD_KEY, ip=None)
    rows = seed(world.acme, *[3000] * 200, user=world.acme_admin)
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    page.evaluate(PLAIN_POST)
    card = page.locator("#answer-error")
    expect(card.get_by_role("alert")).to_contain_text("Rate limit reached (200/hour)")
    org_services.claude_api_key_remove(membership=admin, ip=None)
    type(rows[0]).objects.filter(pk__in=[row.pk for row in rows[5:]]).delete()  # the window drains to 5 of 20

    page.evaluate("() => window.dispatchEvent(new Event('focus'))")

    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    expect(page.locator("#usage-limit")).to_have_text("20")
    expect(page.locator("#ask-status")).to_have_text("A query has freed up: you can ask again.")
    expect(card).to_have_text(
        "This question was not asked: the limit was reached at the time. A query has freed up since."
    )
    assert fake_anthropic.requests == []


def test_a_page_whose_session_ended_lets_ask_again_once_signed_in_again_in_another_tab(
    app, page, world, fake_anthropic, console
):
    # Once a read had found the session ended, nothing read the window again: signed in again in another tab and back
    # on this one, Ask stayed disabled beside "Your session has ended", however long the page stood, until a reload.
    console.allow(401)
    console.allow(429)
    sign_in(page, app.url, "member@acme.test")
    seed(world.acme, 3592, *[600] * 19, user=world.acme_admin)  # the oldest leaves a few seconds from now
    page.get_by_label("Your question").fill("What does MiCAR say about white papers?")
    with page.expect_navigation():
        page.evaluate(PLAIN_POST)  # refused at the limit: the answer card says so
    card = page.locator("#answer-error")
    expect(card.get_by_role("alert")).to_contain_text("Rate limit reached (20/hour)")
    ask = page.get_by_role("button", name="Ask", exact=True)
    expect(ask).to_be_disabled()
    watch(page)
    Session.objects.all().delete()
    status = page.locator("#ask-status")
    expect(status).to_have_text("Your session has ended. Sign in again to ask: your question is kept.", timeout=20_000)
    other_tab = page.context.new_page()
    sign_in(other_tab, app.url, "member@acme.test")
    other_tab.close()

    page.evaluate("() => window.dispatchEvent(new Event('focus'))")

    expect(ask).to_be_enabled()
    expect(status).to_have_text("You are signed in again: you can ask.")
    expect(ask).not_to_have_accessible_description(re.compile("session has ended"))
    expect(page.locator("#usage-used")).to_have_text("19")
    expect(card).to_have_text(
        "This question was not asked: the limit was reached at the time. A query has freed up since."
    )
    expect(page.get_by_label("Your question")).to_have_value("What does MiCAR say about white papers?")
    assert contradictions(page) == []
    assert fake_anthropic.requests == []


def test_coming_back_to_a_page_whose_session_ended_does_not_say_so_again(app, page, world, fake_anthropic, console):
    # Each return to the tab reads the window again (a sign-in elsewhere lets Ask again); signed out still, the read's
    # 401 rewrote the status line, a live region, so a screen reader announced "Your session has ended" every time.
    console.allow(401)
    seed(world.acme, *[3000] * 20, user=world.acme_admin)
    sign_in(page, app.url, "member@acme.test")
    Session.objects.all().delete()
    page.evaluate("() => window.dispatchEvent(new Event('focus'))")
    status = page.locator("#ask-status")
    expect(status).to_have_text("Your session has ended. Sign in again to ask: your question is kept.")
    # The meter is busy (aria-busy) while it is read: the read is over, its answer handled, once it no longer is. The
    # status line's rewrites are counted until then, rather than for a while after the answer arrived.
    page.evaluate(
        """() => { window.statusRewritten = 0; window.readsOver = 0; window.readsBegun = 0;
        const meter = document.getElementById("usage-meter");
        new MutationObserver(() => { window.statusRewritten += 1; }).observe(
            document.getElementById("ask-status"), { childList: true, characterData: true, subtree: true });
        new MutationObserver(() => {
            if (meter.hasAttribute("aria-busy")) window.readsBegun += 1; else window.readsOver += 1;
        }).observe(meter, { attributes: true, attributeFilter: ["aria-busy"] }); }"""
    )

    with page.expect_response(lambda response: "/insights/usage" in response.url) as read:
        page.evaluate("() => window.dispatchEvent(new Event('focus'))")
    assert read.value.status == 401
    page.wait_for_function("() => window.readsOver === 1")

    assert page.evaluate("() => [window.readsBegun, window.statusRewritten]") == [1, 0]
    expect(status).to_have_text("Your session has ended. Sign in again to ask: your question is kept.")
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_disabled()
