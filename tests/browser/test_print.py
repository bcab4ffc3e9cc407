"""The console printed, or saved as PDF: compliance teams keep answers and audit logs on file. What is there to
click is left out; every word of the answer and every column of the log is on the paper.

Screenshots go to artifacts/screenshots/.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from insights.models import InsightQuery, KeySource, Outcome, StopReason
from orgs import services as org_services
from orgs.models import AuditAction, AuditEvent
from tests.base import GOOD_KEY
from tests.browser.support import LONG_EMAIL, WIDE_ANSWER, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# An A4 page's printable width at 96 CSS px to the inch (Chromium's default margins).
A4 = {"width": 718, "height": 1000}


def ask(page: Page, question: str) -> None:
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-body h3")).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()


DARK_TEXT = """el => {
    const [r, g, b] = getComputedStyle(el).color.match(/[\\d.]+/g).map(Number);
    return Math.max(r, g, b) < 100;
}"""


def test_a_printed_answer_keeps_its_whole_text_without_the_console_around_it(app, page, world, fake_anthropic):
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    fake_anthropic.answer_text = WIDE_ANSWER
    page.set_viewport_size(A4)
    sign_in(page, app.url, "admin@acme.test")
    ask(page, "Which reserve obligations apply to ART issuers under MiCAR?")

    # On screen the question is in its box above the answer; only the paper repeats it.
    expect(page.locator(".answer__question")).to_be_hidden()

    page.emulate_media(media="print")
    screenshot(page, "print-insights", docs=False)
    # Nothing to click on paper: the tabs, the account links, the question box, the meter and the suggestions.
    for chrome in (".tabs", ".account", "#ask-form", "#usage-meter", ".suggestions"):
        expect(page.locator(chrome)).to_be_hidden()
    # Which organisation asked stays on the page.
    expect(page.locator(".switcher summary")).to_contain_text("Acme Digital Assets")
    expect(page.locator(".answer__question")).to_contain_text("Which reserve obligations apply")
    # The table's last column is on the paper, not scrolled out of a box no one can scroll.
    box = page.locator("#answer-body .prose__table")
    assert box.evaluate("el => el.scrollWidth <= el.clientWidth"), "the printed table is cut off"
    # Code prints dark on white: printing leaves out the dark block behind its light text.
    assert page.locator("#answer-body pre code").evaluate(DARK_TEXT), "code prints as light text"


def test_a_printed_answer_gives_its_question_in_full(app, page_without_script, world, fake_anthropic):
    page = page_without_script
    question = (
        "Which reserve obligations apply to issuers of asset-referenced tokens under MiCAR, " + "and " * 80 + "when?"
    )
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()  # a plain post: the page shows the answer it was given
    expect(page.locator("#answer-body")).not_to_be_empty()
    # On screen the line is cut to fit beside the answer, as before.
    expect(page.locator(".answer__question")).to_have_text(f"You asked: {question[:299]}…", use_inner_text=True)

    page.emulate_media(media="print")

    expect(page.locator(".answer__question")).to_have_text(f"You asked: {question}", use_inner_text=True)


def test_a_printed_answer_gives_the_address_of_each_link_after_its_words(app, page, world, fake_anthropic):
    fake_anthropic.answer_text = (
        "## Sources\n\nSee [ESMA's Q&A](https://www.esma.europa.eu/qa) and https://eba.europa.eu, "
        "or [the FTP copy](ftp://files.example/qa)."  # an address of a kind answers may not link to
    )
    sign_in(page, app.url, "member@acme.test")
    ask(page, "Where is the guidance?")
    named, bare, unlinked = page.locator("#answer-body a").all()
    after = "el => getComputedStyle(el, '::after').content"
    assert named.evaluate(after) == "none"  # on screen, the words alone: the link is there to click

    page.emulate_media(media="print")

    assert named.evaluate(after) == '" (https://www.esma.europa.eu/qa)"'
    assert bare.evaluate(after) == "none"  # its words are its address already
    assert unlinked.get_attribute("href") is None and unlinked.evaluate(after) == "none"  # not "the FTP copy ()"


LONG_QUESTION = (
    "Which reserve obligations apply to issuers of asset-referenced tokens under MiCAR, " + "and " * 40 + "when?"
)


def history_entry(world, *, age: int, **fields) -> InsightQuery:
    defaults = {"answer": "", "outcome": Outcome.ANSWERED, "stop_reason": StopReason.COMPLETE}
    return InsightQuery.objects.create(
        organisation=world.acme,
        user=world.acme_member,
        created_at=timezone.now() - timedelta(seconds=age),
        key_source=KeySource.PLATFORM,
        **{**defaults, **fields},
    )


def test_printed_history_gives_every_entry_whole_while_the_screen_keeps_them_closed(app, page, world):
    history_entry(
        world, age=4000, query="Where is the guidance?", answer="See [ESMA's Q&A](https://www.esma.europa.eu/qa)."
    )
    history_entry(
        world, age=3000, query="How long is a CASP licence?", answer="A CASP licence", stop_reason="max_tokens"
    )
    history_entry(world, age=2000, query=LONG_QUESTION, outcome=Outcome.FAILED, stop_reason=None)
    history_entry(world, age=1000, query="What is an ART?", answer="An asset-referenced token.")  # the newest: open
    sign_in(page, app.url, "member@acme.test")
    page.goto(f"{app.url}/orgs/acme/insights/")
    entries = page.locator("#history > li")
    linked, cut_short, failed, newest = (
        entries.filter(has=page.get_by_text(q, exact=True))
        for q in (
            "Where is the guidance?",
            "How long is a CASP licence?",
            LONG_QUESTION[:139] + "…",
            "What is an ART?",
        )
    )
    link = linked.get_by_role("link", name="ESMA's Q&A")
    after = "el => getComputedStyle(el, '::after').content"
    closed = [linked, cut_short, failed]

    def on_screen_as_left() -> None:
        expect(newest.get_by_text("An asset-referenced token.")).to_be_visible()
        for entry in closed:
            expect(entry.locator("details")).not_to_have_attribute("open", "")
            expect(entry.locator(".prose")).to_be_hidden()
        expect(failed.get_by_text(LONG_QUESTION, exact=True)).to_be_hidden()  # the summary's line is cut on screen

    on_screen_as_left()

    page.emulate_media(media="print")
    screenshot(page, "print-history", docs=False)
    for entry in closed:
        expect(entry.locator(".prose")).to_be_visible()
        assert entry.locator(".prose").bounding_box()["height"] > 0
    expect(link).to_be_visible()
    assert link.evaluate(after) == '" (https://www.esma.europa.eu/qa)"'
    expect(cut_short.get_by_text("A CASP licence", exact=True)).to_be_visible()
    expect(cut_short.get_by_text("Incomplete answer:")).to_be_visible()
    expect(cut_short.get_by_text("incomplete", exact=True)).to_be_visible()
    expect(failed.get_by_text("No answer was received.")).to_be_visible()
    expect(failed.get_by_text("failed", exact=True)).to_be_visible()
    # The whole question, as asked: the record, not a line cut to fit the screen.
    expect(failed.get_by_text(LONG_QUESTION, exact=True)).to_be_visible()
    expect(failed.get_by_text(LONG_QUESTION[:139] + "…", exact=True)).to_be_hidden()
    # Printing opened nothing: back on screen each entry is as the reader left it.
    page.emulate_media(media="screen")
    on_screen_as_left()


def test_a_printed_page_gives_the_address_of_a_link_off_the_site_but_not_of_one_within_it(app, page, world, settings):
    settings.SUPPORT_URL = "https://help.opsion.test/contact"
    sign_in(page, app.url, "outsider@elsewhere.test")
    support = page.get_by_role("link", name="ask Opsion support")
    after = "el => getComputedStyle(el, '::after').content"
    assert support.evaluate(after) == "none"

    page.emulate_media(media="print")

    assert support.evaluate(after) == '" (https://help.opsion.test/contact)"'
    # Within Opsion, the header's own link and the skip link to the page's content: no address worth writing down.
    for link in page.locator("a:not([href^='http'])").all():
        assert link.evaluate(after) in ("none", "normal"), link.evaluate("el => el.outerHTML")


def test_a_printed_refusal_names_the_anthropic_console_once(app, page, world, fake_anthropic):
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
    )
    fake_anthropic.behave(GOOD_KEY, "billing_error")
    sign_in(page, app.url, "member@acme.test")
    page.get_by_label("Your question").fill("Which MiCAR articles cover CASP authorisation?")
    page.get_by_role("button", name="Ask", exact=True).click()
    link = page.locator("#answer-error").get_by_role("link", name="console.anthropic.com")

    page.emulate_media(media="print")

    # Its words are its address already: not "console.anthropic.com (https://console.anthropic.com/)".
    expect(link).to_be_visible()
    assert link.evaluate("el => getComputedStyle(el, '::after').content") == "none"


def test_a_printed_audit_log_keeps_every_column_and_leaves_out_the_page_buttons(app, page, world):
    AuditEvent.objects.bulk_create(
        AuditEvent(organisation=world.acme, action=AuditAction.KEY_SAVED, actor_email=LONG_EMAIL, ip="203.0.113.5")
        for _ in range(60)
    )
    page.set_viewport_size(A4)
    sign_in(page, app.url, "admin@acme.test")
    page.goto(f"{app.url}/orgs/acme/settings/audit-log/")

    page.emulate_media(media="print")
    screenshot(page, "print-audit-log", docs=False)
    expect(page.get_by_role("columnheader", name="From")).to_be_visible()  # a phone drops it; paper has room
    expect(page.get_by_role("cell", name="203.0.113.5").first).to_be_visible()
    box = page.locator(".table-scroll")
    assert box.evaluate("el => el.scrollWidth <= el.clientWidth"), "the printed audit log is cut off"
    expect(page.get_by_role("navigation", name="Audit log pages")).to_be_hidden()
    # Links lead nowhere on paper: back to Settings, the CSV download.
    expect(page.get_by_role("link", name="Settings")).to_be_hidden()
    expect(page.get_by_role("link", name="Download as CSV")).to_be_hidden()
    expect(page.get_by_text("60 changes, newest first")).to_be_visible()
    expect(page.locator(".topbar .tabs")).to_be_hidden()
