"""Anthropic failing in every way it can: each query answers promptly with a clear message,
its InsightQuery row records the outcome, and nothing is left holding a worker or a lock.

(The exact wording of each error is pinned in tests/insights/; here the point is the fault.)
"""

import json
import threading
import time

import pytest
from django.db import connections
from django.urls import reverse

from insights.models import InsightQuery, KeySource, Outcome
from orgs.models import ClaudeApiKey, KeyStatus
from tests.clients import closed_port
from tests.conftest import PLATFORM_KEY

QUESTION = "What does MiCAR Article 59 require?"
UNAVAILABLE = "AI Insights is temporarily unavailable. Please try again shortly."


def api_ask(client, slug: str):
    return client.post(
        f"/api/v1/orgs/{slug}/insights/queries", data=json.dumps({"query": QUESTION}), content_type="application/json"
    )


def only_row(org) -> InsightQuery:
    rows = list(InsightQuery.objects.filter(organisation=org))
    assert len(rows) == 1, rows
    return rows[0]


def assert_failed(row: InsightQuery, error_code: str) -> None:
    assert row.outcome == Outcome.FAILED
    assert row.error_code == error_code
    assert row.completed_at is not None


def assert_next_query_answers(client, slug: str, fake) -> None:
    """Nothing was left stuck: the organisation's very next query goes through and is answered."""
    fake.reset()
    response = api_ask(client, slug)
    assert response.status_code == 200, response.content
    assert InsightQuery.objects.filter(organisation__slug=slug, outcome=Outcome.PENDING).count() == 0


def test_a_timeout_answers_503_before_anthropic_would_have_and_records_it(
    world, api_client, fake_anthropic, settings, monkeypatch
):
    fake_anthropic.default = "slow"
    monkeypatch.setattr(fake_anthropic, "delay", 10.0)
    settings.ANTHROPIC_TIMEOUT_SECONDS = 0.5
    client = api_client(world.globex_member)

    started = time.monotonic()
    response = api_ask(client, "globex")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["error"] == {"code": "insights_unavailable", "message": UNAVAILABLE}
    # The fake would have answered 200 after 10 s; our 0.5 s timeout won.
    assert elapsed < fake_anthropic.delay
    assert_failed(only_row(world.globex), "insights_unavailable")
    assert_next_query_answers(client, "globex", fake_anthropic)


def _trickle(fake, monkeypatch) -> None:
    fake.answer_text = "word " * 400  # about 80 pieces, 0.2 s apart: 16 s in all
    fake.chunk_pause = 0.2


def _pings(fake, monkeypatch) -> None:
    fake.default = "pings"  # Anthropic's keep-alives, which the SDK drops before our loop sees them
    monkeypatch.setattr(fake, "delay", 8.0)


@pytest.mark.parametrize("reply", [_trickle, _pings], ids=["text-trickling-in", "keep-alive-pings-only"])
def test_a_reply_that_never_finishes_is_cut_off_at_the_timeout(
    world, api_client, fake_anthropic, settings, monkeypatch, reply
):
    # Each piece arrives within the per-read timeout, so only the whole-reply deadline can stop it; otherwise
    # the worker thread is held for as long as pieces come.
    reply(fake_anthropic, monkeypatch)
    settings.ANTHROPIC_TIMEOUT_SECONDS = 1
    client = api_client(world.globex_member)

    started = time.monotonic()
    response = api_ask(client, "globex")
    elapsed = time.monotonic() - started

    assert response.status_code == 503 and response.json()["error"]["code"] == "insights_unavailable"
    assert elapsed < 5
    assert_failed(only_row(world.globex), "insights_unavailable")
    assert_next_query_answers(client, "globex", fake_anthropic)


def test_connection_refused_answers_503_and_leaves_the_org_key_untouched(
    world, acme_key, api_client, fake_anthropic, settings
):
    settings.ANTHROPIC_BASE_URL = f"http://127.0.0.1:{closed_port()}"

    response = api_ask(api_client(world.acme_member), "acme")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "insights_unavailable"
    row = only_row(world.acme)
    assert row.key_source == KeySource.ORGANISATION
    assert_failed(row, "insights_unavailable")
    # An unreachable Anthropic says nothing about the key: it must not be marked invalid.
    assert ClaudeApiKey.objects.get(organisation=world.acme).status == KeyStatus.UNVERIFIED


@pytest.mark.parametrize("behaviour", ["server_error", "overloaded"])
@pytest.mark.parametrize("org_slug", ["acme", "globex"])
def test_anthropic_500_and_529_answer_503_on_either_key(
    world, acme_key, api_client, fake_anthropic, behaviour, org_slug
):
    fake_anthropic.default = behaviour
    member = {"acme": world.acme_member, "globex": world.globex_member}[org_slug]
    client = api_client(member)

    response = api_ask(client, org_slug)

    assert response.status_code == 503
    assert response.json()["error"] == {"code": "insights_unavailable", "message": UNAVAILABLE}
    assert fake_anthropic.keys_used == [acme_key if org_slug == "acme" else PLATFORM_KEY]
    assert_failed(only_row(member.memberships.get().organisation), "insights_unavailable")
    assert ClaudeApiKey.objects.get(organisation=world.acme).status == KeyStatus.UNVERIFIED
    assert_next_query_answers(client, org_slug, fake_anthropic)


@pytest.mark.parametrize(
    "error_type, code, status",
    [
        ("permission_error", "claude_api_key_invalid", 400),
        ("authentication_error", "claude_api_key_invalid", 400),
        ("rate_limit_error", "upstream_rate_limited", 429),
        ("billing_error", "upstream_billing", 400),
        ("overloaded_error", "insights_unavailable", 503),
    ],
)
def test_an_error_inside_the_answer_stream_is_classified_by_its_type(
    world, acme_key, api_client, fake_anthropic, error_type, code, status
):
    # Anthropic can fail after answering 200, with an `error` event: the key's fault reads as the key's.
    fake_anthropic.behave(acme_key, "midstream_error")
    fake_anthropic.midstream_error = error_type

    response = api_ask(api_client(world.acme_member), "acme")

    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    # An answer Anthropic began writing was asked on a key it accepted: only the key's own fault marks it invalid.
    expected = KeyStatus.INVALID if code == "claude_api_key_invalid" else KeyStatus.VALID
    assert ClaudeApiKey.objects.get(organisation=world.acme).status == expected


def test_a_fractional_retry_after_is_never_passed_on_as_zero(world, acme_key, api_client, fake_anthropic):
    fake_anthropic.behave(acme_key, "rate_limited")
    fake_anthropic.retry_after = "0.4"

    response = api_ask(api_client(world.acme_member), "acme")

    assert response.status_code == 429 and response["Retry-After"] == "1"


def test_a_fractional_retry_after_is_rounded_up_never_down(world, acme_key, api_client, fake_anthropic):
    # Truncated, "1.5" would read "1": a client waiting exactly that long would meet Anthropic's limit again.
    fake_anthropic.behave(acme_key, "rate_limited")
    fake_anthropic.retry_after = "1.5"

    response = api_ask(api_client(world.acme_member), "acme")

    assert response.status_code == 429 and response["Retry-After"] == "2"
    assert response.json()["error"]["message"].endswith("Try again in 2 seconds.")


@pytest.mark.django_db(transaction=True)
def test_a_429_asking_to_wait_an_hour_is_passed_on_at_once_not_waited_out(world, acme_key, api_client, fake_anthropic):
    # Anthropic says "retry in an hour" and marks the error retryable, as it does for real. The
    # SDK would sleep the full hour before retrying; the request must come back immediately.
    fake_anthropic.default = "rate_limited"
    fake_anthropic.retry_after = "3600"
    fake_anthropic.should_retry = "true"
    client = api_client(world.acme_member)
    result = {}

    def ask() -> None:
        try:
            result["response"] = api_ask(client, "acme")
        finally:
            connections.close_all()

    started = time.monotonic()
    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout=30)
    elapsed = time.monotonic() - started

    assert not worker.is_alive(), "the request is still waiting out Anthropic's retry-after"
    assert elapsed < 30  # an hour was asked for
    response = result["response"]
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response["Retry-After"] == "3600"
    assert len(fake_anthropic.requests) == 1  # asked once, no retry
    assert_failed(only_row(world.acme), "upstream_rate_limited")


def test_a_429_on_the_platform_key_is_our_problem_and_reads_as_unavailable(world, api_client, fake_anthropic):
    fake_anthropic.default = "rate_limited"
    fake_anthropic.retry_after = "3600"

    response = api_ask(api_client(world.globex_member), "globex")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "insights_unavailable"
    assert response["Retry-After"] == "30"  # the 503's own hint, never Anthropic's wait on Opsion's account
    assert_failed(only_row(world.globex), "insights_unavailable")


def test_a_redirect_from_anthropics_address_is_not_followed_with_the_question(
    world, acme_key, api_client, fake_anthropic
):
    # A redirect (a hijacked name, a misconfigured proxy) would carry the customer's question, and on a
    # same-origin hop the key, to wherever it points. Anthropic's API does not redirect: it reads as unavailable.
    fake_anthropic.behave(acme_key, "redirect")

    response = api_ask(api_client(world.acme_member), "acme")

    assert response.status_code == 503 and response.json()["error"]["code"] == "insights_unavailable"
    assert [r["path"] for r in fake_anthropic.requests] == ["/v1/messages"]
    assert_failed(only_row(world.acme), "insights_unavailable")


def test_an_error_mid_stream_fails_the_api_query_and_records_it(world, api_client, fake_anthropic):
    fake_anthropic.default = "midstream_error"
    client = api_client(world.globex_member)

    response = api_ask(client, "globex")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "insights_unavailable"
    assert_failed(only_row(world.globex), "insights_unavailable")
    assert_next_query_answers(client, "globex", fake_anthropic)


@pytest.mark.parametrize("key_source", ["organisation", "platform"])
def test_a_connection_dropped_part_way_fails_the_query_rather_than_passing_the_part_off_as_the_answer(
    key_source, world, acme_key, api_client, fake_anthropic
):
    # Anthropic's stream ends with `message_delta` (the stop reason) and `message_stop`; a reply whose connection
    # closed before them is the first words of an answer, not an answer, however cleanly the connection ended.
    fake_anthropic.default = "dropped"
    on_own_key = key_source == "organisation"
    org, member = (world.acme, world.acme_member) if on_own_key else (world.globex, world.globex_member)

    response = api_ask(api_client(member), org.slug)

    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "insights_unavailable"
    row = only_row(org)
    assert_failed(row, "insights_unavailable")
    assert row.answer and row.answer != fake_anthropic.answer_text  # the part that came is kept with the failed row
    assert row.key_source == key_source
    assert_next_query_answers(api_client(member), org.slug, fake_anthropic)


def _sse(chunks) -> list[tuple[str, dict]]:
    events = []
    for block in b"".join(chunks).decode().split("\n\n"):
        if block.strip():
            head, data = block.split("\n", 1)
            events.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# An error event part-way, or the connection dropped part-way (no error, no stop reason: a body that ends with its
# connection ends cleanly), is not an answer.
@pytest.mark.parametrize("behaviour", ["midstream_error", "dropped"])
def test_an_answer_cut_off_part_way_ends_the_console_stream_with_an_error_event(
    world, console, fake_anthropic, behaviour
):
    fake_anthropic.default = behaviour
    response = console(world.globex_member).post(
        reverse("insights:query", args=["globex"]), {"query": QUESTION}, HTTP_ACCEPT="text/event-stream"
    )

    events = _sse(response.streaming_content)

    names = [name for name, _ in events]
    assert names[0] == "start" and "delta" in names and "done" not in names
    error = dict(events)["error"]
    assert (error["code"], error["message"]) == ("insights_unavailable", UNAVAILABLE)
    row = only_row(world.globex)
    assert_failed(row, "insights_unavailable")
    assert row.answer  # the part that arrived is kept with the failed row


@pytest.mark.django_db(transaction=True)  # a server's response.close() also closes the DB connection
def test_a_reader_leaving_mid_stream_still_gets_the_whole_answer_in_their_history(
    world, console, api_client, fake_anthropic
):
    fake_anthropic.default = "hold"  # one delta, then the fake waits
    response = console(world.globex_member).post(
        reverse("insights:query", args=["globex"]), {"query": QUESTION}, HTTP_ACCEPT="text/event-stream"
    )
    stream = iter(response.streaming_content)
    assert next(stream).startswith(b"event: start")
    assert next(stream).startswith(b"event: delta")
    assert only_row(world.globex).outcome == Outcome.PENDING

    fake_anthropic.release.set()  # Anthropic writes on…
    response.close()  # …while the browser tab has gone away: the WSGI server closes the response

    row = only_row(world.globex)
    assert (row.outcome, row.answer) == (Outcome.ANSWERED, fake_anthropic.answer_text)
    assert row.output_tokens and row.completed_at
    assert_next_query_answers(api_client(world.globex_member), "globex", fake_anthropic)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("behaviour, outcome", [("ok", Outcome.ANSWERED), ("overloaded", Outcome.FAILED)])
def test_a_reader_leaving_right_after_the_start_event_still_gets_the_outcome_in_their_history(
    world, console, fake_anthropic, behaviour, outcome
):
    # A tab closed at once: the server's write of `start` fails before Claude was asked. The query counts.
    fake_anthropic.default = behaviour
    response = console(world.globex_member).post(
        reverse("insights:query", args=["globex"]), {"query": QUESTION}, HTTP_ACCEPT="text/event-stream"
    )
    stream = iter(response.streaming_content)
    assert next(stream).startswith(b"event: start")

    response.close()  # no exception reaches the server closing the response

    row = only_row(world.globex)
    assert len(fake_anthropic.requests) == 1
    assert row.outcome == outcome and row.completed_at  # never left "still being written"


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_reader_left_is_recorded_and_raises_nothing(world, console, fake_anthropic):
    fake_anthropic.default = "midstream_error"  # two deltas, then an error event
    response = console(world.globex_member).post(
        reverse("insights:query", args=["globex"]), {"query": QUESTION}, HTTP_ACCEPT="text/event-stream"
    )
    stream = iter(response.streaming_content)
    assert next(stream).startswith(b"event: start")
    assert next(stream).startswith(b"event: delta")  # the first of the two

    response.close()  # no exception reaches the server closing the response

    row = only_row(world.globex)
    assert_failed(row, "insights_unavailable")
    assert row.answer == fake_anthropic.answer_text[:48]  # the second delta was read after the reader left


BILLING = (
    "Your organisation's Anthropic account refused the query for a billing reason (no credit left, or a spend "
    "limit reached). Whoever manages that account should check Plans & Billing at console.anthropic.com; then "
    "ask again."
)


@pytest.mark.parametrize("behaviour", ["billing_error", "credit_exhausted", "spend_limit"])
def test_the_organisations_own_account_out_of_credit_is_its_own_problem_not_ours(
    world, acme_key, api_client, fake_anthropic, behaviour, caplog
):
    # BYOM bills the organisation's own Anthropic account: when that account cannot pay, only its Owners and
    # Admins can fix it, so "temporarily unavailable, try again shortly" (and an ERROR for Opsion) would be wrong.
    fake_anthropic.behave(acme_key, behaviour)

    response = api_ask(api_client(world.acme_member), "acme")

    assert response.status_code == 400
    assert response.json()["error"] == {"code": "upstream_billing", "message": BILLING}
    assert_failed(only_row(world.acme), "upstream_billing")
    # The key is fine: Anthropic checks it before the account's balance, so Settings says it was accepted.
    assert ClaudeApiKey.objects.get(organisation=world.acme).status == KeyStatus.VALID
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("behaviour", ["billing_error", "credit_exhausted", "spend_limit"])
def test_the_platform_account_out_of_credit_is_ours_and_reads_as_unavailable(
    world, api_client, fake_anthropic, behaviour
):
    fake_anthropic.behave(PLATFORM_KEY, behaviour)

    response = api_ask(api_client(world.globex_member), "globex")

    assert response.status_code == 503
    assert response.json()["error"] == {"code": "insights_unavailable", "message": UNAVAILABLE}


def test_an_ordinary_bad_request_on_the_organisations_key_is_not_called_a_billing_problem(
    world, acme_key, api_client, fake_anthropic, monkeypatch
):
    # A 400 for anything else (our own request, say max_tokens too high for the model) is ours to fix.
    from tests import fake_anthropic as fake_module

    monkeypatch.setitem(fake_module.ERRORS, "bad_request", (400, "invalid_request_error", "max_tokens: too large"))
    fake_anthropic.behave(acme_key, "bad_request")

    response = api_ask(api_client(world.acme_member), "acme")

    assert (response.status_code, response.json()["error"]["code"]) == (503, "insights_unavailable")


@pytest.mark.parametrize("retry_after", ["inf", "1e400", "1e12", "86401"])
def test_a_retry_after_too_large_to_mean_anything_is_still_anthropics_limit_without_a_time(
    world, acme_key, api_client, fake_anthropic, retry_after
):
    # float("inf") has no int(): the OverflowError escaped the translation of the SDK's error (a 500, the query
    # recorded as "interrupted") where "rate-limited by Anthropic, try again shortly" is the truth. Past a day, a
    # time is no wait anyone could act on ("try again in 1000000000000 seconds"): it is passed on as unknown.
    fake_anthropic.behave(acme_key, "rate_limited")
    fake_anthropic.retry_after = retry_after
    client = api_client(world.acme_member)
    client.raise_request_exception = False

    response = api_ask(client, "acme")

    assert response.status_code == 429 and response.json()["error"]["code"] == "upstream_rate_limited"
    assert "Retry-After" not in response and "shortly" in response.json()["error"]["message"]
    assert_failed(only_row(world.acme), "upstream_rate_limited")
