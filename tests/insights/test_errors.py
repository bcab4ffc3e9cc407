"""Every row of the error table, over the JSON API, the no-JS console POST and the SSE stream.

The messages are the product documentation's contract; no SDK text or traceback may reach a user.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.utils.html import escape

from insights import services
from insights.models import InsightQuery, Outcome
from tests.base import GOOD_KEY
from tests.clients import closed_port
from tests.conftest import PLATFORM_KEY

from .helpers import INVALID_KEY_MESSAGE, UNAVAILABLE_MESSAGE, assert_no_leaks, history_items, sse_events

UPSTREAM_LIMITED_MESSAGE = (
    "Your organisation's Anthropic account is rate-limited by Anthropic. Try again in 30 seconds."
)
# The 503's Retry-After: Anthropic overloaded or unreachable, or the platform key missing, each for a time no one here
# knows; a hint of half a minute, never Anthropic's own wait on Opsion's platform account.
UNAVAILABLE_WAIT = 30


def closed_port_url() -> str:
    return f"http://127.0.0.1:{closed_port()}"


@dataclass(frozen=True)
class Case:
    id: str
    slug: str  # acme has its own key; globex runs on the platform key
    arrange: Callable
    status: int
    code: str
    message: str
    retry_after: int | None = None
    sent: bool = True  # reached Anthropic, so it counts and leaves a failed row


def behave(key: str, behaviour: str) -> Callable:
    def arrange(fake, settings, monkeypatch):
        fake.behave(key, behaviour)

    return arrange


def slow(fake, settings, monkeypatch):
    monkeypatch.setattr(fake, "delay", 1.0)
    settings.ANTHROPIC_TIMEOUT_SECONDS = 0.2
    fake.default = "slow"


def refused_connection(fake, settings, monkeypatch):
    settings.ANTHROPIC_BASE_URL = closed_port_url()


def no_platform_key(fake, settings, monkeypatch):
    settings.ANTHROPIC_API_KEY = ""


CASES = [
    Case("org-key-401", "acme", behave(GOOD_KEY, "auth_error"), 400, "claude_api_key_invalid", INVALID_KEY_MESSAGE),
    Case(
        "org-key-403", "acme", behave(GOOD_KEY, "permission_error"), 400, "claude_api_key_invalid", INVALID_KEY_MESSAGE
    ),
    Case(
        "org-key-429",
        "acme",
        behave(GOOD_KEY, "rate_limited"),
        429,
        "upstream_rate_limited",
        UPSTREAM_LIMITED_MESSAGE,
        retry_after=30,
    ),
    Case(
        "platform-key-401",
        "globex",
        behave(PLATFORM_KEY, "auth_error"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "platform-key-403",
        "globex",
        behave(PLATFORM_KEY, "permission_error"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "platform-key-429",
        "globex",
        behave(PLATFORM_KEY, "rate_limited"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "org-key-500",
        "acme",
        behave(GOOD_KEY, "server_error"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "platform-key-529",
        "globex",
        behave(PLATFORM_KEY, "overloaded"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "org-key-529",
        "acme",
        behave(GOOD_KEY, "overloaded"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case("timeout", "globex", slow, 503, "insights_unavailable", UNAVAILABLE_MESSAGE, retry_after=UNAVAILABLE_WAIT),
    Case(
        "connection-refused",
        "acme",
        refused_connection,
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "midstream-error",
        "globex",
        behave(PLATFORM_KEY, "midstream_error"),
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
    ),
    Case(
        "no-platform-key",
        "globex",
        no_platform_key,
        503,
        "insights_unavailable",
        UNAVAILABLE_MESSAGE,
        retry_after=UNAVAILABLE_WAIT,
        sent=False,
    ),
]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request, world, acme_key, fake_anthropic, settings, monkeypatch) -> Case:
    request.param.arrange(fake_anthropic, settings, monkeypatch)
    return request.param


def member(world, slug: str):
    return world.acme_member if slug == "acme" else world.globex_member


def assert_recorded(case: Case, world) -> None:
    rows = InsightQuery.objects.all()
    if not case.sent:
        assert not rows.exists()
        return
    row = rows.get()
    assert row.organisation.slug == case.slug
    assert (row.outcome, row.error_code) == (Outcome.FAILED, case.code)
    assert row.completed_at is not None


def test_the_api_answers_with_the_documented_error(case, world, api_client, caplog):
    client = api_client(member(world, case.slug))

    with caplog.at_level(logging.INFO):
        response = client.post(
            f"/api/v1/orgs/{case.slug}/insights/queries", {"query": "MiCAR?"}, content_type="application/json"
        )

    assert response.status_code == case.status
    assert response.json()["error"] == {"code": case.code, "message": case.message}
    assert response.get("Retry-After") == (str(case.retry_after) if case.retry_after else None)
    assert response["RateLimit-Policy"].startswith('"insights";q=')
    assert response["RateLimit"].startswith('"insights";r=')
    assert_no_leaks(response.content.decode())
    assert_recorded(case, world)
    for key in (GOOD_KEY, PLATFORM_KEY):
        assert key not in caplog.text


def test_the_console_without_javascript_shows_the_message_on_the_page(case, world, console):
    response = console(member(world, case.slug)).post(f"/orgs/{case.slug}/insights/", {"query": "MiCAR?"})

    assert response.status_code == case.status
    page = response.content.decode()
    assert escape(case.message) in page
    assert 'value="MiCAR?"' in page or ">MiCAR?</textarea>" in page  # the question is kept for another try
    assert response["RateLimit-Policy"].startswith('"insights";q=')
    assert response.get("Retry-After") == (str(case.retry_after) if case.retry_after else None)
    assert_no_leaks(page)
    assert_recorded(case, world)


def test_the_document_declares_when_to_retry_an_unavailable_answer(client):
    operation = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/orgs/{slug}/insights/queries"]["post"]

    retry_after = operation["responses"]["503"]["headers"]["Retry-After"]
    assert retry_after["schema"] == {"type": "integer"}  # whole seconds, as the 429's
    assert retry_after["required"] is True  # on the database's own 503 (`service_unavailable`) too


def test_the_console_stream_ends_with_an_error_event(case, world, console):
    response = console(member(world, case.slug)).post(
        f"/orgs/{case.slug}/insights/", {"query": "MiCAR?"}, HTTP_ACCEPT="text/event-stream"
    )

    assert response["RateLimit-Policy"].startswith('"insights";q=')
    if not case.sent:
        # Refused before anything was counted: a plain JSON error the page's script shows as is.
        assert response.status_code == case.status
        assert response.json()["error"] == {"code": case.code, "message": case.message}
    else:
        assert response.status_code == 200
        raw = b"".join(response.streaming_content)
        events = sse_events([raw])
        names = [name for name, _ in events]
        assert names[0] == "start" and names[-1] == "usage"
        assert "done" not in names
        error = dict(events)["error"]
        assert (error["code"], error["message"]) == (case.code, case.message)
        # The failed query joins "Your recent queries" at once, as a reload would show it.
        assert '<span class="history__q">MiCAR?</span>' in error["historyItem"]
        assert '<span class="badge badge--bad">failed</span>' in error["historyItem"]
        assert_no_leaks(raw.decode())
    assert_recorded(case, world)


def test_an_error_mid_stream_keeps_the_partial_answer_and_marks_the_row_failed(world, fake_anthropic, console):
    fake_anthropic.behave(PLATFORM_KEY, "midstream_error")

    response = console(world.globex_member).post(
        "/orgs/globex/insights/", {"query": "MiCAR?"}, HTTP_ACCEPT="text/event-stream"
    )
    events = sse_events(response.streaming_content)

    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) == 2
    assert [name for name, _ in events][-2:] == ["error", "usage"]
    assert events[-2][1]["message"] == UNAVAILABLE_MESSAGE
    row = InsightQuery.objects.get()
    assert (row.outcome, row.error_code, row.answer) == (Outcome.FAILED, "insights_unavailable", "".join(deltas))
    assert events[-1][1]["used"] == 1
    # What arrived is rendered, not left as raw Markdown (the fake's answer opens with a heading).
    assert events[-2][1]["html"].startswith("<h3>") and "##" not in events[-2][1]["html"]
    # Listed as failed, with what arrived, exactly as the page lists it after a reload.
    reloaded = console(world.globex_member).get(f"/orgs/globex/insights/?answered={row.pk}").content.decode()
    assert history_items(events[-2][1]["historyItem"]) == history_items(reloaded)[:1]
    assert '<span class="badge badge--bad">failed</span>' in events[-2][1]["historyItem"]


PARTIAL = "Only part of the answer was received: it stops where the failure cut it off."


@pytest.mark.parametrize(
    ("slug", "error_type", "alert_says", "notice_says"),
    [
        ("globex", "overloaded_error", UNAVAILABLE_MESSAGE, PARTIAL + " Ask again for a whole answer."),
        ("acme", "authentication_error", INVALID_KEY_MESSAGE, PARTIAL),
    ],
    ids=["platform-unavailable", "own-key-rejected"],
)
def test_without_javascript_an_error_mid_answer_shows_the_part_received_marked_as_such_in_the_answer_card(
    world, acme_key, fake_anthropic, console, slug, error_type, alert_says, notice_says
):
    # The page answering the plain post gave the error alone in the answer card: the part that arrived was only in
    # "Your recent queries". The streaming page shows it under the error, after the notice saying it is only part.
    fake_anthropic.behave(PLATFORM_KEY, "midstream_error")
    fake_anthropic.behave(GOOD_KEY, "midstream_error")
    fake_anthropic.midstream_error = error_type
    user = world.globex_member if slug == "globex" else world.acme_member

    page = console(user).post(f"/orgs/{slug}/insights/", {"query": "MiCAR?"}).content.decode()

    card = page[page.index('id="answer"') : page.index('id="usage-meter"')]
    error = re.search(r'<div id="answer-error">(.*?)</div>', card, re.DOTALL)[1]
    notice = re.search(r'<div id="answer-notice">(.*?)</div>', card, re.DOTALL)[1]
    body = re.search(r'<div id="answer-body" class="prose">(.*?)</div>', card, re.DOTALL)[1]
    row = InsightQuery.objects.get()
    assert row.outcome == Outcome.FAILED and row.answer
    assert escape(alert_says) in error
    assert 'role="note"' in notice and " ".join(re.sub(r"<[^>]+>", "", notice).split()) == notice_says
    # Rendered as the history renders it (the fake's answer opens with a heading), not left as raw Markdown.
    assert body.startswith("<h3>Authorisation under MiCAR</h3>") and "##" not in body


@pytest.mark.parametrize(
    ("refused", "helps"),
    [
        (services.InsightsUnavailable(), True),
        (services.UpstreamRateLimited(30), True),
        (services.KeyInvalid(), False),  # an Owner or Admin must save a valid key first
        (services.KeyUnreadable(), False),  # saved again first
        (services.UpstreamBilling(), False),  # whoever manages the Anthropic account pays first
    ],
    ids=lambda value: getattr(value, "code", str(value)),
)
def test_asking_again_is_suggested_only_where_it_could_succeed(refused, helps):
    # The console's notice before the part of an answer cut off by `refused`, on the page and in the stream alike.
    assert services.retry_helps(refused) is helps


def test_operators_get_a_log_line_without_the_key_when_the_platform_key_is_rejected(
    world, fake_anthropic, api_client, caplog
):
    fake_anthropic.behave(PLATFORM_KEY, "auth_error")

    with caplog.at_level(logging.INFO, logger="opsion.insights"):
        api_client(world.globex_member).post(
            "/api/v1/orgs/globex/insights/queries", {"query": "MiCAR?"}, content_type="application/json"
        )

    errors = [r for r in caplog.records if r.name == "opsion.insights" and r.levelno >= logging.ERROR]
    assert errors, "no log line for the operator"
    assert "globex" in errors[0].getMessage() and "platform" in errors[0].getMessage()
    assert PLATFORM_KEY not in caplog.text


@pytest.mark.parametrize(
    "slug, key, behaviour, level, expected",
    [
        ("globex", PLATFORM_KEY, "server_error", logging.ERROR, "insights unavailable for org=globex"),
        ("acme", GOOD_KEY, "overloaded", logging.ERROR, "insights unavailable for org=acme"),
        ("acme", GOOD_KEY, "auth_error", logging.INFO, "org=acme: anthropic auth (status 401)"),
        ("acme", GOOD_KEY, "rate_limited", logging.INFO, "org=acme: anthropic rate_limited (status 429)"),
    ],
    ids=["platform-key-500", "org-key-529", "org-key-401", "org-key-429"],
)
def test_an_upstream_failure_is_logged_once_with_its_organisation(
    world, fake_anthropic, api_client, acme_key, caplog, slug, key, behaviour, level, expected
):
    fake_anthropic.behave(key, behaviour)

    with caplog.at_level(logging.INFO, logger="opsion"):
        api_client(member(world, slug)).post(
            f"/api/v1/orgs/{slug}/insights/queries", {"query": "MiCAR?"}, content_type="application/json"
        )

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("opsion")]
    assert len(lines) == 1, lines
    assert lines[0][0] == level and lines[0][1].startswith(expected)
    assert key not in caplog.text


def test_a_rejected_organisation_key_is_not_retried_on_the_platform_key(world, fake_anthropic, api_client, acme_key):
    fake_anthropic.behave(GOOD_KEY, "auth_error")

    api_client(world.acme_member).post(
        "/api/v1/orgs/acme/insights/queries", {"query": "MiCAR?"}, content_type="application/json"
    )

    assert fake_anthropic.keys_used == [GOOD_KEY]


def test_an_upstream_limit_without_a_retry_time_says_to_try_again_shortly(world, fake_anthropic, api_client, acme_key):
    fake_anthropic.behave(GOOD_KEY, "rate_limited")
    fake_anthropic.retry_after = ""

    response = api_client(world.acme_member).post(
        "/api/v1/orgs/acme/insights/queries", {"query": "MiCAR?"}, content_type="application/json"
    )

    assert response.status_code == 429
    assert response.json()["error"] == {
        "code": "upstream_rate_limited",
        "message": "Your organisation's Anthropic account is rate-limited by Anthropic. Try again shortly.",
    }
    assert "Retry-After" not in response


def test_an_overloaded_anthropic_is_not_retried_in_the_request_path(world, fake_anthropic, api_client):
    # Real Anthropic marks 529 as retryable; the SDK's retries are off (it would obey any retry-after).
    fake_anthropic.behave(PLATFORM_KEY, "overloaded")
    fake_anthropic.should_retry = "true"

    response = api_client(world.globex_member).post(
        "/api/v1/orgs/globex/insights/queries", {"query": "MiCAR?"}, content_type="application/json"
    )

    assert response.status_code == 503
    assert len(fake_anthropic.requests) == 1
