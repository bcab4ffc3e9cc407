"""The JSON API of AI Insights: answer, usage and history shapes, and the key status in settings."""

import json
import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from insights import claude, services
from insights.models import InsightQuery, KeySource, Outcome
from orgs import services as org_services
from orgs.models import ClaudeApiKey
from tests.base import CANARY_KEY, GOOD_KEY, OTHER_KEY

from .helpers import INVALID_KEY_MESSAGE, seed

QUERIES = "/api/v1/orgs/{}/insights/queries"
USAGE = "/api/v1/orgs/{}/insights/usage"
SETTINGS = "/api/v1/orgs/{}/settings"


def ask(client, slug: str, query: str = "Which reserve rules apply to asset-referenced tokens?"):
    return client.post(QUERIES.format(slug), {"query": query}, content_type="application/json")


def assert_ratelimit_headers(response, *, limit: int, remaining: int) -> None:
    assert response["RateLimit-Policy"] == f'"insights";q={limit};w=3600'
    assert response["RateLimit"].startswith(f'"insights";r={remaining};t=')


def test_a_query_returns_the_answer_in_the_documented_shape(world, fake_anthropic, api_client):
    response = ask(api_client(world.globex_member), "globex", "  Which reserve rules apply to ARTs?  ")

    assert response.status_code == 200
    body = response.json()
    row = InsightQuery.objects.get()
    assert body == {
        "id": row.pk,
        "query": "Which reserve rules apply to ARTs?",
        "answer": fake_anthropic.answer_text,
        "model": settings.ANTHROPIC_MODEL,
        "keySource": "platform",
        "stopReason": "complete",
        "usage": {"inputTokens": row.input_tokens, "outputTokens": row.output_tokens},
        "rateLimit": {"limit": 20, "remaining": 19, "resetSeconds": 3600},
    }
    # What the fake reported: its input count is the question's words + 10, its output the answer's words.
    assert body["usage"] == {"inputTokens": 6 + 10, "outputTokens": len(fake_anthropic.answer_text.split())}
    assert (row.outcome, row.answer, row.user) == (Outcome.ANSWERED, fake_anthropic.answer_text, world.globex_member)
    sent = fake_anthropic.requests[0]["body"]
    assert sent["messages"] == [{"role": "user", "content": "Which reserve rules apply to ARTs?"}]
    assert "MiCAR" in sent["system"] and "do not invent citations" in sent["system"]  # the assistant's brief
    assert (sent["model"], sent["max_tokens"]) == (settings.ANTHROPIC_MODEL, settings.ANTHROPIC_MAX_TOKENS)
    assert_ratelimit_headers(response, limit=20, remaining=19)


def test_completion_is_timed_by_the_databases_clock_as_the_query_is(world, fake_anthropic, api_client, monkeypatch):
    # created_at is the database's NOW; an app server whose clock runs behind must not make a query
    # finish before it started.
    behind = timezone.now() - timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: behind)

    assert ask(api_client(world.globex_member), "globex").status_code == 200

    row = InsightQuery.objects.get(organisation=world.globex)
    assert row.completed_at >= row.created_at


def test_the_answer_length_cap_is_the_configured_one(world, fake_anthropic, api_client, settings):
    settings.ANTHROPIC_MAX_TOKENS = 321

    ask(api_client(world.globex_member), "globex")

    assert fake_anthropic.requests[0]["body"]["max_tokens"] == 321


def test_an_answer_cut_off_at_the_length_cap_says_so_and_still_counts(world, fake_anthropic, api_client, settings):
    # Anthropic wrote (and billed) ANTHROPIC_MAX_TOKENS tokens and stopped mid-sentence: an answered query, not an
    # error, but one a compliance team must not read as complete.
    settings.ANTHROPIC_MAX_TOKENS = 300
    fake_anthropic.default = "max_tokens"
    client = api_client(world.globex_member)

    response = ask(client, "globex")

    assert response.status_code == 200
    body = response.json()
    cut = fake_anthropic.answer_text[: len(fake_anthropic.answer_text) // 2]
    assert (body["answer"], body["stopReason"], body["usage"]["outputTokens"]) == (cut, "max_tokens", 300)
    assert body["rateLimit"]["remaining"] == 19  # counted: Anthropic answered, and billed it
    row = InsightQuery.objects.get()
    assert (row.outcome, row.stop_reason, row.answer, row.error_code) == (Outcome.ANSWERED, "max_tokens", cut, "")
    (item,) = client.get(QUERIES.format("globex")).json()["items"]
    assert (item["outcome"], item["stopReason"], item["answer"], item["errorCode"]) == (
        "answered",
        "max_tokens",
        cut,
        "",
    )


def test_an_answer_claude_declined_says_so(world, fake_anthropic, api_client):
    fake_anthropic.default = "refusal"
    client = api_client(world.globex_member)

    body = ask(client, "globex").json()

    assert (body["answer"], body["stopReason"]) == (fake_anthropic.answer_text[:48], "refusal")
    assert client.get(QUERIES.format("globex")).json()["items"][0]["stopReason"] == "refusal"
    assert InsightQuery.objects.get().outcome == Outcome.ANSWERED


@pytest.mark.parametrize(
    "anthropics, recorded, warned",
    [
        ("end_turn", "complete", False),
        ("stop_sequence", "complete", False),
        ("max_tokens", "max_tokens", False),
        ("model_context_window_exceeded", "max_tokens", False),  # the model's own length limit
        ("refusal", "refusal", False),
        ("pause_turn", "complete", True),  # only with tools, never offered: shown whole, the operator told
        (None, "complete", True),
    ],
)
def test_each_of_anthropics_stop_reasons_is_recorded_as_a_reader_must_know_it(anthropics, recorded, warned, caplog):
    with caplog.at_level(logging.WARNING, logger="opsion.insights"):
        assert claude._stop_reason(anthropics) == recorded

    assert bool(caplog.records) == warned


def test_history_says_how_each_answer_ended_and_none_for_a_query_claude_never_ended(
    world, fake_anthropic, api_client, acme_key
):
    pending = seed(world.acme, 5, user=world.acme_member)[0]
    InsightQuery.objects.filter(pk=pending.pk).update(outcome=Outcome.PENDING, answer="", stop_reason=None)
    client = api_client(world.acme_member)
    ask(client, "acme")
    fake_anthropic.behave(GOOD_KEY, "midstream_error")
    ask(client, "acme")

    items = client.get(QUERIES.format("acme")).json()["items"]

    assert [(i["outcome"], i["stopReason"]) for i in items] == [
        ("failed", None),  # cut off by an error, which errorCode names: Claude did not end it
        ("answered", "complete"),
        ("pending", None),
    ]


def test_an_answer_recorded_without_its_stop_reason_during_a_deploy_reads_as_complete(world, api_client):
    # A worker still on the code before stop reasons writes an answered row without one after 0006 has run.
    old = seed(world.acme, 5, user=world.acme_member)[0]
    InsightQuery.objects.filter(pk=old.pk).update(outcome=Outcome.ANSWERED, stop_reason=None)

    (item,) = api_client(world.acme_member).get(QUERIES.format("acme")).json()["items"]

    assert (item["outcome"], item["stopReason"]) == ("answered", "complete")


def test_history_says_why_a_query_failed_and_pages_exactly(world, fake_anthropic, api_client, acme_key):
    fake_anthropic.behave(GOOD_KEY, "auth_error")
    client = api_client(world.acme_member)
    ask(client, "acme")
    fake_anthropic.reset()
    ask(client, "acme")

    two = client.get(QUERIES.format("acme") + "?limit=2").json()
    one = client.get(QUERIES.format("acme") + "?limit=1").json()

    assert [item["errorCode"] for item in two["items"]] == ["", "claude_api_key_invalid"]
    assert [item["outcome"] for item in two["items"]] == ["answered", "failed"]
    assert two["hasMore"] is False and one["hasMore"] is True


@pytest.mark.parametrize(("limit", "offset", "shown", "more"), [(2, 0, 2, True), (3, 0, 3, False), (2, 2, 1, False)])
def test_a_history_page_says_whether_older_queries_follow(world, limit, offset, shown, more):
    # One page for both surfaces: the API's `hasMore` and the console's "Show older queries" read it.
    seed(world.acme, 30, 20, 10, user=world.acme_member)
    seed(world.acme, 5, user=world.acme_admin)  # another member's: never on this member's pages
    membership = world.membership(world.acme_member, world.acme)

    page = services.recent_queries(membership=membership, limit=limit, offset=offset)

    assert (len(page.items), page.has_more) == (shown, more)
    assert {row.user_id for row in page.items} == {world.acme_member.pk}


def test_remaining_is_never_negative_above_a_lowered_limit(world, api_client):
    seed(world.globex, *[300] * 25)  # 25 counted, the platform limit is 20

    body = api_client(world.globex_member).get(USAGE.format("globex")).json()

    assert (body["used"], body["limit"], body["remaining"]) == (25, 20, 0)


def test_a_query_on_the_organisations_key_reports_it(world, fake_anthropic, api_client, acme_key):
    seed(world.acme, 600, 300, source=KeySource.ORGANISATION)

    response = ask(api_client(world.acme_member), "acme")

    body = response.json()
    assert body["keySource"] == "organisation"
    assert body["rateLimit"]["limit"] == 200
    assert body["rateLimit"]["remaining"] == 197
    assert abs(body["rateLimit"]["resetSeconds"] - 3000) <= 1
    assert_ratelimit_headers(response, limit=200, remaining=197)


def test_usage_reports_the_window_in_the_documented_shape(world, fake_anthropic, api_client, acme_key):
    seed(world.acme, 1800, 60, 30)
    seed(world.acme, 4000)

    response = api_client(world.acme_member).get(USAGE.format("acme"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"limit", "windowSeconds", "used", "remaining", "resetSeconds", "keySource"}
    assert {k: v for k, v in body.items() if k != "resetSeconds"} == {
        "limit": 200,
        "windowSeconds": 3600,
        "used": 3,
        "remaining": 197,
        "keySource": "organisation",
    }
    assert abs(body["resetSeconds"] - 1800) <= 1
    assert response["RateLimit-Policy"] == '"insights";q=200;w=3600'
    assert response["RateLimit"] == f'"insights";r=197;t={body["resetSeconds"]}'


def test_usage_of_an_idle_organisation_has_nothing_to_reset(world, api_client):
    response = api_client(world.globex_member).get(USAGE.format("globex"))

    assert response.json() == {
        "limit": 20,
        "windowSeconds": 3600,
        "used": 0,
        "remaining": 20,
        "resetSeconds": 0,
        "keySource": "platform",
    }
    assert response["RateLimit"] == '"insights";r=20;t=0'


@pytest.mark.parametrize(
    "params", [{"offset": "100000000000000000000"}, {"offset": "-1"}, {"limit": "0"}, {"limit": "101"}]
)
def test_history_refuses_a_page_out_of_range_with_400_json(world, api_client, params):
    response = api_client(world.globex_member).get(QUERIES.format("globex"), params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_history_lists_only_the_callers_queries_newest_first_and_paginates(world, fake_anthropic, api_client):
    mine = seed(world.globex, 500, 400, 300, 200, 100, user=world.globex_member)
    seed(world.globex, 50, 40, user=world.globex_admin)
    seed(world.acme, 30, user=world.globex_member)  # another organisation's, though the same person
    client = api_client(world.globex_member)

    first = client.get(QUERIES.format("globex"), {"limit": 2})
    last = client.get(QUERIES.format("globex"), {"limit": 2, "offset": 4})

    assert first.status_code == 200
    page = first.json()
    assert (page["limit"], page["offset"], page["hasMore"]) == (2, 0, True)
    assert [item["id"] for item in page["items"]] == [mine[4].pk, mine[3].pk]
    assert set(page["items"][0]) == {
        "id",
        "query",
        "answer",
        "model",
        "keySource",
        "outcome",
        "errorCode",
        "stopReason",
        "createdAt",
        "usage",
    }
    assert (last.json()["offset"], last.json()["hasMore"]) == (4, False)
    assert [item["id"] for item in last.json()["items"]] == [mine[0].pk]
    assert first["RateLimit-Policy"] == '"insights";q=20;w=3600'
    assert first["RateLimit"].startswith('"insights";r=13;')


def test_history_pages_after_the_last_id_seen_neither_repeating_nor_skipping_while_queries_arrive(world, api_client):
    # Offset paging repeats what a new query pushes down: `after` (the last item's id) does not. Two queries at one
    # instant are ordered, and split between pages, by id.
    mine = seed(world.globex, 500, 400, 300, 300, 100, user=world.globex_member)
    seed(world.globex, 350, user=world.globex_admin)  # someone else's, in between
    client = api_client(world.globex_member)
    read = lambda **q: client.get(QUERIES.format("globex"), q).json()  # noqa: E731

    pages = [read(limit=2)]
    seed(world.globex, 0, user=world.globex_member)  # arrives mid-way
    while pages[-1]["hasMore"]:
        pages.append(read(limit=2, after=pages[-1]["items"][-1]["id"]))

    assert [item["id"] for page in pages for item in page["items"]] == [
        mine[4].pk,
        mine[3].pk,
        mine[2].pk,
        mine[1].pk,
        mine[0].pk,
    ]
    assert pages[1]["after"] == mine[3].pk


def test_history_pages_after_queries_asked_through_the_api(world, fake_anthropic, api_client):
    # Asked queries are stamped by the database's clock (SQLite keeps milliseconds, as text): the page after one
    # starts past it, as it does for the seeded rows above.
    client = api_client(world.globex_member)
    asked = [ask(client, "globex", f"Question {i}?").json()["id"] for i in range(3)]

    pages = [client.get(QUERIES.format("globex"), {"limit": 1}).json()]
    while pages[-1]["hasMore"] and len(pages) < 5:  # a page repeating its anchor would never end
        pages.append(client.get(QUERIES.format("globex"), {"limit": 1, "after": pages[-1]["items"][-1]["id"]}).json())

    assert [item["id"] for page in pages for item in page["items"]] == asked[::-1]


def test_history_after_an_id_not_among_your_queries_is_refused(world, api_client):
    (theirs,) = seed(world.globex, 100, user=world.globex_admin)

    response = api_client(world.globex_member).get(QUERIES.format("globex"), {"after": theirs.pk})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_request",
        "message": "`after` is not the id of one of your queries here.",
    }
    # A member's refusal once the organisation is known: it carries the rolling window, as the README says.
    assert_ratelimit_headers(response, limit=20, remaining=19)


def test_history_refusing_an_after_from_another_organisation_carries_the_ratelimit_fields(world, api_client):
    # The same person's query in another organisation: well-formed, refused once the organisation was looked up.
    world.acme.memberships.create(user=world.globex_member)
    (elsewhere,) = seed(world.acme, 100, user=world.globex_member)
    seed(world.globex, 60, 60, 60)

    response = api_client(world.globex_member).get(QUERIES.format("globex"), {"after": elsewhere.pk})

    assert response.status_code == 400
    assert_ratelimit_headers(response, limit=20, remaining=17)


def test_history_offset_past_the_cap_is_refused_pointing_to_after(world, api_client):
    # The cap is 100,000: a script at 200 queries an hour gets there in three weeks; `after` reaches further.
    response = api_client(world.globex_member).get(QUERIES.format("globex"), {"offset": 100_001})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "The parameter `offset` is not valid: Input should be less than or equal to 100000. "
        "To page deeper, pass `after`: the id of the last item you have."
    )


def test_history_shows_a_new_query_with_its_outcome(world, fake_anthropic, api_client):
    client = api_client(world.globex_member)
    answered = ask(client, "globex").json()

    items = client.get(QUERIES.format("globex")).json()["items"]

    assert items[0]["id"] == answered["id"]
    assert items[0]["outcome"] == "answered"
    assert items[0]["stopReason"] == "complete"
    assert items[0]["answer"] == fake_anthropic.answer_text
    assert items[0]["usage"] == answered["usage"]


def test_history_of_a_member_without_queries_is_empty(world, api_client):
    seed(world.globex, 100, user=world.globex_admin)

    body = api_client(world.globex_member).get(QUERIES.format("globex")).json()

    assert body == {"items": [], "limit": 20, "offset": 0, "after": None, "hasMore": False}


@pytest.mark.parametrize("method", ["get_usage", "get_queries", "post_query"])
def test_outsiders_get_not_found(world, fake_anthropic, api_client, method):
    client = api_client(world.outsider)

    if method == "post_query":
        response = ask(client, "globex")
    else:
        response = client.get((USAGE if method == "get_usage" else QUERIES).format("globex"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not InsightQuery.objects.exists()
    assert fake_anthropic.requests == []


def test_one_query_is_read_by_its_id_as_history_lists_it(world, fake_anthropic, api_client):
    # A client that gave up waiting for its answer (a timeout, a dropped connection) reads how it ended by its id,
    # rather than paging through the history for it.
    client = api_client(world.globex_member)
    asked = ask(client, "globex").json()
    seed(world.globex, 10, user=world.globex_member)  # a newer one: the history's first item is not this one

    response = client.get(f"{QUERIES.format('globex')}/{asked['id']}")

    assert response.status_code == 200
    listed = next(item for item in client.get(QUERIES.format("globex")).json()["items"] if item["id"] == asked["id"])
    assert response.json() == listed
    assert (listed["answer"], listed["outcome"], listed["stopReason"]) == (asked["answer"], "answered", "complete")
    assert_ratelimit_headers(response, limit=20, remaining=18)


def test_a_query_reads_as_failed_once_abandoned_as_history_shows_it(world, api_client):
    (row,) = seed(world.globex, 3 * 3600, user=world.globex_member)
    InsightQuery.objects.filter(pk=row.pk).update(outcome=Outcome.PENDING, answer="", stop_reason=None)

    body = api_client(world.globex_member).get(f"{QUERIES.format('globex')}/{row.pk}").json()

    assert (body["outcome"], body["errorCode"], body["stopReason"]) == ("failed", "interrupted", None)


def test_a_query_that_is_not_yours_here_is_not_found_in_the_same_words_whatever_it_is(world, api_client):
    (theirs,) = seed(world.globex, 60, user=world.globex_admin)  # a colleague's, in the same organisation
    (elsewhere,) = seed(world.acme, 60, user=world.globex_member)  # one's own, in another organisation
    client = api_client(world.globex_member)

    answers = [client.get(f"{QUERIES.format('globex')}/{pk}") for pk in (theirs.pk, elsewhere.pk, 10**9)]

    for response in answers:
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "You have no query with this id in this organisation.",
        }
        assert_ratelimit_headers(response, limit=20, remaining=19)
    not_a_number = client.get(f"{QUERIES.format('globex')}/not-a-number")
    assert (
        not_a_number.status_code == 404
        and "No API operation at this address" in not_a_number.json()["error"]["message"]
    )


def test_the_document_declares_a_querys_id_as_the_address_takes_it(world, api_client, client):
    # The address takes digits only: the document offered any integer, and `…/queries/-1`, valid by it, met "No API
    # operation at this address". It declares the ids there are (1 up), which all reach the operation.
    operation = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/orgs/{slug}/insights/queries/{query_id}"]
    (param,) = [p for p in operation["get"]["parameters"] if p["name"] == "query_id"]
    assert (param["in"], param["required"]) == ("path", True)
    assert (param["schema"]["type"], param["schema"]["minimum"]) == ("integer", 1)
    assert "id" in param["description"]

    answers = {pk: api_client(world.globex_member).get(f"{QUERIES.format('globex')}/{pk}") for pk in (1, 10**30, -1)}

    for pk in (1, 10**30):  # in the document: the operation's own answer
        assert answers[pk].json()["error"]["message"] == "You have no query with this id in this organisation.", pk
    assert "No API operation at this address" in answers[-1].json()["error"]["message"]  # outside it


def test_an_outsider_reading_a_query_by_id_gets_the_organisations_not_found(world, api_client):
    (row,) = seed(world.globex, 60, user=world.globex_member)

    response = api_client(world.outsider).get(f"{QUERIES.format('globex')}/{row.pk}")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Not found."


def test_the_api_requires_authentication(world, client):
    response = client.post(QUERIES.format("globex"), {"query": "q"}, content_type="application/json")

    assert response.status_code == 401


def key_status(client, slug: str = "acme"):
    return client.get(SETTINGS.format(slug)).json()["claudeApiKeyStatus"]


def test_key_status_goes_from_unverified_to_valid_to_invalid_and_back(world, fake_anthropic, api_client):
    owner = api_client(world.acme_owner)
    assert key_status(owner) is None

    owner.put(SETTINGS.format("acme") + "/claude-api-key", {"apiKey": GOOD_KEY}, content_type="application/json")
    assert key_status(owner) == "unverified"

    assert ask(owner, "acme").status_code == 200
    assert key_status(owner) == "valid"

    fake_anthropic.behave(GOOD_KEY, "auth_error")
    rejected = ask(owner, "acme")
    assert rejected.status_code == 400
    assert rejected.json()["error"] == {"code": "claude_api_key_invalid", "message": INVALID_KEY_MESSAGE}
    assert key_status(owner) == "invalid"

    owner.put(SETTINGS.format("acme") + "/claude-api-key", {"apiKey": OTHER_KEY}, content_type="application/json")
    assert key_status(owner) == "unverified"

    owner.delete(SETTINGS.format("acme") + "/claude-api-key")
    assert key_status(owner) is None


def test_a_key_rejected_again_keeps_the_time_anthropic_first_rejected_it(world, fake_anthropic, api_client, acme_key):
    # status_changed_at is when Anthropic's answer changed ("Rejected by Anthropic …"), not its latest refusal.
    fake_anthropic.behave(GOOD_KEY, "auth_error")
    client = api_client(world.acme_member)
    assert ask(client, "acme").status_code == 400
    first = ClaudeApiKey.objects.get().status_changed_at

    assert ask(client, "acme").status_code == 400

    assert first is not None
    assert ClaudeApiKey.objects.get().status_changed_at == first


def test_a_rejected_key_shows_the_red_indicator_on_the_settings_page(world, fake_anthropic, api_client, console):
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None
    )
    fake_anthropic.behave(GOOD_KEY, "permission_error")
    assert ask(api_client(world.acme_member), "acme").status_code == 400

    page = console(world.acme_admin).get("/orgs/acme/settings/").content.decode()

    assert "indicator--bad" in page
    assert "indicator--ok" not in page
    assert INVALID_KEY_MESSAGE in page


def test_a_valid_key_shows_the_green_indicator(world, fake_anthropic, api_client, console, acme_key):
    assert ask(api_client(world.acme_member), "acme").status_code == 200

    page = console(world.acme_admin).get("/orgs/acme/settings/").content.decode()

    assert "indicator--ok" in page
    assert "Key saved and accepted by Anthropic." in page
    assert "indicator--bad" not in page


def test_the_platform_key_being_rejected_leaves_the_organisations_status_alone(
    world, fake_anthropic, api_client, acme_key
):
    # A downgraded organisation's stored key was never used, so nothing is known about it.
    world.acme.plan = "professional"
    world.acme.save(update_fields=["plan"])
    fake_anthropic.default = "auth_error"

    assert ask(api_client(world.acme_member), "acme").status_code == 503

    assert key_status(api_client(world.acme_owner)) == "unverified"


def test_a_query_costs_a_fixed_handful_of_sql_statements(world, fake_anthropic, api_client, acme_key):
    # The hot path: token, membership (+organisation, +stored key), the limiter, the outcome. On SQLite
    # the limiter is BEGIN IMMEDIATE, count (with the key in force), insert, COMMIT instead of one function call.
    client = api_client(world.acme_member)
    assert ask(client, "acme").status_code == 200  # the token's first use records last_used_at once

    with CaptureQueriesContext(connection) as captured:
        assert ask(client, "acme").status_code == 200

    expected = {"postgresql": 4, "sqlite": 7}[connection.vendor]
    assert len(captured.captured_queries) == expected, [q["sql"][:80] for q in captured.captured_queries]


def test_a_refusal_at_the_limit_reports_the_limiters_window_without_counting_again(world, fake_anthropic, api_client):
    # The decision already knows the count and when a slot frees: the 429 must not run the count twice.
    seed(world.globex, *range(100, 2100, 100))  # 20 in the window: the platform limit
    client = api_client(world.globex_member)
    assert ask(client, "globex").status_code == 429  # the token's first use records last_used_at once

    with CaptureQueriesContext(connection) as captured:
        response = ask(client, "globex")

    assert response.status_code == 429
    assert response["RateLimit"] == '"insights";r=0;t={}'.format(response["Retry-After"])
    assert 1595 <= int(response["Retry-After"]) <= 1600  # when the oldest, 2000 s old, leaves
    expected = {"postgresql": 3, "sqlite": 6}[connection.vendor]  # token, membership, the decision
    assert len(captured.captured_queries) == expected, [q["sql"][:80] for q in captured.captured_queries]
    assert InsightQuery.objects.filter(organisation=world.globex).count() == 20
    assert fake_anthropic.requests == []


def documented_examples(document: dict, operation: dict) -> dict:
    """Every example of an operation's request body and answers, by where it is: `(status or "request", name)`, each
    with the schema it is shown under."""
    found = {}
    bodies = {"request": operation.get("requestBody", {})} | operation["responses"]
    for status, body in bodies.items():
        media = body.get("content", {}).get("application/json", {})
        for name, example in media.get("examples", {}).items():
            found[(status, name)] = (example["value"], media["schema"])
    return found


def test_the_document_shows_a_question_its_answer_and_a_429_by_example(client):
    # A client's author reads these first: each must be a body the schema it sits under takes, with every field the
    # schema names (one added later is added to its example too), and nothing shaped like a key or a token.
    from jsonschema import Draft202012Validator

    document = client.get("/api/v1/openapi.json").json()
    operation = document["paths"]["/api/v1/orgs/{slug}/insights/queries"]["post"]

    examples = documented_examples(document, operation)

    assert {("request", "question"), ("200", "answered"), ("429", "rate_limited")} <= set(examples)
    for where, (value, schema) in examples.items():
        resolved = {"components": document["components"], **schema}  # its $refs resolve in the document
        errors = [error.message for error in Draft202012Validator(resolved).iter_errors(value)]
        assert not errors, (where, errors)
        name = schema["$ref"].rsplit("/", 1)[-1]
        assert set(value) == set(document["components"]["schemas"][name]["properties"]), where
        text = json.dumps(value)
        assert "sk-ant-" not in text and "opsn_" not in text and "Bearer" not in text, where
    rate_limited, _ = examples[("429", "rate_limited")]
    assert rate_limited["error"]["code"] == "rate_limited"
    assert rate_limited["error"]["message"] == f"Rate limit reached ({settings.INSIGHTS_BYOM_LIMIT}/hour)"
    assert examples[("200", "answered")][0]["stopReason"] == "complete"


SECRET_IN_QUESTION = "Your question holds what looks like a Claude API key or an API token"


@pytest.mark.parametrize("secret", ["key", "token"])
def test_a_question_holding_a_key_or_token_is_refused_before_anything_is_stored_sent_or_counted(
    world, fake_anthropic, api_client, secret
):
    # A key pasted into the question would sit in the query's row as typed (admin, dumpdata, every backup) and reach
    # Claude: refused first, echoing nothing.
    client = api_client(world.globex_member)
    pasted = CANARY_KEY if secret == "key" else org_services.api_token_create(user=world.globex_member, name="x")[1]
    question = f"Is this key still working? {pasted} Thanks."

    response = client.post(
        QUERIES.format("globex"), {"query": question}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="q-1"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "query_holds_secret"
    assert response.json()["error"]["message"].startswith(SECRET_IN_QUESTION)
    assert pasted[13:45] not in response.content.decode()
    assert not InsightQuery.objects.exists()
    assert fake_anthropic.requests == []
    assert_ratelimit_headers(response, limit=20, remaining=20)  # the refusal used no query of the window
    assert ask(client, "globex").status_code == 200  # and the same member asks a question without one


def test_the_document_names_the_refusal_of_a_question_holding_a_key(client):
    operation = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/orgs/{slug}/insights/queries"]["post"]

    assert "`query_holds_secret` (400" in operation["description"]


def test_a_key_anywhere_in_a_long_question_is_refused(world, fake_anthropic, api_client):
    # Pasted below a long question (a log excerpt, say), the key is refused as it would be at its start.
    question = "Why did our nightly sync stop? Here is the log it wrote:\n" + "sync ok\n" * 100 + CANARY_KEY

    response = api_client(world.globex_member).post(
        QUERIES.format("globex"), {"query": question}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="q-1"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "query_holds_secret"
    assert not InsightQuery.objects.exists() and fake_anthropic.requests == []
