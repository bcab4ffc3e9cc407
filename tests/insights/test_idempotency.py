"""`Idempotency-Key` on POST …/insights/queries: a client that retries a question (a timeout, a dropped connection)
gets the answer its first request was given, and the question is neither asked nor counted twice."""

import io
import json
import re
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from insights import keys, services
from insights.models import InsightQuery, KeySource, Outcome
from opsion.errors import NotFound
from orgs import services as orgs_services
from orgs.models import ClaudeApiKey, Membership, Role
from tests.base import CANARY_KEY
from tests.conftest import PLATFORM_KEY

from ..reliability.test_deleted_while_answering import wait_for
from .helpers import seed_spread

QUERIES = "/api/v1/orgs/{}/insights/queries"
QUESTION = "Which reserve rules apply to asset-referenced tokens?"
KEY = "5f0c8a2e-7d1b-4c59-9a0e-3b6f1d2c4e8a"


def ask(client, slug: str = "globex", query: str = QUESTION, key: str | None = KEY):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(QUERIES.format(slug), {"query": query}, content_type="application/json", headers=headers)


def assert_invalid_request(response, message: str) -> None:
    """`response` is the API's 400 for a request it will not read, its error saying `message`."""
    assert response.status_code == 400, response.content
    assert response.json()["error"] == {"code": "invalid_request", "message": message}


def pending_row(user, org, *, key: str = KEY, query: str = QUESTION, age: timedelta = timedelta(0)) -> InsightQuery:
    row = InsightQuery.objects.create(
        organisation=org, user=user, key_source=KeySource.PLATFORM, query=query, idempotency_key=key
    )
    if age:
        InsightQuery.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


def ask_in_a_thread(client) -> tuple[threading.Thread, dict]:
    """Start asking on a thread of its own (and its own connection, closed after); its response lands in the dict."""
    answered = {}

    def first():
        try:
            answered["response"] = ask(client)
        finally:
            connections.close_all()

    asking = threading.Thread(target=first)
    asking.start()
    return asking, answered


def test_a_retry_with_the_same_key_gets_the_first_answer_without_asking_or_counting_again(
    world, fake_anthropic, api_client
):
    client = api_client(world.globex_member)
    first = ask(client)
    again = ask(client, query=f"  {QUESTION}\n")  # trimmed, as the question is, before they are compared

    assert first.status_code == again.status_code == 200
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    replayed, original = again.json(), first.json()
    assert replayed == original  # the same query (id), answer, usage and the window as it stands: nothing counted
    assert replayed["rateLimit"]["remaining"] == 19
    assert again["RateLimit"].startswith('"insights";r=19;')
    assert len(fake_anthropic.requests) == 1
    assert InsightQuery.objects.count() == 1


def test_without_a_key_each_request_is_a_new_question(world, fake_anthropic, api_client):
    client = api_client(world.globex_member)

    ids = {ask(client, key=None).json()["id"], ask(client, key=None).json()["id"]}

    assert len(ids) == 2 and len(fake_anthropic.requests) == 2


def test_a_key_sent_again_with_another_question_is_refused_and_nothing_is_asked(world, fake_anthropic, api_client):
    client = api_client(world.globex_member)
    first_id = ask(client).json()["id"]

    response = ask(client, query="What is a CASP?")

    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "idempotency_key_reused",
        "message": f"This Idempotency-Key was sent with another question (query {first_id}). Send a new key with "
        "each new question.",
    }
    assert response["RateLimit"].startswith('"insights";r=19;')
    assert len(fake_anthropic.requests) == 1 and InsightQuery.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # the first request runs in a thread, on its own connection
def test_a_retry_while_the_first_request_is_still_being_answered_is_told_so(world, fake_anthropic, api_client):
    fake_anthropic.behave(PLATFORM_KEY, "hold")  # one delta, then the fake waits
    client = api_client(world.globex_member)
    asking, answered = ask_in_a_thread(client)
    try:
        wait_for(lambda: fake_anthropic.requests)
        row = InsightQuery.objects.get()

        retry = ask(client)

        assert retry.status_code == 409
        assert retry.json()["error"] == {
            "code": "idempotency_key_in_use",
            "message": f"Your request with this Idempotency-Key (query {row.pk}) is still being answered. Send it "
            f"again later, or read the query: GET /api/v1/orgs/globex/insights/queries/{row.pk}.",
        }
        assert retry["RateLimit"].startswith('"insights";r=19;')
        assert retry["Retry-After"] == "5"  # a hint for when to look again: answers take seconds, not minutes
    finally:
        fake_anthropic.release.set()
        asking.join(30)
    assert answered["response"].status_code == 200
    assert len(fake_anthropic.requests) == 1 and InsightQuery.objects.count() == 1
    assert ask(client)["Idempotent-Replayed"] == "true"  # once answered, the retry gets the answer


def test_a_retry_after_the_first_request_failed_asks_again(world, fake_anthropic, api_client):
    # A failure is not an answer to keep: a retry of a 503 must not be given the same 503 for ever.
    client = api_client(world.globex_member)
    fake_anthropic.default = "overloaded"
    failed = ask(client)
    assert failed.status_code == 503
    fake_anthropic.default = "ok"

    retried = ask(client)

    assert retried.status_code == 200, retried.content
    assert "Idempotent-Replayed" not in retried
    assert retried.json()["answer"] == fake_anthropic.answer_text
    assert retried.json()["rateLimit"]["remaining"] == 18  # the failed query was sent to Anthropic: it counts
    outcomes = list(InsightQuery.objects.order_by("pk").values_list("outcome", "idempotency_key"))
    assert outcomes == [(Outcome.FAILED, None), (Outcome.ANSWERED, KEY)]  # the failure let its key go
    assert ask(client).json()["id"] == retried.json()["id"]  # the answer now holds the key


def test_a_first_request_whose_process_died_does_not_hold_its_key(world, fake_anthropic, api_client):
    abandoned = pending_row(world.globex_member, world.globex, age=timedelta(hours=1))  # never recorded an outcome

    response = ask(api_client(world.globex_member))

    assert response.status_code == 200 and response.json()["id"] != abandoned.pk
    abandoned.refresh_from_db()
    assert (abandoned.outcome, abandoned.error_code) == (Outcome.FAILED, services.INTERRUPTED)


def test_a_failed_query_still_holding_its_key_lets_it_go_to_a_retry(world, fake_anthropic, api_client):
    # A worker still on older code during a deploy records an abandoned query as interrupted without clearing its key
    # (its _record_interrupted knows no key): the retry is asked, not refused five times by the index and a 503.
    stale = pending_row(world.globex_member, world.globex)
    InsightQuery.objects.filter(pk=stale.pk).update(outcome=Outcome.FAILED, error_code=services.INTERRUPTED)

    response = ask(api_client(world.globex_member))

    assert response.status_code == 200, response.content
    assert response.json()["id"] != stale.pk and len(fake_anthropic.requests) == 1
    stale.refresh_from_db()
    assert (stale.outcome, stale.idempotency_key) == (Outcome.FAILED, None)
    assert InsightQuery.objects.get(idempotency_key=KEY).pk == response.json()["id"]


def test_a_request_refused_at_the_limit_leaves_its_key_unused(world, fake_anthropic, api_client, settings):
    settings.INSIGHTS_PLATFORM_LIMIT = 0
    client = api_client(world.globex_member)
    assert ask(client).status_code == 429
    settings.INSIGHTS_PLATFORM_LIMIT = 20

    response = ask(client)

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response
    assert len(fake_anthropic.requests) == 1


def test_keys_are_each_members_own_in_each_organisation(world, fake_anthropic, api_client):
    mine = ask(api_client(world.acme_member), "acme").json()["id"]
    colleagues = ask(api_client(world.acme_admin), "acme").json()["id"]
    elsewhere = ask(api_client(world.initech_admin), "initech").json()["id"]

    assert len({mine, colleagues, elsewhere}) == 3
    assert len(fake_anthropic.requests) == 3


@pytest.mark.parametrize(
    "key", ["", " ", "a" * 256, "clé-1", "key with spaces", "line\nbreak"], ids=lambda k: repr(k[:12])
)
def test_a_malformed_key_is_refused_before_anything_is_asked(world, fake_anthropic, api_client, key):
    client = api_client(world.globex_member)
    response = client.post(
        QUERIES.format("globex"),
        json.dumps({"query": QUESTION}),
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


@pytest.mark.parametrize("secret", ["claude-api-key", "api-token"])
def test_a_claude_api_key_or_token_sent_as_the_idempotency_key_is_refused_and_stored_nowhere(
    world, fake_anthropic, api_client, secret
):
    """A client mixing up its headers (its Anthropic key, or its own token, sent as Idempotency-Key): taken as the key,
    it sat in plain text in the query's row (its admin page, dumpdata, every backup), beside the encrypted copy."""
    raw = (
        CANARY_KEY if secret == "claude-api-key" else orgs_services.api_token_create(user=world.acme_admin, name="x")[1]
    )

    response = ask(api_client(world.globex_member), key=raw)

    assert_invalid_request(
        response,
        "The Idempotency-Key header holds what looks like a Claude API key or an API token: send a key of your own "
        "(a UUID, say), and if that was a real one, replace it.",
    )
    assert raw[13:40] not in response.content.decode()
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


@pytest.mark.parametrize("key", [f"{KEY},{KEY[::-1]}", f"{KEY}, {KEY}", "a,"])
def test_a_key_holding_a_comma_is_refused_as_the_header_sent_twice(world, fake_anthropic, api_client, key):
    # A header sent twice reaches the app as its values joined by a comma (WSGI servers, gunicorn's and
    # runserver's, join them so): taken as one key, a retry sending either would be asked and counted again.
    response = ask(api_client(world.globex_member), key=key)

    assert_invalid_request(
        response, "The Idempotency-Key header holds a comma: send it once, with one key (a UUID, say)."
    )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_a_question_naming_its_field_twice_is_refused_before_anything_is_asked(world, fake_anthropic, api_client):
    # Read as its last value, the question asked would be one the client may not have meant (JSON leaves a repeated
    # name's meaning open), and it would be counted.
    body = '{"query": "Which reserve rules apply?", "query": "What is MiCAR?"}'
    response = api_client(world.globex_member).post(QUERIES.format("globex"), body, content_type="application/json")

    assert_invalid_request(response, "The field `query` is repeated: send each field once.")
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


@pytest.mark.parametrize("field", ["idempotencyKey", "IdempotencyKey", "idempotency_key", "Idempotency-Key"])
def test_a_key_sent_in_the_body_is_refused_pointing_at_the_header(world, fake_anthropic, api_client, field):
    # Accepted and ignored, it would leave the client believing its retries were safe while each one was asked and
    # counted again.
    response = api_client(world.globex_member).post(
        QUERIES.format("globex"), {"query": QUESTION, field: KEY}, content_type="application/json"
    )

    assert_invalid_request(
        response,
        f"The field `{field}` is unknown: an idempotency key goes in the `Idempotency-Key` header, not the body.",
    )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_a_key_sent_in_the_body_without_the_question_points_at_the_header_too(world, fake_anthropic, api_client):
    response = api_client(world.globex_member).post(
        QUERIES.format("globex"), {"idempotencyKey": KEY}, content_type="application/json"
    )

    assert_invalid_request(
        response,
        "The field `idempotencyKey` is unknown: an idempotency key goes in the `Idempotency-Key` header, not the "
        "body. The field `query` is required.",
    )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_a_key_sent_in_the_body_beside_a_question_of_the_wrong_type_points_at_the_header_too(
    world, fake_anthropic, api_client
):
    # A client told only that `query` is not valid fixes it and sends the key in the body again: refused again, with
    # a second round trip to learn what the first answer could have said.
    response = api_client(world.globex_member).post(
        QUERIES.format("globex"), {"query": 42, "idempotencyKey": KEY}, content_type="application/json"
    )

    assert_invalid_request(
        response,
        "The field `idempotencyKey` is unknown: an idempotency key goes in the `Idempotency-Key` header, not the "
        "body. The field `query` is not valid: Input should be a valid string.",
    )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


@pytest.mark.parametrize("parameter", ["idempotencyKey", "idempotency_key", "Idempotency-Key"])
def test_a_key_sent_in_the_query_string_is_refused_pointing_at_the_header(world, fake_anthropic, api_client, parameter):
    # As in the body: ignored, each retry of the question would be asked and counted again, the client believing it
    # safe. The question itself was sent once here, so nothing may have been asked or counted.
    client = api_client(world.globex_member)
    url = f"{QUERIES.format('globex')}?{parameter}={KEY}"

    responses = [client.post(url, {"query": QUESTION}, content_type="application/json") for _ in range(2)]

    for response in responses:
        assert_invalid_request(
            response,
            f"The parameter `{parameter}` is unknown: an idempotency key goes in the `Idempotency-Key` header, not "
            "the query string.",
        )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_a_key_sent_as_x_idempotency_key_is_refused_naming_the_header_read(world, fake_anthropic, api_client):
    # Another API's spelling of the header: ignored, each retry would be asked and counted again.
    client = api_client(world.globex_member)

    responses = [
        client.post(
            QUERIES.format("globex"),
            {"query": QUESTION},
            content_type="application/json",
            headers={"X-Idempotency-Key": KEY},
        )
        for _ in range(2)
    ]

    for response in responses:
        assert_invalid_request(
            response, "The header `X-Idempotency-Key` is not read: send the key as `Idempotency-Key`."
        )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_a_question_refuses_any_query_string_parameter_by_name(world, fake_anthropic, api_client):
    response = api_client(world.globex_member).post(
        f"{QUERIES.format('globex')}?query=elsewhere", {"query": QUESTION}, content_type="application/json"
    )

    assert_invalid_request(
        response,
        "The parameter `query` is unknown: this operation takes no query-string parameter (the question goes in the "
        "JSON body).",
    )
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


@pytest.mark.parametrize("query", ["limit=1&limit=2", "idempotencyKey=a&idempotencyKey=b"])
def test_a_repeated_parameter_on_a_question_is_refused_before_asking(world, fake_anthropic, api_client, query):
    response = api_client(world.globex_member).post(
        f"{QUERIES.format('globex')}?{query}", {"query": QUESTION}, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert f"`{query.partition('=')[0]}`" in response.json()["error"]["message"]
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_a_key_in_the_body_is_refused_beside_the_header_too(world, fake_anthropic, api_client):
    response = api_client(world.globex_member).post(
        QUERIES.format("globex"),
        {"query": QUESTION, "idempotencyKey": KEY},
        content_type="application/json",
        headers={"Idempotency-Key": KEY},
    )

    assert response.status_code == 400 and "`Idempotency-Key` header" in response.json()["error"]["message"]
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()


def test_the_longest_key_is_accepted(world, fake_anthropic, api_client):
    assert ask(api_client(world.globex_member), key="k" * 255).status_code == 200


def _another_request_inserts_first(world, monkeypatch) -> dict:
    """Another request with the same key inserts its row between this one's look and its decision; the returned dict
    holds that row as "row" once it has."""
    looked = services._by_idempotency_key
    winner = {}

    def racing(*, membership, key):
        found = looked(membership=membership, key=key)
        if not winner:
            winner["row"] = pending_row(world.globex_member, world.globex)
        return found

    monkeypatch.setattr(services, "_by_idempotency_key", racing)
    return winner


@pytest.mark.django_db(transaction=True)  # on PostgreSQL the refused insert would abort a test's own transaction
@pytest.mark.parametrize("earlier", [0, 19], ids=["queries to spare", "on the last query left"])
def test_two_requests_with_one_key_deciding_at_once_ask_once_and_the_loser_is_told_409(
    world, fake_anthropic, api_client, monkeypatch, earlier
):
    # Both read "no query with this key yet" before either inserted one: the database's unique index decides, and the
    # loser is told the winner's query is being answered, counting nothing. With one query left in the window the
    # winner's query takes it, so the loser's decision is refused by the limit before its insert could meet the
    # index: it is still a retry of a question being answered, not "Rate limit reached" for one already asked.
    if earlier:
        seed_spread(world.globex, earlier, oldest=1800)
    client = api_client(world.globex_member)
    winner = _another_request_inserts_first(world, monkeypatch)

    response = ask(client)

    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert f"(query {winner['row'].pk})" in response.json()["error"]["message"]
    assert not fake_anthropic.requests
    assert InsightQuery.objects.count() == earlier + 1  # nothing counted but the winner's
    assert InsightQuery.objects.filter(pk=winner["row"].pk).exists()


def test_the_document_describes_the_key_and_its_answers(client):
    operation = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/orgs/{slug}/insights/queries"]["post"]

    (param,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert (param["in"], param.get("required", False)) == ("header", False)
    assert param["schema"]["maxLength"] == 255
    # A generated client checking the key before sending it never sends one the server refuses as the header twice.
    pattern = param["schema"]["pattern"]
    assert re.fullmatch(pattern, KEY) and not re.fullmatch(pattern, f"{KEY},{KEY}")
    assert {"409", "422"} <= set(operation["responses"])
    # The 409 says when to try again, declared as the 429's is: whole seconds.
    assert operation["responses"]["409"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    # Both ways to a 409 send it (tests above): a client generated from the document may count on it.
    assert operation["responses"]["409"]["headers"]["Retry-After"]["required"] is True
    assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"]
    assert "idempotency_key_in_use" in operation["description"]
    assert "idempotency_key_reused" in operation["description"]


@pytest.mark.django_db(transaction=True)
def test_a_request_beaten_to_its_key_by_one_that_then_failed_asks_after_all(
    world, fake_anthropic, api_client, monkeypatch
):
    # The other request's insert won, and its query failed before this one looked again: the key is free once more.
    looked = services._by_idempotency_key
    winner = {}

    def racing(*, membership, key):
        if not winner:
            found = looked(membership=membership, key=key)
            winner["row"] = pending_row(world.globex_member, world.globex)
            return found
        # Failed, as _record writes it: the key let go.
        failed = {"outcome": Outcome.FAILED, "error_code": "overloaded", "idempotency_key": None}
        InsightQuery.objects.filter(pk=winner["row"].pk).update(**failed)
        return looked(membership=membership, key=key)

    monkeypatch.setattr(services, "_by_idempotency_key", racing)

    response = ask(api_client(world.globex_member))

    assert response.status_code == 200, response.content
    assert response.json()["id"] != winner["row"].pk
    assert len(fake_anthropic.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_beaten_to_its_key_again_and_again_is_told_to_retry_not_that_insights_is_unavailable(
    world, fake_anthropic, api_client, monkeypatch
):
    # Many copies of one request at once while Anthropic keeps failing: each time this one goes to insert its query,
    # another copy has just taken the key, and each time it looks, that copy has failed and let it go. It gives up
    # after a few rounds, unasked; that is the key being busy with the client's own requests (a 409, retry later),
    # not AI Insights being unavailable: a 503 with no failed query behind it, and an ERROR log line, for a race.
    looked = services._by_idempotency_key
    holders = []

    def racing(*, membership, key):
        if holders:  # the copy that took the key before this one's insert has failed since, letting it go
            failed = {"outcome": Outcome.FAILED, "error_code": "insights_unavailable", "idempotency_key": None}
            InsightQuery.objects.filter(pk=holders[-1].pk).update(**failed)
        found = looked(membership=membership, key=key)
        holders.append(pending_row(world.globex_member, world.globex))  # the next copy takes it first
        return found

    monkeypatch.setattr(services, "_by_idempotency_key", racing)

    response = ask(api_client(world.globex_member))

    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert response["Retry-After"] == "5"
    assert response["RateLimit"].startswith('"insights";r=')
    assert not fake_anthropic.requests  # unasked, and nothing of its own counted
    assert set(InsightQuery.objects.values_list("pk", flat=True)) == {row.pk for row in holders}


BEFORE = ("insights", "0007_ratelimit_decides_on_the_key_in_force")
COLUMN = ("insights", "0008_insightquery_idempotency_key")
AFTER = ("insights", "0009_insightquery_idempotency_key_index")


def indexes() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, InsightQuery._meta.db_table))


@pytest.mark.django_db(transaction=True)
def test_the_keys_index_is_built_without_holding_queries_and_taken_back_cleanly(latest_schema_after):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    assert "insight_idempotency_key" not in indexes()

    executor = MigrationExecutor(connection)
    with CaptureQueriesContext(connection) as built:
        executor.migrate([AFTER])

    assert "insight_idempotency_key" in indexes()
    assert executor.loader.get_migration(*AFTER).atomic is False  # CONCURRENTLY runs outside a transaction
    if connection.vendor == "postgresql":  # a plain CREATE INDEX would hold every insert while it read the history
        (create,) = [q["sql"] for q in built.captured_queries if q["sql"].startswith("CREATE UNIQUE INDEX")]
        assert create.startswith("CREATE UNIQUE INDEX CONCURRENTLY")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="CONCURRENTLY is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_build_of_the_keys_index_that_failed_part_way_can_be_run_again(world, latest_schema_after):
    # A concurrent build that fails (here on rows it finds duplicated; in life cancelled, or its connection lost)
    # leaves an INVALID index of its name behind, which made the next run fail with "already exists".
    MigrationExecutor(connection).migrate([COLUMN])
    for _ in range(2):
        pending_row(world.globex_member, world.globex)  # no index yet: nothing refuses the second
    with pytest.raises(IntegrityError), connection.cursor() as cursor:
        cursor.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY insight_idempotency_key ON insights_insightquery"
            " (organisation_id, user_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
        )
    assert "insight_idempotency_key" in indexes()  # left behind, INVALID
    InsightQuery.objects.filter(pk=InsightQuery.objects.order_by("pk").last().pk).delete()

    MigrationExecutor(connection).migrate([AFTER])

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid WHERE c.relname = %s",
            ["insight_idempotency_key"],
        )
        assert cursor.fetchall() == [(True,)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the limiter's function is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_worker_still_on_older_code_inserts_without_the_keys_column(world, monkeypatch):
    # During a deploy, a worker on the code before this column gives the limiter's function rows without it: the
    # insert still succeeds, the column empty, and the unique index ignores the row.
    from insights import ratelimit

    as_today = ratelimit._row_json

    def as_before(query, using):
        values = json.loads(as_today(query, using))
        del values["idempotency_key"]
        return json.dumps(values)

    monkeypatch.setattr(ratelimit, "_row_json", as_before)
    row = {"user": world.globex_member, "key_source": KeySource.PLATFORM, "query": QUESTION}

    rows = [ratelimit.acquire(org=world.globex, limit=20, window_seconds=3600, row=row)[0] for _ in range(2)]

    assert list(InsightQuery.objects.order_by("pk").values_list("idempotency_key", flat=True)) == [None, None]
    assert len({r.pk for r in rows}) == 2


# Review of the key (d625776): races with real threads, the answers a client relies on, and what another member's key
# may reveal.


def answered_row(user, org, *, key: str = KEY, query: str = QUESTION, outcome: str = Outcome.ANSWERED) -> InsightQuery:
    return InsightQuery.objects.create(
        organisation=org,
        user=user,
        key_source=KeySource.PLATFORM,
        query=query,
        idempotency_key=key,
        outcome=outcome,
        answer="" if outcome == Outcome.FAILED else "An answer kept.",
        stop_reason=None if outcome == Outcome.FAILED else "complete",
        error_code="overloaded" if outcome == Outcome.FAILED else "",
    )


def fire_at_once(client, count: int, query: str = QUESTION) -> list:
    """`count` requests with the one key, each on its own thread and database connection, released together."""
    start, responses = threading.Barrier(count, timeout=30), []

    def fire():
        try:
            start.wait()
            responses.append(ask(client, query=query))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fire) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, responses


@pytest.mark.django_db(transaction=True)  # real threads, each on its own connection
def test_many_requests_with_one_key_at_once_ask_once_and_the_others_are_told_of_that_query(
    world, fake_anthropic, api_client, settings
):
    settings.ANTHROPIC_TIMEOUT_SECONDS = 30.0  # the held answer outlasts the others, however busy the machine
    fake_anthropic.behave(PLATFORM_KEY, "hold")  # the first holds its query pending while the others decide
    client = api_client(world.globex_member)
    threads, responses = fire_at_once(client, 6)
    try:
        wait_for(lambda: len(responses) == 5)
    finally:
        fake_anthropic.release.set()
        for thread in threads:
            thread.join(30)

    (row,) = InsightQuery.objects.all()
    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"]["code"] == "idempotency_key_in_use"
        assert f"(query {row.pk})" in refused.json()["error"]["message"]
    (answered,) = [r for r in responses if r.status_code == 200]
    assert answered.json()["id"] == row.pk and "Idempotent-Replayed" not in answered
    assert len(fake_anthropic.requests) == 1 and row.outcome == Outcome.ANSWERED
    assert ask(client).json() == answered.json()  # and a later retry is given that answer


@pytest.mark.django_db(transaction=True)
def test_requests_with_one_key_at_once_while_anthropic_fails_ask_once_each_and_leave_the_key_free(
    world, fake_anthropic, api_client
):
    # The first fails while the others wait on it or on each other: each query asked is a query counted, no request
    # is a 500, and every failure lets the key go: no query ends holding it.
    # Four: a request deciding again each time another's query failed meanwhile could lose the race at most three
    # times, fewer than the KEY_CHOICES after which it would give up unasked (a 409 too, as the test of
    # a request beaten to its key again and again shows).
    fake_anthropic.default = "overloaded"
    client = api_client(world.globex_member)
    threads, responses = fire_at_once(client, 4)
    for thread in threads:
        thread.join(60)

    assert len(responses) == 4
    assert {r.status_code for r in responses} <= {409, 503}, [r.content for r in responses]
    rows = list(InsightQuery.objects.values_list("outcome", flat=True))
    assert rows == [Outcome.FAILED] * len(fake_anthropic.requests)
    assert [r.status_code for r in responses].count(503) == len(rows)
    assert not InsightQuery.objects.filter(idempotency_key=KEY).exists()
    fake_anthropic.default = "ok"
    assert ask(client).status_code == 200  # the key is free again


def test_a_retry_at_the_limit_is_given_its_answer_not_a_429(world, fake_anthropic, api_client, settings):
    # Being given an answer already paid for counts nothing, so the limit has nothing to refuse.
    client = api_client(world.globex_member)
    first = ask(client)
    settings.INSIGHTS_PLATFORM_LIMIT = 1

    again = ask(client)

    assert again.status_code == 200, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["rateLimit"] == {"limit": 1, "remaining": 0, "resetSeconds": 3600}
    assert len(fake_anthropic.requests) == 1


def test_a_retry_on_the_organisations_own_key_reports_its_limit(world, fake_anthropic, api_client, acme_key):
    client = api_client(world.acme_member)
    first = ask(client, "acme")

    again = ask(client, "acme")

    assert again.json() == first.json()
    assert again.json()["rateLimit"]["limit"] == 200 and again["RateLimit-Policy"].startswith('"insights";q=200;')


@pytest.mark.parametrize("ending", ["max_tokens", "refusal"])
def test_an_answer_cut_short_or_declined_is_replayed_as_it_was_given(world, fake_anthropic, api_client, ending):
    fake_anthropic.default = ending
    client = api_client(world.globex_member)
    first = ask(client)

    again = ask(client)

    assert first.json()["stopReason"] == ending
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert len(fake_anthropic.requests) == 1


def test_a_query_decided_again_after_the_key_changed_still_holds_its_idempotency_key(
    world, fake_anthropic, api_client, acme_key, monkeypatch
):
    # An admin saves the organisation's key while this query's decision waits (ratelimit.KeyChanged): it is decided
    # again, with the key then in force, and the query it inserts is the one a retry is given.
    chosen, saves = keys.resolve, []

    def saved_meanwhile(org):
        choice = chosen(org)
        if not saves:
            saves.append(1)
            ClaudeApiKey.objects.filter(organisation=org).update(saved_at=timezone.now() + timedelta(seconds=1))
        return choice

    monkeypatch.setattr(keys, "resolve", saved_meanwhile)
    client = api_client(world.acme_member)
    first = ask(client, "acme")

    again = ask(client, "acme")

    assert first.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and len(fake_anthropic.requests) == 1


def test_one_members_key_in_another_organisation_is_a_new_question(world, fake_anthropic, api_client):
    # The same person's key in one organisation says nothing of their queries in another: not its answer, not its id.
    Membership.objects.create(user=world.globex_member, organisation=world.initech, role=Role.MEMBER)
    client = api_client(world.globex_member)
    in_globex = ask(client).json()["id"]

    same_question = ask(client, "initech")
    other_question = ask(client, "initech", query="What is a CASP?", key="another-key")
    answered_row(world.globex_member, world.globex, key="another-key", query="A question asked in Globex")
    reused_there = ask(client, "initech", query="What is a CASP?", key="another-key")

    assert same_question.status_code == 200 and "Idempotent-Replayed" not in same_question
    assert same_question.json()["id"] != in_globex
    assert other_question.status_code == 200
    assert reused_there.json()["id"] == other_question.json()["id"]  # initech's own query, replayed
    assert len(fake_anthropic.requests) == 3


@pytest.mark.parametrize("state", ["answered", "pending"])
def test_another_members_key_never_reveals_their_query(world, fake_anthropic, api_client, state):
    # The 422 and 409 name a query: only ever the caller's own. A colleague who sends the same key, with another
    # question or the same, asks their own.
    theirs = answered_row(world.globex_owner, world.globex)
    if state == "pending":
        InsightQuery.objects.filter(pk=theirs.pk).update(outcome=Outcome.PENDING, answer="", stop_reason=None)
    client = api_client(world.globex_member)

    other_question = ask(client, query="What is a CASP?")
    same_question = ask(client, key="a-key-of-my-own")
    same_key_same_question = ask(client, key=KEY.upper())  # keys are compared exactly: a new key

    for response in (other_question, same_question, same_key_same_question):
        assert response.status_code == 200, response.content
        assert response.json()["id"] != theirs.pk
        assert "Idempotent-Replayed" not in response
    assert len(fake_anthropic.requests) == 3


def test_a_key_whose_query_was_pruned_asks_again(world, fake_anthropic, api_client):
    old = answered_row(world.globex_member, world.globex)
    InsightQuery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=100))
    call_command("prune_insight_queries", stdout=io.StringIO())

    response = ask(api_client(world.globex_member))

    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert len(fake_anthropic.requests) == 1


def test_a_removed_member_retrying_is_told_nothing_of_their_query(world, fake_anthropic, api_client):
    client = api_client(world.globex_member)
    ask(client)
    Membership.objects.filter(user=world.globex_member, organisation=world.globex).delete()

    response = ask(client)

    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert set(response.json()) == {"error", "requestId"}
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db(transaction=True)  # the first request runs in a thread, on its own connection
def test_an_answer_arriving_after_its_key_went_to_a_retry_is_still_given_and_recorded(
    world, fake_anthropic, api_client, settings
):
    # The first request outlived the abandoned-query deadline (here: its row aged meanwhile): a retry recorded it as
    # interrupted and was answered under the key. When the first answer arrives, its reader is given it and the
    # history keeps it, and the key stays with the retry's query, whose answer a later retry is given.
    settings.ANTHROPIC_TIMEOUT_SECONDS = 30.0
    fake_anthropic.behave(PLATFORM_KEY, "hold")
    client = api_client(world.globex_member)
    asking, answered = ask_in_a_thread(client)
    try:
        wait_for(lambda: fake_anthropic.requests)
        (late,) = InsightQuery.objects.all()
        InsightQuery.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(hours=1))
        fake_anthropic.behave(PLATFORM_KEY, "ok")
        retry = ask(client)
    finally:
        fake_anthropic.release.set()
        asking.join(30)

    assert retry.status_code == 200 and retry.json()["id"] != late.pk
    assert answered["response"].status_code == 200, answered["response"].content
    assert answered["response"].json()["answer"] == fake_anthropic.answer_text
    late.refresh_from_db()
    assert (late.outcome, late.answer, late.idempotency_key) == (Outcome.ANSWERED, fake_anthropic.answer_text, None)
    assert ask(client).json() == retry.json()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="heap-only updates are PostgreSQL's")
def test_recording_an_answer_leaves_every_index_alone(world, fake_anthropic, api_client):
    # The key's unique index names no column the outcome's UPDATE writes (its condition is on the key alone), so
    # PostgreSQL can record the answer as a heap-only update, adding no entry to any of the table's indexes.
    def updates() -> tuple[int, int]:
        # This backend's counts not yet flushed to the statistics: within this test's transaction, none is flushed,
        # though some may remain from earlier tests' transactions.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'insights_insightquery'"
            )
            return cursor.fetchone()

    before = updates()
    assert ask(api_client(world.globex_member)).status_code == 200
    assert ask(api_client(world.globex_member), key=None).status_code == 200
    after = updates()

    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)  # two UPDATEs, both heap-only


@pytest.mark.django_db(transaction=True)  # the decision commits its own transaction
def test_a_query_of_an_account_deleted_as_it_is_decided_is_not_taken_for_a_retry(world, fake_anthropic):
    # Only the key's unique index makes a request a retry: the member's account deleted as the query is decided (which
    # refused the insert, once) is found gone under the lock and answered as a non-member is, not with five decisions
    # and a 503.
    membership = Membership.objects.select_related("organisation", "user").get(
        user=world.globex_member, organisation=world.globex
    )
    type(world.globex_member).objects.filter(pk=world.globex_member.pk).delete()

    with pytest.raises(NotFound):
        services.start(membership=membership, text=QUESTION, idempotency_key=KEY)

    assert not InsightQuery.objects.exists() and not fake_anthropic.requests
