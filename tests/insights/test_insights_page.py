"""The AI Insights console page: the meter, the suggestions, history, the no-JS POST and SSE streaming."""

import html
import re
import time
import types
import warnings
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.cache.backends.base import CacheKeyWarning
from django.db.models.functions import Now
from django.test import Client
from django.utils import timezone

from insights.models import InsightQuery, KeySource, Outcome
from insights.suggestions import SUGGESTED_QUERIES
from orgs.drafts import typed_by
from orgs.models import ClaudeApiKey, KeyStatus, Membership, Role
from tests.base import CANARY_KEY, PASSWORD
from tests.conftest import PLATFORM_KEY

from .helpers import UNAVAILABLE_MESSAGE, history_items, parse_sse, seed, seed_spread, sse_events

PAGE = "/orgs/{}/insights/"
NOTICE = "ANTHROPIC_API_KEY"


def text_of(response) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", response.content.decode())).split())


def test_the_page_shows_the_meter_and_which_key_queries_use(world, console):
    seed(world.globex, 1200, 300, 60)

    response = console(world.globex_member).get(PAGE.format("globex"))

    assert response.status_code == 200
    text = text_of(response)
    assert "3 of 20 queries used by your organisation in the last 60 minutes" in text
    assert "Queries use Opsion's platform key." in text
    assert '<p id="usage-reset" class="meter__reset" hidden>' in response.content.decode()
    assert response["RateLimit-Policy"] == '"insights";q=20;w=3600'
    assert response["RateLimit"].startswith('"insights";r=17;t=')


def test_the_page_shows_the_organisations_key_and_its_limit(world, console, acme_key):
    response = console(world.acme_member).get(PAGE.format("acme"))

    text = text_of(response)
    assert "0 of 200 queries used by your organisation in the last 60 minutes" in text
    assert "Queries use your organisation's Anthropic key." in text


def test_at_the_limit_the_page_says_when_the_next_query_frees_up(world, fake_anthropic, console):
    seed_spread(world.globex, 20, oldest=1800, newest=60)

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert '<p id="usage-reset" class="meter__reset">' in page
    assert "The next query frees up in <strong" in page
    assert re.search(r'id="usage-reset-in">30 min</strong>', page)
    assert "contact Opsion support" not in page  # the platform key's 20 is the plan's, not a soft cap


def plain(fragment: str) -> str:
    """An HTML fragment as a reader sees it."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def ask_button(page: str) -> str:
    return re.search(r'<button [^>]*id="ask-button"[^>]*>', page)[0]


def beside_ask(page: str) -> str:
    """What the page says beside Ask, tags dropped (empty when it says nothing or it is hidden)."""
    notice = re.search(r'<p id="ask-limit"([^>]*)>(.*?)</p>', page, re.DOTALL)
    if notice is None or " hidden" in notice[1]:
        return ""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", notice[2])).split())


def test_at_the_limit_ask_is_disabled_and_says_when_the_refusal_would_say_to_retry(world, fake_anthropic, console):
    # Without JavaScript too: the page itself disables Ask, rather than offering it only to refuse the question.
    seed_spread(world.globex, 20, oldest=1800, newest=60)
    client = console(world.globex_member)

    page = client.get(PAGE.format("globex")).content.decode()
    refused = client.post(PAGE.format("globex"), {"query": "One more?"})

    assert " disabled" in ask_button(page) and 'aria-describedby="ask-limit"' in ask_button(page)
    assert beside_ask(page) == "Rate limit reached (20/hour). Try again in 30 min."
    # The seconds the script waits before enabling Ask again are the refusal's Retry-After, not a second count.
    waits = int(re.search(r'id="ask-limit"[^>]*data-reset-seconds="(\d+)"', page)[1])
    assert abs(waits - int(refused["Retry-After"])) <= 1
    assert beside_ask(page) + " " in text_of(refused)  # the refusal's own words
    # The question box stays usable, so a draft is not lost, and says why Ask is off to whoever lands in it (a
    # screen reader in the box, Ask out of the keyboard's reach).
    assert re.search(r"<textarea [^>]*>", page)[0].count("disabled") == 0
    assert 'aria-describedby="ask-limit"' in re.search(r"<textarea [^>]*>", page)[0]


def test_below_the_limit_ask_is_enabled_and_nothing_is_said_beside_it(world, console):
    seed_spread(world.globex, 19, oldest=1800, newest=60)

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert " disabled" not in ask_button(page)
    assert "aria-describedby" not in ask_button(page)
    assert "aria-describedby" not in re.search(r"<textarea [^>]*>", page)[0]
    assert beside_ask(page) == ""


def test_at_the_limit_with_an_unreadable_key_the_page_says_what_a_post_would_be_told_not_the_limit(
    world, fake_anthropic, console, acme_key, settings
):
    # A post is refused for the unreadable key before the limit is looked at: "Rate limit reached … try again in 30
    # min" would send the member back in half an hour only to be told the key cannot be read.
    seed_spread(world.acme, 200, oldest=1800, newest=60)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the key it was sealed with was dropped
    client = console(world.acme_member)

    page = client.get(PAGE.format("acme")).content.decode()
    refused = client.post(PAGE.format("acme"), {"query": "One more?"})

    assert "cannot be read" in text_of(refused) and "Rate limit reached" not in text_of(refused)
    assert beside_ask(page) == "" and "Rate limit reached" not in page
    assert " disabled" not in ask_button(page)
    # Nor does the meter say "Limit reached" beside that enabled Ask: the count shows the window full, no more.
    assert '<p id="usage-reset" class="meter__reset" hidden>' in page and "meter--full" not in page
    assert "stored Claude API key cannot be read" in page
    # Nor does the meter send them to support for a higher cap: the key, not the cap, is what stops them.
    assert "contact Opsion support" not in page


def test_at_the_limit_with_no_platform_key_the_page_says_what_a_post_would_be_told_not_the_limit(
    world, fake_anthropic, console, settings
):
    seed_spread(world.globex, 20, oldest=1800, newest=60)
    settings.ANTHROPIC_API_KEY = ""
    client = console(world.globex_member)

    page = client.get(PAGE.format("globex")).content.decode()
    refused = client.post(PAGE.format("globex"), {"query": "One more?"})

    assert refused.status_code == 503 and "Rate limit reached" not in text_of(refused)
    assert beside_ask(page) == "" and "Rate limit reached" not in page
    assert " disabled" not in ask_button(page)
    assert '<p id="usage-reset" class="meter__reset" hidden>' in page and "meter--full" not in page


def test_at_a_lowered_limit_ask_waits_for_the_refusals_time_not_the_oldest_querys(world, fake_anthropic, console):
    # 25 counted under a higher limit, 20 now: the next fits once six have left, not when the oldest leaves.
    seed_spread(world.globex, 25, oldest=2400, newest=0)
    client = console(world.globex_member)

    page = client.get(PAGE.format("globex")).content.decode()
    refused = client.post(PAGE.format("globex"), {"query": "One more?"})

    assert refused.status_code == 429
    assert beside_ask(page) + " " in text_of(refused)
    waits = int(re.search(r'id="ask-limit"[^>]*data-reset-seconds="(\d+)"', page)[1])
    assert abs(waits - int(refused["Retry-After"])) <= 1 and waits < 1800


def test_a_refused_post_at_the_limit_keeps_the_question_and_ask_stays_disabled(world, fake_anthropic, console):
    seed_spread(world.globex, 20, oldest=1800, newest=60)

    refused = console(world.globex_member).post(PAGE.format("globex"), {"query": "One more?"}).content.decode()

    assert ">One more?</textarea>" in refused
    assert " disabled" in ask_button(refused)
    # Described by the refusal (focused there), which says the limit: not by the same sentence twice.
    assert 'aria-describedby="answer-error"' in re.search(r"<textarea [^>]*>", refused)[0]
    assert beside_ask(refused) == "Rate limit reached (20/hour). Try again in 30 min."


def box_described_by(response) -> str | None:
    """The question box's aria-describedby as the page renders it, None when it has none."""
    described = re.search(r'<textarea [^>]*?aria-describedby="([^"]*)"', response.content.decode())
    return described[1] if described else None


def sign_in_keeping_a_question(client, user) -> object:
    """`user` signs in again after their session expired with a question in the box: the page it leads to."""
    login = {"username": user.email, "password": PASSWORD, "next": "/orgs/globex/insights/"}
    return client.post("/accounts/login/", {**login, "draft": QUESTION, "draft_by": typed_by(user)}, follow=True)


def test_the_question_box_is_described_by_nothing_below_the_limit(world, console):
    page = console(world.globex_member).get(PAGE.format("globex"))

    assert page.context["box_described_by"] == ""
    assert box_described_by(page) is None


def test_at_the_limit_the_question_box_is_described_by_the_sentence_beside_ask(world, fake_anthropic, console):
    seed_spread(world.globex, 20, oldest=1800, newest=60)

    page = console(world.globex_member).get(PAGE.format("globex"))

    assert page.context["box_described_by"] == box_described_by(page) == "ask-limit"


def test_a_refused_question_box_is_described_by_the_refusal_alone(world, fake_anthropic, console):
    client = console(world.globex_member)
    refused = client.post(PAGE.format("globex"), {"query": "   "})
    seed_spread(world.globex, 20, oldest=1800, newest=60)
    refused_at_limit = client.post(PAGE.format("globex"), {"query": "One more?"})

    assert refused.status_code == 400 and refused_at_limit.status_code == 429
    # At the limit too: the refusal says the limit, and the sentence beside Ask would say it again.
    assert refused.context["box_described_by"] == box_described_by(refused) == "answer-error"
    assert refused_at_limit.context["box_described_by"] == box_described_by(refused_at_limit) == "answer-error"


def test_a_question_kept_across_sign_in_is_described_by_the_status_saying_so(world, client):
    page = sign_in_keeping_a_question(client, world.globex_member)

    assert page.context["box_described_by"] == box_described_by(page) == "ask-status"


def test_a_question_kept_across_sign_in_at_the_limit_is_described_by_the_status_and_the_limit(
    world, fake_anthropic, client
):
    seed_spread(world.globex, 20, oldest=1800, newest=60)

    page = sign_in_keeping_a_question(client, world.globex_member)

    assert page.context["box_described_by"] == box_described_by(page) == "ask-status ask-limit"


def test_the_stream_that_takes_the_last_query_says_the_limit_is_reached(world, fake_anthropic, console):
    seed_spread(world.globex, 19, oldest=1800, newest=60)

    response = console(world.globex_member).post(
        PAGE.format("globex"), {"query": "The last one?"}, HTTP_ACCEPT="text/event-stream"
    )
    usage = dict(sse_events(response.streaming_content))["usage"]

    assert usage["remaining"] == 0
    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()
    assert plain(usage["limitReached"]) == beside_ask(page) == "Rate limit reached (20/hour). Try again in 30 min."


def test_at_the_byom_cap_the_page_says_support_can_raise_it(world, console, acme_key):
    # The documentation's resolution: "Wait for the rolling window to reset, or contact support".
    seed_spread(world.acme, 200, oldest=1800, newest=60, source=KeySource.ORGANISATION)

    text = text_of(console(world.acme_member).get(PAGE.format("acme")))

    assert (
        "Limit reached. The next query frees up in 30 min. The 200-query cap is an abuse guard: "
        "contact Opsion support if your use case needs more." in text
    )


OWN_KEY_HINT_ADMIN = (
    "Save your organisation's own Anthropic key in Settings to raise the limit to 200 queries per 60 minutes."
)
OWN_KEY_HINT_MEMBER = (
    "An Owner or Admin can raise the limit to 200 queries per 60 minutes by saving your organisation's own "
    "Anthropic key in Settings."
)


@pytest.mark.parametrize("who", ["acme_owner", "acme_admin", "initech_admin"])
def test_at_the_platform_limit_an_admin_of_a_byom_plan_is_told_their_own_key_raises_it(world, console, who):
    org = world.initech if who == "initech_admin" else world.acme
    seed_spread(org, 20, oldest=1800, newest=60)

    page = console(getattr(world, who)).get(PAGE.format(org.slug))

    assert "Limit reached. The next query frees up in 30 min. " + OWN_KEY_HINT_ADMIN in text_of(page)
    assert f'<a href="/orgs/{org.slug}/settings/#byom">Settings</a>' in page.content.decode()


def test_at_the_platform_limit_a_member_of_a_byom_plan_is_told_an_owner_or_admin_can_raise_it(world, console):
    seed_spread(world.acme, 20, oldest=1800, newest=60)

    page = console(world.acme_member).get(PAGE.format("acme"))

    assert "Limit reached. The next query frees up in 30 min. " + OWN_KEY_HINT_MEMBER in text_of(page)
    assert '#byom">Settings</a>' not in page.content.decode()


def test_under_the_limit_the_own_key_hint_is_hidden_with_the_limit_reached_block(world, console):
    seed_spread(world.acme, 5, oldest=1800, newest=60)

    page = console(world.acme_owner).get(PAGE.format("acme")).content.decode()

    assert '<p id="usage-reset" class="meter__reset" hidden>' in page


def test_a_plan_without_byom_is_not_told_of_an_own_key_at_the_limit(world, console):
    # The Settings card is hidden on other plans (the product documentation), so there is nothing to point at.
    seed_spread(world.globex, 20, oldest=1800, newest=60)

    page = console(world.globex_owner).get(PAGE.format("globex"))

    assert "own Anthropic key" not in text_of(page)
    assert '#byom">Settings</a>' not in page.content.decode()


def test_at_the_own_keys_limit_the_page_does_not_offer_an_own_key(world, console, acme_key):
    seed_spread(world.acme, 200, oldest=1800, newest=60, source=KeySource.ORGANISATION)

    text = text_of(console(world.acme_owner).get(PAGE.format("acme")))

    assert "Limit reached." in text
    assert "raise the limit" not in text


def test_refused_at_the_platform_limit_the_refusal_says_an_own_key_raises_it(world, fake_anthropic, console):
    seed_spread(world.acme, 20, oldest=1800, newest=60)

    response = console(world.acme_admin).post(PAGE.format("acme"), {"query": "One more?"})

    assert response.status_code == 429
    assert "Rate limit reached (20/hour). Try again in 30 min. " + OWN_KEY_HINT_ADMIN in text_of(response)
    error = re.search(r'<div id="answer-error">(.*?)</div>', response.content.decode(), re.S).group(1)
    assert 'href="/orgs/acme/settings/#byom"' in error


def test_the_stream_refusal_at_the_platform_limit_stays_the_plain_json_message(world, fake_anthropic, console):
    seed_spread(world.acme, 20, oldest=1800, newest=60)

    response = console(world.acme_admin).post(PAGE.format("acme"), {"query": "q"}, HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 429
    assert response.json()["error"] == {"code": "rate_limited", "message": "Rate limit reached (20/hour)"}
    # Beside it, the sentence the page says beside its disabled Ask, for the script to say the same.
    page = console(world.acme_admin).get(PAGE.format("acme")).content.decode()
    assert (
        plain(response.json()["limitReached"])
        == beside_ask(page)
        == "Rate limit reached (20/hour). Try again in 30 min."
    )


def test_with_a_support_address_configured_contact_support_links_to_it(world, console, acme_key, settings):
    settings.SUPPORT_URL = "mailto:support@opsion.example"
    seed_spread(world.acme, 200, oldest=1800, newest=60, source=KeySource.ORGANISATION)

    page = console(world.acme_member).get(PAGE.format("acme")).content.decode()

    assert '<a href="mailto:support@opsion.example">contact Opsion support</a> if your use case needs more.' in page


def test_the_suggestions_put_micar_first(world, console):
    text = text_of(console(world.globex_member).get(PAGE.format("globex")))

    assert SUGGESTED_QUERIES[0].startswith("What must a crypto-asset service provider")
    positions = [text.find(s) for s in SUGGESTED_QUERIES]
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions)


def test_a_count_above_a_lowered_limit_is_explained(world, console, settings):
    seed(world.globex, *range(60, 85), user=world.globex_member, source=KeySource.ORGANISATION)  # 25 on a BYOM key

    over = console(world.globex_member).get(PAGE.format("globex")).content.decode()
    settings.INSIGHTS_PLATFORM_LIMIT = 25
    at = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert 'id="usage-used">25</span> of <span id="usage-limit">20</span>' in over
    assert '<p id="usage-over" class="muted">The limit was lowered after some of these queries ran' in over
    assert '<p id="usage-over" class="muted" hidden>' in at


def test_a_key_anthropic_rejected_is_flagged_on_the_insights_page_before_anyone_asks(world, console, acme_key):
    ClaudeApiKey.objects.filter(organisation=world.acme).update(status=KeyStatus.INVALID)
    message = "Your organisation&#x27;s Claude API key is invalid. Update it in Settings → AI Insights."

    member = console(world.acme_member).get(PAGE.format("acme")).content.decode()
    admin = console(world.acme_admin).get(PAGE.format("acme")).content.decode()
    ClaudeApiKey.objects.filter(organisation=world.acme).update(status=KeyStatus.VALID)
    fixed = console(world.acme_admin).get(PAGE.format("acme")).content.decode()

    assert message in member and "Ask an Owner or Admin of your organisation to update it." in member
    assert message in admin and '<a href="/orgs/acme/settings/#byom">Go to Settings</a>' in admin
    assert message not in fixed


def test_without_javascript_a_rejected_key_says_what_to_do_as_the_script_does(world, console, acme_key, fake_anthropic):
    # The streamed page adds this to the message (insights.js); the plain post's page must too, or a
    # Member reads "Update it in Settings" with no way to, and an Admin gets no link.
    fake_anthropic.behave(acme_key, "auth_error")
    message = "Your organisation&#x27;s Claude API key is invalid. Update it in Settings → AI Insights."

    member = console(world.acme_member).post(PAGE.format("acme"), {"query": "MiCAR?"}).content.decode()
    admin = console(world.acme_admin).post(PAGE.format("acme"), {"query": "MiCAR?"}).content.decode()

    assert f'role="alert">{message} Ask an Owner or Admin of your organisation to update it.</p>' in member
    assert f'role="alert">{message} <a href="/orgs/acme/settings/#byom">Go to Settings</a>.</p>' in admin


CONSOLE_LINK = '<a href="https://console.anthropic.com/">console.anthropic.com</a>'


def test_without_javascript_a_billing_refusal_links_to_the_anthropic_console(world, console, acme_key, fake_anthropic):
    # "Check Plans & Billing at console.anthropic.com" on a web page: the address is a link there, as any
    # address on a page is, not text to copy into the address bar.
    fake_anthropic.behave(acme_key, "billing_error")

    page = console(world.acme_member).post(PAGE.format("acme"), {"query": "MiCAR?"}).content.decode()

    error = re.search(r'<div id="answer-error">(.*?)</div>', page, re.S).group(1)
    assert f"should check Plans &amp; Billing at {CONSOLE_LINK}; then ask again.</p>" in error
    assert 'target="_blank"' not in error


def test_the_streamed_billing_refusal_keeps_the_address_as_plain_text(world, console, acme_key, fake_anthropic):
    # The page's script makes the link (as the page does above); the event, like the API's JSON, carries text.
    fake_anthropic.behave(acme_key, "billing_error")

    response = console(world.acme_member).post(PAGE.format("acme"), {"query": "q"}, HTTP_ACCEPT="text/event-stream")

    error = dict(sse_events(response.streaming_content))["error"]
    assert "Plans & Billing at console.anthropic.com; then ask again." in error["message"]


def test_a_key_the_server_cannot_read_is_flagged_on_the_insights_page_before_anyone_asks(
    world, console, acme_key, settings
):
    message = "Your organisation&#x27;s stored Claude API key cannot be read. An Owner or Admin should save it again"
    readable = console(world.acme_member).get(PAGE.format("acme")).content.decode()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the key it was sealed with was dropped

    member = console(world.acme_member).get(PAGE.format("acme")).content.decode()
    admin = console(world.acme_admin).get(PAGE.format("acme")).content.decode()

    assert message not in readable
    assert message in member and "Go to Settings" not in member
    assert message in admin and '<a href="/orgs/acme/settings/#byom">Go to Settings</a>' in admin


def test_a_query_still_being_answered_says_so_in_the_history(world, console):
    row = seed(world.globex, 5, user=world.globex_member)[0]
    InsightQuery.objects.filter(pk=row.pk).update(outcome=Outcome.PENDING, answer="")

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert "The answer is still being written." in page
    assert "No answer was received." not in page


def test_a_query_a_killed_process_left_pending_shows_as_failed_not_still_being_written(world, console, api_client):
    # A deploy's SIGKILL (past gunicorn's graceful timeout) or running out of memory ends the process writing
    # the answer before it records one. Past any answer's deadline (2 × 60 s + 60 s), nothing is still writing.
    recent, abandoned = seed(world.globex, 30, 200, user=world.globex_member)
    InsightQuery.objects.update(outcome=Outcome.PENDING, answer="")

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()
    items = api_client(world.globex_member).get("/api/v1/orgs/globex/insights/queries").json()["items"]

    assert page.count("The answer is still being written.") == 1  # the recent one only
    assert page.count('<span class="badge badge--bad">failed</span>') == 1
    assert [(i["outcome"], i["errorCode"]) for i in items] == [("pending", ""), ("failed", "interrupted")]
    abandoned.refresh_from_db()
    assert (abandoned.outcome, abandoned.error_code) == (Outcome.FAILED, "interrupted") and abandoned.completed_at


def test_a_failed_query_in_the_history_says_why_it_has_no_whole_answer(world, console):
    # Seen again after a reload, "failed" alone left the reader guessing: retry now, later, or fix the key?
    unreadable, billing, rejected, limited, unavailable, cut, killed = seed(
        world.globex, 70, 60, 50, 40, 30, 20, 10, user=world.globex_member
    )
    for row, code, answer in (
        (unreadable, "claude_api_key_unreadable", ""),
        (billing, "upstream_billing", ""),
        (rejected, "claude_api_key_invalid", ""),
        (limited, "upstream_rate_limited", ""),
        (unavailable, "insights_unavailable", ""),
        (cut, "insights_unavailable", "## Authorisation under MiCAR\n\nA crypto-asset ser"),
        (killed, "interrupted", ""),
    ):
        InsightQuery.objects.filter(pk=row.pk).update(outcome=Outcome.FAILED, error_code=code, answer=answer)

    items = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", i)).split())
        for i in history_items(console(world.globex_member).get(PAGE.format("globex")).content.decode())
    ]

    assert items[0].endswith("No answer was received.")  # interrupted: nothing more is known
    assert "Only part of the answer was received. AI Insights was temporarily unavailable." in items[1]
    assert items[1].endswith("A crypto-asset ser")
    assert items[2].endswith("No answer was received. AI Insights was temporarily unavailable.")
    assert items[3].endswith("No answer was received. Anthropic rate-limited your organisation's account.")
    assert items[4].endswith("No answer was received. Anthropic rejected your organisation's Claude API key.")
    assert items[5].endswith(
        "No answer was received. Your organisation's Anthropic account refused it for a billing reason."
    )
    assert items[6].endswith("No answer was received. Your organisation's stored Claude API key could not be read.")


def test_an_app_clock_running_ahead_does_not_settle_a_query_just_asked(world, console, monkeypatch):
    row = seed(world.globex, 5, user=world.globex_member)[0]  # created_at: the database's clock
    InsightQuery.objects.filter(pk=row.pk).update(outcome=Outcome.PENDING, answer="", created_at=Now())
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(minutes=4))  # this app server runs ahead

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    row.refresh_from_db()
    assert row.outcome == Outcome.PENDING and "The answer is still being written." in page


def test_the_page_lists_the_users_recent_queries_with_their_answers(world, console):
    seed(world.globex, 300, user=world.globex_member)
    InsightQuery.objects.filter(organisation=world.globex).update(
        query="Mine: ART reserves?", answer="**Reserve** rules"
    )
    seed(world.globex, 200, user=world.globex_admin)
    InsightQuery.objects.filter(user=world.globex_admin).update(query="Admin's question")

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert "Mine: ART reserves?" in page
    assert "<strong>Reserve</strong> rules" in page
    assert "Admin&#x27;s question" not in page and "Admin's question" not in page


def test_outsiders_cannot_see_the_page(world, console):
    assert console(world.outsider).get(PAGE.format("globex")).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(world, client):
    response = client.get(PAGE.format("globex"))

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


QUESTION = "Does a white paper for an asset-referenced token need the NCA's approval? <b>&</b>"


def test_a_question_posted_after_the_session_expired_comes_back_after_signing_in(world, fake_anthropic, client):
    # Without JavaScript a redirect to the sign-in page would drop the POST and the question with it.
    expired = client.post(PAGE.format("globex"), {"query": QUESTION, "draft_by": typed_by(world.globex_member)})

    assert expired.status_code == 200
    page = expired.content.decode()
    assert "You were signed out before your question was sent, so nothing was asked." in page
    assert '<form method="post" action="/accounts/login/"' in page
    assert f'<input type="hidden" name="draft" value="{html.escape(QUESTION)}">' in page
    assert not InsightQuery.objects.exists() and fake_anthropic.requests == []
    # A mistyped password keeps it too.
    wrong = {"username": "member@globex.test", "password": "wrong", "next": "/orgs/globex/insights/"}
    retry = client.post(
        "/accounts/login/", {**wrong, "draft": QUESTION, "draft_by": typed_by(world.globex_member)}
    ).content.decode()
    assert f'name="draft" value="{html.escape(QUESTION)}"' in retry

    signed_in = client.post(
        "/accounts/login/",
        {**wrong, "password": PASSWORD, "draft": QUESTION, "draft_by": typed_by(world.globex_member)},
        follow=True,
    )

    assert signed_in.redirect_chain == [("/orgs/globex/insights/", 302)]
    assert f">{html.escape(QUESTION)}</textarea>" in signed_in.content.decode()
    assert "You were signed out before this question was sent: nothing was asked yet." in text_of(signed_in)
    assert not InsightQuery.objects.exists()  # it waits for the user to press Ask
    again = client.get(PAGE.format("globex")).content.decode()  # once only
    assert "></textarea>" in again and "signed out before" not in again


def stale_question_form(user, *, typed_for=None) -> tuple:
    """`user`'s AI Insights page, left open in a tab (without JavaScript) while they signed in again in another (a
    new CSRF secret), its question typed by `typed_for` (by default `user`)."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    page = browser.get(PAGE.format("globex")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    browser.cookies["csrftoken"] = "s" * 32  # what signing in again does to the cookie
    form = {"query": QUESTION, "csrfmiddlewaretoken": token, "draft_by": typed_by(typed_for or user)}
    return browser, form


def test_a_question_from_a_page_loaded_before_signing_in_again_comes_back_unasked(world, fake_anthropic):
    browser, form = stale_question_form(world.globex_member)

    back = browser.post(PAGE.format("globex"), form, follow=True)

    assert back.redirect_chain[-1] == ("/orgs/globex/insights/", 302)
    assert f">{html.escape(QUESTION)}</textarea>" in back.content.decode()
    assert (
        "This page was out of date (you signed in again since it was loaded): nothing was asked yet. "
        "Press Ask to send it." in text_of(back)
    )
    assert not InsightQuery.objects.exists() and fake_anthropic.requests == []
    again = browser.get(PAGE.format("globex")).content.decode()  # once only
    assert "></textarea>" in again and "out of date" not in again


def test_a_stale_question_typed_by_someone_else_is_given_to_no_one(world, fake_anthropic):
    Membership.objects.create(user=world.acme_owner, organisation=world.globex, role=Role.MEMBER)
    browser, form = stale_question_form(world.acme_owner, typed_for=world.globex_member)

    back = browser.post(PAGE.format("globex"), form, follow=True)

    assert back.redirect_chain[-1] == ("/orgs/globex/insights/", 302)
    assert html.escape(QUESTION) not in back.content.decode()
    assert "so nothing was changed: no question was asked." in text_of(back)
    assert not InsightQuery.objects.exists() and fake_anthropic.requests == []


def test_a_stale_streamed_question_still_gets_the_403_its_script_reloads_on(world, fake_anthropic):
    browser, form = stale_question_form(world.globex_member)

    refused = browser.post(PAGE.format("globex"), form, HTTP_ACCEPT="text/event-stream")

    assert refused.status_code == 403
    assert html.escape(QUESTION) not in browser.get(PAGE.format("globex")).content.decode()


def kept_in_sessions() -> str:
    """Everything the sessions hold, as one text."""
    from django.contrib.sessions.models import Session

    return "".join(repr(s.get_decoded()) for s in Session.objects.all())


def test_a_kept_question_over_the_limit_is_kept_cut_short_and_still_refused_as_too_long(world, fake_anthropic, client):
    # Kept whole in the session (a database row), a paste up to the request body's cap grew it by as much. Cut to the
    # longest question, it would be sent shortened without a word: it is cut one past it, where a mark says so.
    long_question = "Background. " * 5000 + "THE END?"
    client.post(PAGE.format("globex"), {"query": long_question, "draft_by": typed_by(world.globex_member)})
    login = {"username": "member@globex.test", "password": PASSWORD, "next": "/orgs/globex/insights/"}

    client.post("/accounts/login/", {**login, "draft": long_question, "draft_by": typed_by(world.globex_member)})
    kept = kept_in_sessions()
    back = client.get(PAGE.format("globex")).content.decode()
    shown = re.search(r"<textarea [^>]*>(.*?)</textarea>", back, re.DOTALL)[1]
    asked = client.post(PAGE.format("globex"), {"query": html.unescape(shown)})

    assert len(kept) < 5000 and "THE END?" not in kept
    assert html.unescape(shown) == long_question[:4000].strip() + "…"
    assert asked.status_code == 400
    assert "Questions are limited to 4,000 characters; yours has 4,001." in asked.content.decode()
    assert not InsightQuery.objects.exists()


def test_a_kept_question_within_the_limit_by_its_trimmed_length_is_not_cut(world, fake_anthropic, client):
    # Asking trims it and counts each line break once: a question over the limit only as typed is no question too long.
    question = "\r\n".join(["Line."] * 600) + " " * 200
    login = {"username": "member@globex.test", "password": PASSWORD, "next": "/orgs/globex/insights/"}

    back = client.post(
        "/accounts/login/", {**login, "draft": question, "draft_by": typed_by(world.globex_member)}, follow=True
    ).content.decode()

    shown = re.search(r"<textarea [^>]*>(.*?)</textarea>", back, re.DOTALL)[1]
    assert len(question) > 4000
    assert shown.replace("\r\n", "\n").strip() == "\n".join(["Line."] * 600)


def test_a_long_question_left_unsent_by_a_suggestion_is_kept_cut_short(world, fake_anthropic, console):
    client = console(world.globex_member)
    typed = "Background. " * 5000 + "THE END?"

    response = client.post(PAGE.format("globex"), {"query": typed, "suggestion": SUGGESTED_QUERIES[2]})

    assert response.status_code == 302
    assert len(kept_in_sessions()) < 5000
    page = client.get(response["Location"]).content.decode()
    assert f">{typed[:4000].strip()}…</textarea>" in page


def test_a_kept_question_goes_back_only_to_the_page_it_was_typed_on(world, client):
    Membership.objects.create(user=world.globex_member, organisation=world.acme, role=Role.MEMBER)
    client.post(
        "/accounts/login/",
        {
            "username": "member@globex.test",
            "password": PASSWORD,
            "draft": QUESTION,
            "draft_by": typed_by(world.globex_member),
        },
    )

    landed = client.get(PAGE.format("acme"))  # no `next`: signed in to the home page
    home = client.get(PAGE.format("globex"))

    assert landed.status_code == home.status_code == 200  # signed in: a sign-in redirect would show no question
    assert html.escape(QUESTION) not in landed.content.decode()
    assert html.escape(QUESTION) not in home.content.decode()


def test_a_kept_question_survives_an_older_queries_link_that_is_not_found(world, client):
    # A bookmarked "Show older queries" link naming a query since pruned is a 404: the question kept across sign-in
    # must still be there when the page itself is opened, not taken by the page that never showed it.
    pruned = seed(world.globex, 4000, user=world.globex_member)[0]
    InsightQuery.objects.filter(pk=pruned.pk).delete()
    login = {"username": "member@globex.test", "password": PASSWORD, "next": "/orgs/globex/insights/"}
    client.post("/accounts/login/", {**login, "draft": QUESTION, "draft_by": typed_by(world.globex_member)})

    missing = client.get(PAGE.format("globex"), {"after": pruned.pk})
    page = client.get(PAGE.format("globex"))

    assert missing.status_code == 404
    assert f">{html.escape(QUESTION)}</textarea>" in page.content.decode()
    assert "You were signed out before this question was sent: nothing was asked yet." in text_of(page)


def test_a_kept_question_survives_another_organisations_insights_page_opened_first(world, client):
    Membership.objects.create(user=world.globex_member, organisation=world.acme, role=Role.MEMBER)
    login = {"username": "member@globex.test", "password": PASSWORD, "next": "/orgs/globex/insights/"}
    client.post("/accounts/login/", {**login, "draft": QUESTION, "draft_by": typed_by(world.globex_member)})

    other = client.get(PAGE.format("acme"))  # another tab, another organisation: not the page it was typed on
    page = client.get(PAGE.format("globex"))

    assert html.escape(QUESTION) not in other.content.decode()
    assert f">{html.escape(QUESTION)}</textarea>" in page.content.decode()


def test_a_kept_question_goes_back_to_its_page_when_next_carries_a_query_string(world, client):
    # The sign-in form's `next` may name the page with its query string (an older history page): the question is kept
    # for the page itself, which shows it once opened, with or without that query string.
    login = {"username": "member@globex.test", "password": PASSWORD, "next": "/orgs/globex/insights/?after=5"}
    client.post("/accounts/login/", {**login, "draft": QUESTION, "draft_by": typed_by(world.globex_member)})

    page = client.get(PAGE.format("globex"))

    assert f">{html.escape(QUESTION)}</textarea>" in page.content.decode()


def test_a_no_js_post_redirects_to_the_whole_answer(world, fake_anthropic, console):
    client = console(world.globex_member)

    response = client.post(PAGE.format("globex"), {"query": "How are CASPs authorised?"})

    row = InsightQuery.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/orgs/globex/insights/?answered={row.pk}#answer"
    assert response["RateLimit-Policy"] == '"insights";q=20;w=3600'
    assert response["RateLimit"] == '"insights";r=19;t=3600'
    page = client.get(response["Location"]).content.decode()
    assert "<h3>Authorisation under MiCAR</h3>" in page
    assert 'id="usage-used">1</span> of <span id="usage-limit">20</span>' in page
    assert (row.outcome, row.query) == (Outcome.ANSWERED, "How are CASPs authorised?")


def test_a_suggestion_button_asks_that_question(world, fake_anthropic, console):
    console(world.globex_member).post(PAGE.format("globex"), {"query": "", "suggestion": SUGGESTED_QUERIES[1]})

    assert InsightQuery.objects.get().query == SUGGESTED_QUERIES[1]
    assert fake_anthropic.requests[0]["body"]["messages"][0]["content"] == SUGGESTED_QUERIES[1]


def test_a_suggestion_button_wins_over_a_draft_left_in_the_box(world, fake_anthropic, console):
    suggestion = SUGGESTED_QUERIES[2]

    console(world.globex_member).post(PAGE.format("globex"), {"query": "an old draft", "suggestion": suggestion})

    assert fake_anthropic.requests[-1]["body"]["messages"][0]["content"] == suggestion


def test_a_refused_suggestion_leaves_the_question_typed_in_the_box_where_it_was(world, fake_anthropic, console):
    # Without JavaScript a suggestion button sends its own question; refused (over the limit), the box comes
    # back with what was typed in it, not the suggestion, which is still a button away.
    seed_spread(world.globex, 20, oldest=1800, newest=60)
    typed = "How long may a CASP keep client records?"

    response = console(world.globex_member).post(
        PAGE.format("globex"), {"query": typed, "suggestion": SUGGESTED_QUERIES[2]}
    )

    assert response.status_code == 429
    assert f">{typed}</textarea>" in response.content.decode()
    assert not fake_anthropic.requests


def test_an_answered_suggestion_leaves_the_question_typed_in_the_box_on_the_page_it_leads_to(
    world, fake_anthropic, console
):
    # Without JavaScript a suggestion button sends its own question: the one typed in the box is still unsent, and
    # was lost once the suggestion was answered. The page the post leads to puts it back, once.
    typed = "How long may a CASP keep client records?"
    client = console(world.globex_member)

    response = client.post(PAGE.format("globex"), {"query": typed, "suggestion": SUGGESTED_QUERIES[2]})

    page = client.get(response["Location"]).content.decode()
    assert f">{typed}</textarea>" in page
    assert "data-asked-by-post" in page
    again = client.get(response["Location"]).content.decode()
    assert "></textarea>" in again and "data-asked-by-post" not in again


def test_a_key_typed_in_the_box_and_left_unsent_by_a_suggestion_is_kept_in_the_session_without_it(
    world, fake_anthropic, console
):
    # The page a suggestion's plain post leads to puts the box's unsent text back, from the session (a database row):
    # a key pasted there was stored as typed, though asking refuses it and a draft kept across sign-in blanks it.
    from django.contrib.sessions.models import Session

    client = console(world.globex_member)

    response = client.post(
        PAGE.format("globex"), {"query": f"Why does Anthropic refuse {CANARY_KEY}?", "suggestion": SUGGESTED_QUERIES[2]}
    )

    assert response.status_code == 302
    assert all(CANARY_KEY[13:45] not in repr(s.get_decoded()) for s in Session.objects.all())
    page = client.get(response["Location"]).content.decode()
    assert ">Why does Anthropic refuse sk-ant-[redacted]?</textarea>" in page  # the rest of it comes back
    assert CANARY_KEY[13:45] not in page


def test_a_question_asked_from_the_box_leaves_it_empty_on_the_page_it_leads_to(world, fake_anthropic, console):
    client = console(world.globex_member)

    response = client.post(PAGE.format("globex"), {"query": "How are CASPs authorised?"})

    page = client.get(response["Location"]).content.decode()
    assert "></textarea>" in page and "data-asked-by-post" in page


def test_a_plain_post_whose_answer_page_was_never_opened_leaves_other_loads_of_the_page_as_they_were(
    world, fake_anthropic, console
):
    # The tab closed before the post's redirect was followed: the next load of the page, in another tab, would have
    # been told a question was just asked from its box, and its script would have dropped that tab's unsent question.
    client = console(world.globex_member)
    client.post(PAGE.format("globex"), {"query": "How are CASPs authorised?"})

    assert "data-asked-by-post" not in client.get(PAGE.format("globex")).content.decode()


def answer_card(page: str) -> str:
    return page[page.index('id="answer"') : page.index('id="answer-body"')]


def test_an_answer_link_shows_that_answer_even_after_ten_newer_ones(world, console):
    old = seed(world.globex, 3000, user=world.globex_member)[0]
    InsightQuery.objects.filter(pk=old.pk).update(answer="**The old** answer")
    seed(world.globex, *range(10, 20), user=world.globex_member)

    page = console(world.globex_member).get(PAGE.format("globex"), {"answered": old.pk}).content.decode()

    assert " hidden>" not in answer_card(page)
    assert "<strong>The old</strong> answer" in page
    assert '<span class="muted">You asked:</span> seeded 0' in page  # which question it answers


@pytest.mark.parametrize("whose", ["someone else's", "deleted"])
def test_an_answer_link_to_no_answer_of_yours_shows_no_empty_answer_card(world, console, whose):
    other = seed(world.globex, 60, user=world.globex_admin)[0]
    InsightQuery.objects.filter(pk=other.pk).update(answer="The admin's private answer")
    pk = other.pk if whose == "someone else's" else other.pk + 1000

    page = console(world.globex_member).get(PAGE.format("globex"), {"answered": pk}).content.decode()

    assert " hidden>" in answer_card(page)
    assert "private answer" not in page


@pytest.mark.parametrize("answered", ["²", "9" * 5000, "-1", "abc"])
def test_a_mangled_answer_link_still_shows_the_page(world, console, answered):
    assert console(world.globex_member).get(PAGE.format("globex"), {"answered": answered}).status_code == 200


# --- Older queries: "Your recent queries" pages back, keyset as the API does, without JavaScript ------------------

OLDER = re.compile(r'<a id="history-older" href="([^"]+)"( hidden)?>Show older queries</a>')
BACK_TO_NEWEST = '<a id="history-newest" href="/orgs/globex/insights/#recent-heading">Back to your newest queries</a>'


def asked(page: str) -> list[str]:
    """The questions of "Your recent queries", newest first."""
    return [re.search(r'<span class="history__q">([^<]*)</span>', item)[1] for item in history_items(page)]


def older_link(page: str) -> str | None:
    """Where "Show older queries" leads, or None when the page offers no older queries."""
    match = OLDER.search(page)
    return html.unescape(match[1]) if match and not match[2] else None


def test_show_older_queries_pages_through_every_query_of_yours_and_back_without_javascript(world, console):
    # 25 of the member's own, some asked in the same instant (the keyset breaks ties by id), and the Admin's.
    seed(world.globex, *[900 - 10 * i for i in range(15)], *[300] * 10, user=world.globex_member)
    seed(world.globex, *range(1, 30), user=world.globex_admin)
    InsightQuery.objects.filter(user=world.globex_admin).update(query="Admin's question")
    client = console(world.globex_member)

    first = client.get(PAGE.format("globex")).content.decode()
    second = client.get(older_link(first)).content.decode()
    third = client.get(older_link(second)).content.decode()

    pages = [asked(page) for page in (first, second, third)]
    assert [len(page) for page in pages] == [10, 10, 5]
    newest_first = list(
        InsightQuery.objects.filter(user=world.globex_member)
        .order_by("-created_at", "-pk")
        .values_list("query", flat=True)
    )
    assert pages[0] + pages[1] + pages[2] == newest_first  # none missed, none twice
    assert older_link(third) is None  # the oldest: nothing further back
    assert BACK_TO_NEWEST not in first and BACK_TO_NEWEST in second and BACK_TO_NEWEST in third
    assert "Admin's question" not in html.unescape(first + second + third)
    # An older page is told apart in the browser's tabs and history; the newest entry opens on the newest page only.
    assert "<title>AI Insights, older queries · Globex Payments · Opsion</title>" in second
    assert "data-auto-open" in first and "data-auto-open" not in second + third


def test_a_single_page_of_queries_offers_no_older_page(world, console):
    seed(world.globex, *range(10, 20), user=world.globex_member)

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert len(history_items(page)) == 10
    assert older_link(page) is None and BACK_TO_NEWEST not in page


def test_a_query_of_yours_asked_after_the_page_was_loaded_does_not_shift_the_older_page(world, console):
    seed(world.globex, *range(100, 120), user=world.globex_member)  # "seeded 0" is the newest
    client = console(world.globex_member)
    first = client.get(PAGE.format("globex")).content.decode()
    seed(world.globex, 1, 2, user=world.globex_member)  # asked meanwhile, in another tab

    second = client.get(older_link(first)).content.decode()

    assert asked(first) == [f"seeded {i}" for i in range(10)]
    assert asked(second) == [f"seeded {i}" for i in range(10, 20)]  # from where the first page ended


@pytest.mark.parametrize("whose", ["another member's", "yours in another organisation", "deleted"])
def test_older_queries_after_a_query_that_is_not_yours_here_is_not_found_and_shows_nothing_of_it(world, console, whose):
    seed(world.globex, *range(100, 120), user=world.globex_member)
    if whose == "yours in another organisation":
        Membership.objects.create(user=world.globex_member, organisation=world.acme, role=Role.MEMBER)
        anchor = seed(world.acme, 5000, *range(200, 230), user=world.globex_member)[0]
    else:
        anchor = seed(world.globex, 5000, *range(200, 230), user=world.globex_admin)[0]
    InsightQuery.objects.filter(pk=anchor.pk).update(query="Private question", answer="Private answer")
    if whose == "deleted":
        InsightQuery.objects.filter(pk=anchor.pk).delete()

    response = console(world.globex_member).get(PAGE.format("globex"), {"after": anchor.pk})

    # The same answer whether the id exists, is someone else's or another organisation's: nothing to tell apart.
    assert response.status_code == 404
    assert "Private" not in response.content.decode() and "seeded" not in response.content.decode()


@pytest.mark.parametrize(
    "after", ["abc", "-1", "²", "9" * 5000, "1.5"], ids=["letters", "negative", "superscript", "long", "decimal"]
)
def test_a_mangled_older_queries_link_is_not_found(world, console, after):
    seed(world.globex, *range(100, 120), user=world.globex_member)

    assert console(world.globex_member).get(PAGE.format("globex"), {"after": after}).status_code == 404


def test_an_empty_after_is_the_newest_page(world, console):
    seed(world.globex, *range(100, 120), user=world.globex_member)

    page = console(world.globex_member).get(PAGE.format("globex"), {"after": ""}).content.decode()

    assert asked(page)[0] == "seeded 0" and BACK_TO_NEWEST not in page


def test_a_question_asked_from_an_older_page_without_javascript_leads_to_its_answer_on_the_newest(
    world, fake_anthropic, console
):
    older = seed(world.globex, *range(4000, 4020), user=world.globex_member)[10]  # out of the window
    client = console(world.globex_member)
    url = f"{PAGE.format('globex')}?after={older.pk}"

    response = client.post(url, {"query": "Which MiCAR articles govern ART reserves?"}, follow=True)

    assert response.redirect_chain[-1][0].startswith(PAGE.format("globex") + "?answered=")
    assert asked(response.content.decode())[0] == "Which MiCAR articles govern ART reserves?"


def test_the_form_of_an_older_page_posts_to_the_newest_page(world, console):
    # A plain post goes where the form's action says, else to the address it was loaded from: from an older page
    # (?after=) a refused or failed question's page, which lists the newest queries (the failed one on top), stood
    # at the older page's address, and a reload or a bookmark of it led back to the older queries.
    older = seed(world.globex, *range(4000, 4020), user=world.globex_member)[10]

    page = console(world.globex_member).get(PAGE.format("globex"), {"after": older.pk}).content.decode()

    assert '<form method="post" id="ask-form" action="/orgs/globex/insights/"' in page


@pytest.mark.parametrize(
    "window_seconds, words, refusal",
    [
        (3600, "60 minutes", "(20/hour)"),
        (600, "10 minutes", "(20 per 10 minutes)"),
        (7200, "2 hours", "(20 per 2 hours)"),
    ],
)
def test_the_pages_and_the_refusal_name_the_window_in_force(
    world, fake_anthropic, console, settings, window_seconds, words, refusal
):
    settings.INSIGHTS_WINDOW_SECONDS = window_seconds
    seed_spread(world.acme, 20, oldest=window_seconds / 2, newest=60)
    member, owner = console(world.acme_member), console(world.acme_owner)

    refused = text_of(member.post(PAGE.format("acme"), {"query": "One more?"}))
    settings_page = text_of(owner.get("/orgs/acme/settings/"))

    assert f"queries used by your organisation in the last {words}" in refused
    assert f"Rate limit reached {refusal}." in refused
    assert f"20 queries per rolling {words}" in settings_page


def test_past_an_hour_the_time_to_retry_is_rounded_up_never_down(world, fake_anthropic, console, settings):
    # A 2-hour window whose oldest counted query leaves in just over an hour (3,602 s): "1 h" would send
    # the user back a minute early, to another refusal. Under an hour the page already rounds up.
    settings.INSIGHTS_WINDOW_SECONDS = 7200
    seed_spread(world.globex, 20, oldest=3598.5, newest=60)

    response = console(world.globex_member).post(PAGE.format("globex"), {"query": "One more?"})

    assert abs(int(response["Retry-After"]) - 3602) <= 1
    text = text_of(response)
    assert "Rate limit reached (20 per 2 hours). Try again in 1 h 1 min." in text
    assert "The next query frees up in 1 h 1 min." in text


def test_over_the_limit_the_page_shows_the_message_and_the_time_to_retry(world, fake_anthropic, console):
    seed_spread(world.globex, 20, oldest=1800, newest=60)

    response = console(world.globex_member).post(PAGE.format("globex"), {"query": "One more?"})

    assert response.status_code == 429
    assert "Rate limit reached (20/hour). Try again in 30 min." in text_of(response)
    assert response["RateLimit"].startswith('"insights";r=0;t=')
    assert abs(int(response["Retry-After"]) - 1800) <= 1
    assert InsightQuery.objects.count() == 20


def test_over_the_limit_the_stream_request_gets_the_json_error_and_retry_after(
    world, fake_anthropic, console, acme_key
):
    seed_spread(world.acme, 200, oldest=900, newest=60, source="organisation")

    response = console(world.acme_member).post(PAGE.format("acme"), {"query": "q"}, HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 429
    assert response.json()["error"] == {"code": "rate_limited", "message": "Rate limit reached (200/hour)"}
    assert abs(int(response["Retry-After"]) - 2700) <= 1
    assert response["RateLimit-Policy"] == '"insights";q=200;w=3600'


def test_a_question_of_4000_characters_with_line_breaks_is_accepted_from_the_plain_form(world, fake_anthropic, console):
    # The browser counts a line break as one character; the plain form post sends it as two (CRLF).
    question = "Para one.\r\n" + "x" * 3990
    assert len(question.replace("\r\n", "\n")) == 4000

    response = console(world.globex_member).post(PAGE.format("globex"), {"query": question})

    assert response.status_code == 302
    assert InsightQuery.objects.get().query == question.replace("\r\n", "\n")


def test_an_empty_question_is_refused_on_the_page_without_counting(world, fake_anthropic, console):
    response = console(world.globex_member).post(PAGE.format("globex"), {"query": "   "})

    assert response.status_code == 400
    assert "Type a question first." in text_of(response)
    assert not InsightQuery.objects.exists()


def test_the_answer_streams_into_the_page_as_claude_writes_it(world, fake_anthropic, console):
    fake_anthropic.behave(PLATFORM_KEY, "hold")

    response = console(world.globex_member).post(
        PAGE.format("globex"), {"query": "Authorisation?"}, HTTP_ACCEPT="text/event-stream"
    )
    assert response.streaming
    assert response["Content-Type"] == "text/event-stream"
    assert response["X-Accel-Buffering"] == "no"
    assert response["Cache-Control"] == "no-store"
    assert response["RateLimit"] == '"insights";r=19;t=3600'
    chunks = iter(response.streaming_content)

    started = time.monotonic()
    name, data = parse_sse(next(chunks))
    assert name == "start"
    assert data == {
        "id": InsightQuery.objects.get().pk,
        "used": 1,
        "rateLimit": {"limit": 20, "remaining": 19, "resetSeconds": 3600},
        "keySource": "platform",
    }
    first = parse_sse(next(chunks))
    # The fake holds the rest of the answer (for up to 30 s) until released: this delta was streamed.
    assert time.monotonic() - started < 10
    assert not fake_anthropic.release.is_set()
    assert first == ("delta", {"text": fake_anthropic.answer_text[:24]})
    assert InsightQuery.objects.get().outcome == Outcome.PENDING

    fake_anthropic.release.set()
    rest = sse_events(chunks)

    names = [n for n, _ in rest]
    assert names[-2:] == ["done", "usage"]
    assert set(names[:-2]) == {"delta"}
    assert first[1]["text"] + "".join(d["text"] for n, d in rest if n == "delta") == fake_anthropic.answer_text
    done = dict(rest)["done"]
    assert done["html"].startswith("<h3>Authorisation under MiCAR</h3>")
    assert "<strong>authorised by the competent authority</strong>" in done["html"]
    assert dict(rest)["usage"] == {
        "used": 1,
        "limit": 20,
        "remaining": 19,
        "resetSeconds": pytest.approx(3600, abs=1),
        "keySource": "platform",
    }
    row = InsightQuery.objects.get()
    assert row.outcome == Outcome.ANSWERED
    # The new entry for "Your recent queries" is the one the page shows after a reload.
    reloaded = console(world.globex_member).get(PAGE.format("globex") + f"?answered={row.pk}").content.decode()
    assert history_items(done["historyItem"]) == history_items(reloaded)[:1]
    assert "Authorisation?" in done["historyItem"] and "<strong>authorised by" in done["historyItem"]


CUT_SHORT = (
    "Incomplete answer: Claude stopped at the length limit ({tokens} tokens), so this answer was cut short. "
    "Ask a narrower question, or one part of it at a time, for a whole answer."
)
DECLINED = (
    "Claude declined to answer this question. Any text shown was written before it stopped and is not an answer "
    "to rely on."
)


def notice_in(fragment: str) -> str:
    """The text of the stop notice in a page fragment (the answer card, a history entry), or ""."""
    found = re.search(r'<p class="alert alert--warning stop-notice"[^>]*>(.*?)</p>', fragment, re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split()) if found else ""


def test_without_javascript_an_answer_cut_off_at_the_length_cap_is_shown_as_incomplete(
    world, fake_anthropic, console, settings
):
    settings.ANTHROPIC_MAX_TOKENS = 1500
    fake_anthropic.default = "max_tokens"
    client = console(world.globex_member)

    response = client.post(PAGE.format("globex"), {"query": "Everything about MiCAR, please."})

    assert response.status_code == 302  # answered, not refused: the answer is kept and shown
    page = client.get(response["Location"]).content.decode()
    card = page[page.index('id="answer"') : page.index('id="recent-heading"')]
    assert notice_in(card) == CUT_SHORT.format(tokens="1,500")
    assert '<span class="badge badge--warn">incomplete</span>' in card  # said in words, not only in colour
    assert "<h3>Authorisation under MiCAR</h3>" in card and "Member State" not in card  # the half that came
    (entry,) = history_items(page)
    assert notice_in(entry) == CUT_SHORT.format(tokens="1,500")
    assert 'role="note"' in card and 'role="note"' in entry
    assert 'id="usage-used">1</span>' in page  # counted: Anthropic answered it and billed it


def test_a_streamed_answer_cut_off_at_the_length_cap_ends_with_the_notice(world, fake_anthropic, console):
    fake_anthropic.default = "max_tokens"

    response = console(world.globex_member).post(
        PAGE.format("globex"), {"query": "Everything about MiCAR, please."}, HTTP_ACCEPT="text/event-stream"
    )

    events = sse_events(response.streaming_content)
    assert [n for n, _ in events][-2:] == ["done", "usage"]
    done = dict(events)["done"]
    assert done["stopReason"] == "max_tokens"
    assert notice_in(done["notice"]) == CUT_SHORT.format(tokens="1,024")
    assert notice_in(done["historyItem"]) == CUT_SHORT.format(tokens="1,024")
    assert "<h3>Authorisation under MiCAR</h3>" in done["html"]
    row = InsightQuery.objects.get()
    reloaded = console(world.globex_member).get(PAGE.format("globex") + f"?answered={row.pk}").content.decode()
    assert history_items(done["historyItem"]) == history_items(reloaded)[:1]


def test_a_whole_answer_streams_with_no_notice(world, fake_anthropic, console):
    response = console(world.globex_member).post(PAGE.format("globex"), {"query": "q"}, HTTP_ACCEPT="text/event-stream")

    done = dict(sse_events(response.streaming_content))["done"]
    assert (done["stopReason"], done["notice"]) == ("complete", "")
    assert "stop-notice" not in done["historyItem"]


def test_an_answer_claude_declined_says_so_on_the_page_and_in_the_stream(world, fake_anthropic, console):
    fake_anthropic.default = "refusal"
    client = console(world.globex_member)

    streamed = dict(sse_events(client.post(PAGE.format("globex"), {"query": "q"}, HTTP_ACCEPT="text/event-stream")))
    plain = client.post(PAGE.format("globex"), {"query": "q2"})
    page = client.get(plain["Location"]).content.decode()

    assert streamed["done"]["stopReason"] == "refusal"
    assert notice_in(streamed["done"]["notice"]) == DECLINED
    card = page[page.index('id="answer"') : page.index('id="answer-body"')]
    assert notice_in(card) == DECLINED
    assert '<span class="badge badge--warn">declined</span>' in card
    assert [notice_in(entry) for entry in history_items(page)] == [DECLINED, DECLINED]


def test_the_history_marks_past_answers_that_were_cut_short_or_declined(world, console):
    whole, cut, declined, unknown = seed(world.globex, 40, 30, 20, 10, user=world.globex_member)
    InsightQuery.objects.filter(pk=cut.pk).update(stop_reason="max_tokens", output_tokens=4096)
    InsightQuery.objects.filter(pk=declined.pk).update(stop_reason="refusal", answer="")
    InsightQuery.objects.filter(pk=unknown.pk).update(stop_reason="max_tokens", output_tokens=None)

    items = history_items(console(world.globex_member).get(PAGE.format("globex")).content.decode())

    assert notice_in(items[0]) == CUT_SHORT.replace(" ({tokens} tokens)", "")  # no count recorded: none made up
    assert notice_in(items[1]) == DECLINED and "No answer was received." not in items[1]
    assert notice_in(items[2]) == CUT_SHORT.format(tokens="4,096")
    assert "badge--warn" in items[2] and "incomplete" in items[2]
    assert notice_in(items[3]) == "" and "badge" not in items[3]


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_in_development_owners_and_admins_see_the_operator_notice_when_no_platform_key_is_set(
    world, console, settings, role
):
    settings.ANTHROPIC_API_KEY = ""
    settings.DEBUG = True  # `make run`: whoever signs in as an Owner runs the server too

    page = console(getattr(world, f"globex_{role}")).get(PAGE.format("globex")).content.decode()

    assert NOTICE in page
    assert "README" in page


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_in_production_customers_owners_and_admins_are_not_told_to_edit_the_servers_environment(
    world, console, settings, role
):
    settings.ANTHROPIC_API_KEY = ""
    settings.DEBUG = False

    page = console(getattr(world, f"globex_{role}")).get(PAGE.format("globex")).content.decode()

    assert NOTICE not in page and "README" not in page


def test_staff_see_the_operator_notice(world, console, settings):
    settings.ANTHROPIC_API_KEY = ""
    Membership.objects.create(user=world.staff, organisation=world.globex, role=Role.MEMBER)

    assert NOTICE in console(world.staff).get(PAGE.format("globex")).content.decode()


def test_members_do_not_see_the_operator_notice(world, console, settings):
    settings.ANTHROPIC_API_KEY = ""

    page = console(world.globex_member).get(PAGE.format("globex")).content.decode()

    assert NOTICE not in page


def test_members_get_the_generic_message_when_no_platform_key_is_set(world, fake_anthropic, console, settings):
    settings.ANTHROPIC_API_KEY = ""

    response = console(world.globex_member).post(PAGE.format("globex"), {"query": "MiCAR?"})

    assert response.status_code == 503
    assert UNAVAILABLE_MESSAGE in text_of(response)
    assert NOTICE not in response.content.decode()


def test_no_notice_when_the_platform_key_is_set(world, console, fake_anthropic):
    assert NOTICE not in console(world.globex_owner).get(PAGE.format("globex")).content.decode()


def test_no_notice_when_the_organisation_uses_its_own_key(world, console, settings, acme_key):
    settings.ANTHROPIC_API_KEY = ""

    assert NOTICE not in console(world.acme_owner).get(PAGE.format("acme")).content.decode()


def once_of(page: str) -> str:
    return re.search(r'<input type="hidden" name="once" value="([^"]+)">', page).group(1)


def test_a_double_click_without_javascript_asks_and_bills_the_question_once(world, fake_anthropic, console):
    client = console(world.globex_member)
    form = {"query": "Which reserve rules apply?", "once": once_of(client.get(PAGE.format("globex")).content.decode())}

    first = client.post(PAGE.format("globex"), form)
    second = client.post(PAGE.format("globex"), form, follow=True)

    assert first.status_code == 302 and "?answered=" in first["Location"]
    assert InsightQuery.objects.filter(organisation=world.globex).count() == 1
    assert "That question was sent twice, so it was asked once" in text_of(second)
    assert "Which reserve rules apply?" in text_of(second)  # in "Your recent queries"


def test_ask_pressed_again_long_after_the_first_still_asks_and_bills_once(world, fake_anthropic, console, monkeypatch):
    # Without JavaScript nothing shows an answer is on its way, and one may take minutes (ANTHROPIC_TIMEOUT_SECONDS
    # bounds each read): the form's claim must outlast an impatient second press, not only a double click.
    import django.core.cache.backends.base
    import django.core.cache.backends.locmem

    client = console(world.globex_member)
    form = {"query": "Which reserve rules apply?", "once": once_of(client.get(PAGE.format("globex")).content.decode())}
    client.post(PAGE.format("globex"), form)
    later = types.SimpleNamespace(time=lambda: time.time() + 600)
    for module in (django.core.cache.backends.base, django.core.cache.backends.locmem):
        monkeypatch.setattr(module, "time", later)

    again = client.post(PAGE.format("globex"), form, follow=True)

    assert InsightQuery.objects.filter(organisation=world.globex).count() == 1
    assert "That question was sent twice, so it was asked once" in text_of(again)


def test_a_form_restored_by_back_still_asks_a_different_question(world, fake_anthropic, console):
    client = console(world.globex_member)
    once = once_of(client.get(PAGE.format("globex")).content.decode())

    client.post(PAGE.format("globex"), {"query": "First question?", "once": once})
    client.post(PAGE.format("globex"), {"query": "Second question?", "once": once})

    asked = InsightQuery.objects.filter(organisation=world.globex).values_list("query", flat=True)
    assert sorted(asked) == ["First question?", "Second question?"]


def test_the_streaming_page_asks_every_question_its_form_sends(world, fake_anthropic, console):
    # With JavaScript the page stays loaded between questions, so the form's one-time value repeats: the
    # script disables Ask while an answer streams instead, and asking the same question again is allowed.
    client = console(world.globex_member)
    once = once_of(client.get(PAGE.format("globex")).content.decode())

    for _ in range(2):
        response = client.post(
            PAGE.format("globex"), {"query": "Same question?", "once": once}, HTTP_ACCEPT="text/event-stream"
        )
        assert "done" in dict(sse_events(response.streaming_content))

    assert InsightQuery.objects.filter(organisation=world.globex).count() == 2


def test_a_form_refused_before_its_question_was_asked_can_be_sent_again(world, fake_anthropic, console):
    # Over the limit nothing is asked or recorded. Sending that page's form again once the limit has room
    # (a reload, which re-posts it; or a double click answered by the refusal) must ask the question, not
    # say it "was asked once" with nothing in the history.
    seed_spread(world.globex, 20, oldest=1800, newest=60)
    client = console(world.globex_member)
    form = {"query": "Which reserve rules apply?", "once": once_of(client.get(PAGE.format("globex")).content.decode())}
    assert client.post(PAGE.format("globex"), form).status_code == 429
    InsightQuery.objects.filter(organisation=world.globex).delete()  # the window has moved on

    again = client.post(PAGE.format("globex"), form)

    assert again.status_code == 302 and "?answered=" in again["Location"]
    assert list(InsightQuery.objects.filter(organisation=world.globex).values_list("query", flat=True)) == [
        "Which reserve rules apply?"
    ]


def test_a_form_whose_question_failed_can_be_sent_again(world, acme_key, fake_anthropic, console):
    # Anthropic's own limit: the page says "Try again in 30 seconds". Sending the form again then (a reload
    # re-posts it) must ask again, not say it "was asked once: its answer appears" with no answer anywhere.
    fake_anthropic.behave(acme_key, "rate_limited")
    client = console(world.acme_member)
    form = {"query": "Which reserve rules apply?", "once": once_of(client.get(PAGE.format("acme")).content.decode())}
    assert client.post(PAGE.format("acme"), form).status_code == 429
    fake_anthropic.behave(acme_key, "ok")

    again = client.post(PAGE.format("acme"), form)

    assert again.status_code == 302 and "?answered=" in again["Location"]
    outcomes = InsightQuery.objects.filter(organisation=world.acme).order_by("id").values_list("outcome", flat=True)
    assert list(outcomes) == [Outcome.FAILED, Outcome.ANSWERED]


def test_a_forms_one_time_value_of_any_length_makes_a_short_cache_key(world, fake_anthropic, console):
    # `once` comes from the request: kept whole in the shared cache's key for a day, a member could park
    # tens of kilobytes per post there (Redis also holds the sign-in guards' counters).
    client = console(world.globex_member)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = client.post(PAGE.format("globex"), {"query": "Which reserve rules apply?", "once": "x" * 50_000})

    assert response.status_code == 302 and "?answered=" in response["Location"]
    assert not [w for w in caught if issubclass(w.category, CacheKeyWarning)]


@pytest.mark.parametrize("asked_before", [0, 3], ids=["none-asked", "some-asked"])
def test_a_limit_set_to_zero_refuses_every_query_without_breaking_the_page_or_saying_retry_now(
    world, fake_anthropic, console, api_client, settings, asked_before
):
    # The README allows a limit of 0 ("refuses every query on that key"). Queries counted before it was set
    # must not break the page (nothing will ever free up a place), nor may a refusal say "retry in 0 s".
    seed_spread(world.globex, asked_before, oldest=1800, newest=60)
    settings.INSIGHTS_PLATFORM_LIMIT = 0

    page = console(world.globex_member).get(PAGE.format("globex"))
    refused = api_client(world.globex_member).post(
        "/api/v1/orgs/globex/insights/queries", {"query": "Which reserve rules apply?"}, content_type="application/json"
    )

    assert page.status_code == 200
    assert 'id="usage-reset-in">0 s</strong>' not in page.content.decode()
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused["Retry-After"]) > 0
    assert InsightQuery.objects.filter(organisation=world.globex).count() == asked_before


def test_a_question_kept_across_sign_in_is_not_given_to_the_next_person_to_sign_in(world, console):
    # A shared computer: the member's session ended with their question sent; the Owner signs in on that sign-in page.
    client = console(world.globex_member)
    page = client.get(PAGE.format("globex")).content.decode()
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.split('id="ask-form"')[1]))
    client.logout()
    sign_in = client.post(PAGE.format("globex"), {**form, "query": QUESTION}).content.decode()
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', sign_in))
    fields = {name: html.unescape(value) for name, value in fields.items()}

    landed = client.post("/accounts/login/", {**fields, "username": "owner@globex.test", "password": PASSWORD})
    page = client.get(landed["Location"]).content.decode()

    assert landed["Location"] == "/orgs/globex/insights/"
    assert html.escape(QUESTION) not in page and "signed out before" not in page


def test_a_question_holding_a_key_is_refused_on_the_page_kept_in_the_box_without_it_and_never_stored(
    world, fake_anthropic, console
):
    question = f"Why does Anthropic refuse our key {CANARY_KEY}?"
    form = {"query": question, "once": "a-form"}

    response = console(world.globex_member).post(PAGE.format("globex"), form)

    assert response.status_code == 400
    page = response.content.decode()
    assert "Your question holds what looks like a Claude API key or an API token" in text_of(response)
    # Kept in the box for its user to ask again, the key blanked where it was: the page sends no key back, even to
    # the one who typed it (a shared screen, a cached or printed page), as a refused token name is not sent back.
    assert ">Why does Anthropic refuse our key sk-ant-[redacted]?</textarea>" in page
    assert CANARY_KEY[13:45] not in page
    assert not InsightQuery.objects.exists() and fake_anthropic.requests == []
    assert response["RateLimit"].startswith('"insights";r=20;')


def test_a_streamed_question_holding_a_key_is_refused_in_json_echoing_nothing(world, fake_anthropic, console):
    response = console(world.globex_member).post(
        PAGE.format("globex"), {"query": f"Is {CANARY_KEY} valid?"}, HTTP_ACCEPT="text/event-stream"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "query_holds_secret"
    assert CANARY_KEY[13:45] not in response.content.decode()
    assert not InsightQuery.objects.exists() and fake_anthropic.requests == []


def test_a_question_holding_a_key_kept_across_sign_in_is_kept_without_it(world, fake_anthropic, client):
    # Posted after the session expired, the question is kept in the session (the database) between sign-in and its
    # page: a key in it was stored there as typed, though asking refuses it.
    from django.contrib.sessions.models import Session

    question = f"Why does Anthropic refuse {CANARY_KEY}?"
    login = {"username": "member@globex.test", "password": PASSWORD, "next": "/orgs/globex/insights/"}

    client.post("/accounts/login/", {**login, "draft": question, "draft_by": typed_by(world.globex_member)})

    assert all(CANARY_KEY[13:45] not in repr(s.get_decoded()) for s in Session.objects.all())
    back = client.get(PAGE.format("globex")).content.decode()
    assert ">Why does Anthropic refuse sk-ant-[redacted]?</textarea>" in back  # the rest of it comes back
    assert CANARY_KEY[13:45] not in back


def test_a_question_holding_a_key_posted_after_the_session_expired_is_carried_without_it(world, fake_anthropic, client):
    # The sign-in page answering the post carries the question in a hidden field, a page left open on what may be a
    # shared computer (and sent again with a mistyped password): the key is blanked there too, the rest carried.
    question = f"Why does Anthropic refuse {CANARY_KEY}?"
    by = typed_by(world.globex_member)

    expired = client.post(PAGE.format("globex"), {"query": question, "draft_by": by}).content.decode()
    wrong = {"username": "member@globex.test", "password": "wrong", "next": "/orgs/globex/insights/"}
    retry = client.post("/accounts/login/", {**wrong, "draft": question, "draft_by": by}).content.decode()

    for page in (expired, retry):
        assert 'name="draft" value="Why does Anthropic refuse sk-ant-[redacted]?"' in page
        assert CANARY_KEY[13:45] not in page
