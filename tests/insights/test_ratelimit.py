"""The rolling limit: exact counts, exact Retry-After, a sliding window and what counts as a query.

Time is controlled by seeding rows with past `created_at` values; nothing sleeps.
"""

import math
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from insights import ratelimit, services
from insights.models import InsightQuery, Outcome
from insights.ratelimit import window_words
from orgs import services as org_services
from orgs.models import Organisation
from tests.conftest import PLATFORM_KEY

from .helpers import db_now, seed, seed_spread

URL = "/api/v1/orgs/{}/insights/queries"


def post(client, slug: str, query: str = "What are the white-paper obligations under MiCAR?"):
    return client.post(URL.format(slug), {"query": query}, content_type="application/json")


def test_the_21st_platform_query_in_an_hour_is_refused_with_the_documented_message(world, fake_anthropic, api_client):
    seed_spread(world.globex, 20, oldest=1800, newest=30)

    response = post(api_client(world.globex_member), "globex")

    assert response.status_code == 429
    assert response.json()["error"] == {"code": "rate_limited", "message": "Rate limit reached (20/hour)"}
    assert fake_anthropic.requests == []


def test_the_201st_byom_query_in_an_hour_is_refused_with_the_documented_message(
    world, fake_anthropic, api_client, acme_key
):
    seed_spread(world.acme, 200, oldest=3000, newest=10, source="organisation")

    response = post(api_client(world.acme_member), "acme")

    assert response.status_code == 429
    assert response.json()["error"] == {"code": "rate_limited", "message": "Rate limit reached (200/hour)"}
    assert response["RateLimit-Policy"] == '"insights";q=200;w=3600'
    assert fake_anthropic.requests == []


def test_the_20th_query_is_still_answered(world, fake_anthropic, api_client):
    seed_spread(world.globex, 19, oldest=1800)

    response = post(api_client(world.globex_member), "globex")

    assert response.status_code == 200
    assert response.json()["rateLimit"]["remaining"] == 0
    assert response["RateLimit"].startswith('"insights";r=0;')


@pytest.mark.parametrize("oldest", [1800, 600, 3599, 5])
def test_retry_after_is_when_the_oldest_counted_query_leaves_the_window(world, fake_anthropic, api_client, oldest):
    # Older rows outside the window must not decide the time either.
    seed(world.globex, 3700, 7200)
    seed_spread(world.globex, 20, oldest=oldest, newest=min(oldest, 2))

    response = post(api_client(world.globex_member), "globex")

    expected = 3600 - oldest
    assert response.status_code == 429
    assert abs(int(response["Retry-After"]) - expected) <= 1
    assert response["RateLimit-Policy"] == '"insights";q=20;w=3600'
    remaining, reset = response["RateLimit"].removeprefix('"insights";').split(";")
    assert remaining == "r=0"
    assert abs(int(reset.removeprefix("t=")) - expected) <= 1


def test_the_window_slides_so_queries_older_than_an_hour_stop_counting(world, fake_anthropic, api_client):
    seed_spread(world.globex, 30, oldest=7200, newest=3605)  # all out of the window
    seed_spread(world.globex, 19, oldest=3500, newest=100)  # 19 still count
    client = api_client(world.globex_member)

    first = post(client, "globex")
    second = post(client, "globex")

    assert first.status_code == 200
    assert first.json()["rateLimit"] == {"limit": 20, "remaining": 0, "resetSeconds": pytest.approx(100, abs=1)}
    assert second.status_code == 429


def test_a_query_leaving_the_window_frees_exactly_one_slot(world, fake_anthropic):
    # 20 queries, one of them a second past the window: exactly one more may go.
    seed(world.globex, 3601, *[100] * 19)
    membership = world.membership(world.globex_member, world.globex)

    services.start(membership=membership, text="one").answer()
    with pytest.raises(ratelimit.RateLimited):
        services.start(membership=membership, text="two")


def test_usage_counts_one_window_per_organisation(world, fake_anthropic, api_client):
    seed(world.globex, *[60] * 20)

    assert post(api_client(world.acme_member), "acme").status_code == 200
    assert post(api_client(world.globex_member), "globex").status_code == 429


def test_removing_the_key_drops_the_limit_to_20_at_once_while_the_window_still_counts(
    world, fake_anthropic, api_client, acme_key
):
    seed_spread(world.acme, 25, oldest=1200, newest=60, source="organisation")
    client = api_client(world.acme_member)
    assert post(client, "acme").status_code == 200  # 26th of 200

    org_services.claude_api_key_remove(membership=world.membership(world.acme_owner, world.acme), ip=None)
    response = post(client, "acme")

    assert response.status_code == 429
    assert response.json()["error"]["message"] == "Rate limit reached (20/hour)"
    # 26 count against 20: the next query fits once the 7 oldest have left, so Retry-After is when the
    # 7th oldest (seeded 1200 - 6 * 47.5 = 915 s ago) leaves, not the oldest.
    assert abs(int(response["Retry-After"]) - (3600 - 915)) <= 1
    assert response["RateLimit-Policy"] == '"insights";q=20;w=3600'
    assert response["RateLimit"] == f'"insights";r=0;t={response["Retry-After"]}'
    usage = client.get("/api/v1/orgs/acme/insights/usage").json()
    assert (usage["limit"], usage["used"], usage["remaining"], usage["keySource"]) == (20, 26, 0, "platform")


def test_queries_on_the_platform_key_count_after_a_key_is_saved(world, fake_anthropic, api_client):
    # One count per organisation, whichever key served the earlier queries.
    seed(world.acme, *[60] * 20)
    client = api_client(world.acme_member)
    assert post(client, "acme").status_code == 429

    org_services.claude_api_key_set(
        membership=world.membership(world.acme_owner, world.acme),
        raw_key="sk-ant-api03-fresh-000000000000000000000000000000000000000000000000",
        ip=None,
    )
    response = post(client, "acme")

    assert response.status_code == 200
    assert response.json()["rateLimit"]["remaining"] == 200 - 21


def test_a_query_that_fails_upstream_still_counts(world, fake_anthropic, api_client):
    fake_anthropic.behave(PLATFORM_KEY, "server_error")

    response = post(api_client(world.globex_member), "globex")

    assert response.status_code == 503
    row = InsightQuery.objects.get(organisation=world.globex)
    assert (row.outcome, row.error_code) == (Outcome.FAILED, "insights_unavailable")
    assert services.usage(world.globex).window.used == 1


@pytest.mark.parametrize(
    "query",
    ["", "   \n\t ", "x" * 4001],
    ids=["empty", "blank", "too-long"],
)
def test_a_refused_question_does_not_count(world, fake_anthropic, api_client, query):
    response = post(api_client(world.globex_member), "globex", query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["message"]
    assert not InsightQuery.objects.exists()
    assert fake_anthropic.requests == []


def test_a_question_over_the_limit_is_told_how_long_it_is(world, fake_anthropic, api_client):
    # "Limited to 4,000 characters" alone leaves the person counting: how much must go?
    response = post(api_client(world.globex_member), "globex", "  " + "x" * 4100 + "\n")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_request",
        "message": "Questions are limited to 4,000 characters; yours has 4,100. Shorten it and ask again.",
    }


def test_a_4000_character_question_is_accepted(world, fake_anthropic, api_client):
    response = post(api_client(world.globex_member), "globex", "x" * 4000)

    assert response.status_code == 200


def test_no_platform_key_refuses_without_counting(world, fake_anthropic, api_client, settings):
    settings.ANTHROPIC_API_KEY = ""

    response = post(api_client(world.globex_member), "globex")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "insights_unavailable"
    assert not InsightQuery.objects.exists()
    assert fake_anthropic.requests == []


def test_a_query_over_the_limit_adds_no_row(world, fake_anthropic, api_client):
    seed(world.globex, *[60] * 20)
    client = api_client(world.globex_member)

    for _ in range(3):
        assert post(client, "globex").status_code == 429

    assert InsightQuery.objects.filter(organisation=world.globex).count() == 20


def test_acquire_reports_the_window_after_counting(world):
    seed(world.globex, 900, 60)

    row, window = ratelimit.acquire(
        org=world.globex, limit=5, window_seconds=3600, row={"key_source": "platform", "query": "q"}
    )

    assert row.pk is not None
    assert (window.used, window.remaining) == (3, 2)
    assert abs(window.reset_seconds - 2700) <= 1


def test_when_the_limit_falls_below_the_count_the_page_says_when_a_query_really_frees_up(
    world, fake_anthropic, console, acme_key
):
    seed_spread(world.acme, 30, oldest=3000, newest=60, source="organisation")
    org_services.claude_api_key_remove(membership=world.membership(world.acme_owner, world.acme), ip=None)

    response = console(world.acme_member).get("/orgs/acme/insights/")

    # 30 count against 20: the 11th oldest (3000 - 10 * (2940 / 29) ≈ 1986 s ago) must leave first.
    t = int(response["RateLimit"].rsplit("t=", 1)[1])
    assert abs(t - (3600 - 1986)) <= 2


def test_when_the_limit_falls_only_this_organisations_rows_in_the_window_decide_when_one_frees(
    world, fake_anthropic, api_client, acme_key
):
    # Its own rows older than the window, and another organisation's rows inside it, must not shift
    # which of its counted queries has to leave before the next one fits.
    seed(world.acme, *(3700 + i for i in range(10)), source="organisation")  # out of the window
    seed(world.globex, *[3000] * 10)  # in the window, older than any of Acme's, another organisation's
    seed_spread(world.acme, 25, oldest=2400, newest=60, source="organisation")
    org_services.claude_api_key_remove(membership=world.membership(world.acme_owner, world.acme), ip=None)

    response = post(api_client(world.acme_member), "acme")

    # 25 count against 20: the next query fits once the 6 oldest have left; the 6th oldest was seeded
    # 2400 - 5 * 97.5 = 1912.5 s ago.
    assert response.status_code == 429
    assert abs(int(response["Retry-After"]) - (3600 - 1912.5)) <= 1


def test_retry_after_is_never_early(world, fake_anthropic, api_client):
    # Rounded up, never down: a client that waits exactly Retry-After seconds finds a slot free.
    rows = seed(world.globex, *[1800.5] * 20)
    before = db_now()

    response = post(api_client(world.globex_member), "globex")

    after = db_now()
    frees_at = rows[0].created_at + timedelta(seconds=3600)
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert retry_after >= (frees_at - after).total_seconds()
    assert retry_after <= math.ceil((frees_at - before).total_seconds())
    assert response["RateLimit"] == f'"insights";r=0;t={retry_after}'


@pytest.mark.parametrize("window_seconds", [3600, 60])
def test_the_window_statistics_agree_with_the_orm_statement_they_stand_for(world, window_seconds):
    # On SQLite _stats runs a hand-written statement (on PostgreSQL the ORM's): both against the seeded ages.
    seed(world.globex, 3500, 1800, 50, 30, 3700, 7200)
    seed(world.acme, 10)  # another organisation's rows never count

    used, oldest, now = ratelimit._stats(world.globex.pk, window_seconds)
    orm_used, orm_oldest, _ = ratelimit._orm_stats(world.globex.pk, window_seconds)

    assert used == orm_used == {3600: 4, 60: 2}[window_seconds]
    assert oldest == orm_oldest
    assert abs((db_now() - now).total_seconds()) < 5  # the database's clock, as an aware datetime
    assert abs((now - oldest).total_seconds() - {3600: 3500, 60: 50}[window_seconds]) < 5


@pytest.mark.django_db(transaction=True)
def test_a_decision_inside_a_callers_transaction_is_refused_not_deferred(world):
    # Inside an outer transaction the decision's lock and row would last until that transaction ends,
    # held across the call to Claude and invisible to every other count: the limiter refuses to run.
    row = {"user": world.globex_member, "key_source": "platform", "query": "MiCAR?", "model": "m"}
    with transaction.atomic(), pytest.raises(RuntimeError, match="must not run inside a transaction"):
        ratelimit.acquire(org=world.globex, limit=20, window_seconds=3600, row=row)

    assert not InsightQuery.objects.exists()
    query, window = ratelimit.acquire(org=world.globex, limit=20, window_seconds=3600, row=row)
    assert window.used == 1 and InsightQuery.objects.get() == query


@pytest.mark.django_db(transaction=True)
def test_a_decision_that_waited_for_the_lock_is_stamped_when_it_was_made_not_when_it_arrived(world):
    # The row's time is when the limit let it through. Stamped on arrival, a decision that queued behind another
    # (a key save, a busy organisation) would leave the window early by the wait, and for that long the window
    # would hold one query more than the limit. Another connection holds the organisation's lock for a second.
    locked = threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():  # SQLite: BEGIN IMMEDIATE takes the write lock; PostgreSQL: the row lock
                Organisation.objects.select_for_update().filter(pk=world.globex.pk).values_list("pk").get()
                locked.set()
                time.sleep(1.0)
        finally:
            connections["default"].close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(10)
    arrived = timezone.now()  # the app's and the database's clocks are this machine's
    row, window = ratelimit.acquire(
        org=world.globex, limit=20, window_seconds=3600, row={"key_source": "platform", "query": "q"}
    )
    holder.join()

    assert row.created_at - arrived >= timedelta(seconds=0.8)
    assert InsightQuery.objects.get().created_at == row.created_at
    assert window.reset_seconds == 3600


@pytest.mark.parametrize(
    "seconds, words",
    [
        (3600, "60 minutes"),  # the product documentation's
        (60, "1 minute"),
        (1, "1 second"),
        (90, "90 seconds"),
        (7200, "2 hours"),
        (5400, "90 minutes"),
    ],
)
def test_the_window_is_named_in_plain_english(seconds, words):
    assert window_words(seconds) == words


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["member", "removed", "deactivated", "outsider"])
def test_a_decision_for_someone_no_longer_an_active_member_counts_nothing(world, who):
    # The check the decision makes once the organisation's lock is held (the race itself: tests/reliability/
    # test_queries_during_key_changes.py). The limit has room: only the membership can refuse.
    user = world.outsider if who == "outsider" else world.globex_member
    if who == "removed":
        world.globex.memberships.filter(user=user).delete()
    elif who == "deactivated":
        type(user).objects.filter(pk=user.pk).update(is_active=False)
    row = {"user": user, "key_source": "platform", "query": "MiCAR?", "model": "m"}

    def decide():
        return ratelimit.acquire(
            org=world.globex, limit=20, window_seconds=3600, row=row, key_saved_at=None, member_id=user.pk
        )

    if who == "member":
        query, window = decide()
        assert window.used == 1 and InsightQuery.objects.get() == query
    else:
        with pytest.raises(ratelimit.NotMember):
            decide()
        assert not InsightQuery.objects.exists()


# Stamped by the column's default on SQLite: milliseconds, always three digits ("…:00.000"), as SQLite's clock writes.
EDGE_NOW = "2026-03-02 11:00:00.000"
# A query's stored time a window before EDGE_NOW, and whether the window still counts it.
AT_THE_EDGE = [
    ("2026-03-02 10:00:00.000", False),  # exactly a window old: left it
    ("2026-03-02 10:00:00.001", True),
    ("2026-03-02 09:59:59.999", False),
    ("2026-03-02 10:00:00", False),  # written by the ORM from a time on the second
    ("2026-03-02 10:00:00.000001", True),  # written by the ORM, a microsecond inside
]


@pytest.mark.skipif(connections["default"].vendor != "sqlite", reason="SQLite compares stored times as text")
@pytest.mark.parametrize("created_at, counts", AT_THE_EDGE)
def test_on_sqlite_a_query_exactly_a_window_old_has_left_it_even_on_the_second(world, created_at, counts):
    # The window counts queries newer than a window ago (PostgreSQL compares times; SQLite compares their text). A
    # cutoff that falls on a whole second was written without its fraction ("…10:00:00"), which sorts before the
    # default's "…10:00:00.000": the query exactly a window old was counted, one query too many refused (and the
    # usage meter said so). The decision's own statement, with SQLite's clock read as EDGE_NOW.
    (row,) = seed(world.globex, 10)
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE insights_insightquery SET created_at = %s WHERE id = %s", [created_at, row.pk])
        cursor.execute(
            ratelimit._SQLITE_STATS.replace("'NOW'", "%s"), [EDGE_NOW, world.globex.pk, EDGE_NOW, 3600 * 10**6]
        )
        used, _, now = cursor.fetchone()

    assert now == EDGE_NOW
    assert used == (1 if counts else 0)


def at_edge_now(rows) -> list[tuple]:
    """What the queryset `rows` reads with the database's clock (Django's Now(), each time the statement reads it) at
    EDGE_NOW: SQLite's 'NOW', PostgreSQL's STATEMENT_TIMESTAMP()."""
    sql, params = rows.query.sql_with_params()
    clock, at = (
        ("'NOW'", "%s") if connections["default"].vendor == "sqlite" else ("STATEMENT_TIMESTAMP()", "%s::timestamptz")
    )
    pieces, params, interleaved = sql.split(clock), list(params), []
    for piece in pieces[:-1]:
        taken = piece.count("%s")
        interleaved += [*params[:taken], EDGE_NOW]
        params = params[taken:]
    with connections["default"].cursor() as cursor:
        cursor.execute(at.join(pieces), [*interleaved, *params])
        return cursor.fetchall()


def stored_at(row: InsightQuery, created_at: str) -> None:
    """`row` stored as made at `created_at`, written as given (SQLite keeps the text; PostgreSQL reads it in UTC)."""
    with connections["default"].cursor() as cursor:
        cursor.execute("UPDATE insights_insightquery SET created_at = %s WHERE id = %s", [created_at, row.pk])


@pytest.mark.skipif(connections["default"].vendor != "sqlite", reason="SQLite compares stored times as text")
@pytest.mark.parametrize("created_at, counts", AT_THE_EDGE)
def test_on_sqlite_the_orms_window_agrees_with_the_decisions_on_the_second(world, created_at, counts):
    # ratelimit.counted, the window as the ORM writes it (admin refuses to delete a query inside it), must count what
    # the decision counts: the query exactly a window old has left it there too. SQLite's clock read as EDGE_NOW.
    (row,) = seed(world.globex, 10)
    stored_at(row, created_at)

    found = at_edge_now(ratelimit.counted(InsightQuery.objects.filter(pk=row.pk), 3600).values_list("pk"))

    assert len(found) == (1 if counts else 0)


@pytest.mark.parametrize("created_at, counts", AT_THE_EDGE)
def test_the_count_grouped_by_organisation_agrees_with_each_ones_own_at_the_windows_edge(world, created_at, counts):
    # Admin's removal confirmation reads many organisations' windows in one statement: each count must be what
    # ratelimit.counted gives that organisation alone, the query exactly a window old included. The clock at EDGE_NOW.
    acme_edge, acme_inside = seed(world.acme, 10, 20)
    (globex_edge,) = seed(world.globex, 10)
    stored_at(acme_edge, created_at)
    stored_at(globex_edge, created_at)
    stored_at(acme_inside, "2026-03-02 10:30:00.000")
    orgs = [world.acme, world.globex, world.initech]

    grouped = at_edge_now(
        ratelimit.counted_by_organisation([o.pk for o in orgs], 3600).values_list("organisation_id", "used")
    )
    alone = {o.pk: len(at_edge_now(ratelimit.counted(o.insight_queries.all(), 3600).values_list("pk"))) for o in orgs}

    assert alone == {world.acme.pk: 2 if counts else 1, world.globex.pk: 1 if counts else 0, world.initech.pk: 0}
    assert dict(grouped) == {org_id: used for org_id, used in alone.items() if used}


@pytest.mark.parametrize("limit", [3, 1, 0])
def test_the_windows_of_many_organisations_read_at_once_are_those_each_reads_alone(world, settings, limit):
    settings.INSIGHTS_PLATFORM_LIMIT = limit
    hooli = Organisation.objects.create(name="Hooli", slug="hooli")
    seed(world.acme, 3000, 2000, 1000, 500, 100, 7200)  # five in the window, more than the limit
    seed(world.globex, 3000, 2000, 1000)  # three
    seed(world.initech, 1800, 5000)  # one
    orgs = [world.acme, world.globex, world.initech, hooli]  # hooli has asked nothing

    together = ratelimit.windows_on_platform_key(orgs)

    assert set(together) == {o.pk for o in orgs}
    for org in orgs:  # as the limiter itself reads each one's window
        alone, read = ratelimit.peek(org=org, limit=limit, window_seconds=3600), together[org.pk]
        assert (read.limit, read.window_seconds, read.used) == (alone.limit, alone.window_seconds, alone.used)
        assert abs(read.reset_seconds - alone.reset_seconds) <= 1, org  # each read its own clock, a moment apart
    assert [together[o.pk].used for o in orgs] == [5, 3, 1, 0]
    # Five count against a limit of three: the next query fits once the third oldest has left; against one, once the
    # newest has; against none, never (a whole window).
    expected = {3: 3600 - 1000, 1: 3600 - 100, 0: 3600}[limit]
    assert abs(together[world.acme.pk].reset_seconds - expected) <= 1


def test_the_windows_of_many_organisations_take_two_queries_however_many(world, settings, django_assert_num_queries):
    settings.INSIGHTS_PLATFORM_LIMIT = 2
    orgs = [Organisation.objects.create(name=f"Org {i}", slug=f"org-{i}") for i in range(6)]
    for org in orgs:
        seed(org, 300, 200, 100)  # each over the limit: when the next fits needs more than the oldest's time

    with django_assert_num_queries(2):
        few = ratelimit.windows_on_platform_key(orgs[:1])
    with django_assert_num_queries(2):
        many = ratelimit.windows_on_platform_key(orgs)

    assert few[orgs[0].pk].used == many[orgs[0].pk].used == 3 and len(many) == 6
    assert {window.used for window in many.values()} == {3}


@pytest.mark.skipif(connections["default"].vendor != "sqlite", reason="SQLite compares stored times as text")
def test_on_sqlite_when_the_limit_fell_a_query_exactly_a_window_old_does_not_make_retry_after_early(world):
    # Two count against a limit of one (it fell: the key removed), the next fits once the newer of them has left: in
    # 45 minutes. The query exactly a window old (stamped by the column's default, "…10:00:00.000") has left already;
    # taken for a counted one, Retry-After would be when the older of the two leaves, 15 minutes early.
    rows = seed(world.globex, 10, 20, 30)
    with connections["default"].cursor() as cursor:
        for row, created_at in zip(rows, ["10:00:00.000", "10:30:00.000", "10:45:00.000"], strict=True):
            cursor.execute(
                "UPDATE insights_insightquery SET created_at = %s WHERE id = %s", [f"2026-03-02 {created_at}", row.pk]
            )
    now = datetime(2026, 3, 2, 11, tzinfo=UTC)

    frees_in = ratelimit._frees_in(world.globex.pk, used=2, limit=1, oldest=None, now=now, window_seconds=3600)

    assert frees_in == 45 * 60


@pytest.mark.skipif(connections["default"].vendor != "postgresql", reason="PostgreSQL's isolation levels")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_a_server_defaulting_to_another_isolation_level_still_lets_no_query_past_the_limit(world, isolation):
    # The decision counts after it holds the organisation's lock, which only READ COMMITTED sees afresh: under
    # REPEATABLE READ its snapshot is taken before it waits for the lock, and it missed the query committed by the
    # decision it waited for. A server (ALTER DATABASE … SET default_transaction_isolation) may default to either;
    # the limit must hold, or be enforced, whatever it says. Another connection holds the lock and counts one query.
    connections["default"].close()  # a connection of its own, as one to such a server would be
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SET default_transaction_isolation = '{isolation}'")
    locked = threading.Event()

    def decide_first() -> None:
        try:
            with transaction.atomic():
                Organisation.objects.select_for_update().filter(pk=world.globex.pk).values_list("pk").get()
                InsightQuery.objects.create(organisation=world.globex, key_source="platform", query="first")
                locked.set()
                time.sleep(0.5)  # the decision below is waiting for this lock by now
        finally:
            connections["default"].close()

    first = threading.Thread(target=decide_first)
    first.start()
    try:
        assert locked.wait(10)
        with pytest.raises(ratelimit.RateLimited):
            ratelimit.acquire(
                org=world.globex, limit=1, window_seconds=3600, row={"key_source": "platform", "query": "q"}
            )
    finally:
        first.join()
        connections["default"].close()  # the session's default goes with it

    assert InsightQuery.objects.count() == 1


@pytest.mark.skipif(connections["default"].vendor != "postgresql", reason="PostgreSQL's isolation levels")
@pytest.mark.django_db(transaction=True)
def test_every_transaction_of_the_app_reads_committed_whatever_the_servers_default(world):
    # Other decisions lock a row and then count, as the limiter does: the API token cap, a key write's re-check under
    # the organisation's lock. Each runs in a transaction of its own (transaction.atomic), begun READ COMMITTED by
    # the connection's settings, whatever default the server or role was given.
    connections["default"].close()
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SET default_transaction_isolation = 'repeatable read'")
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "read committed"
    finally:
        connections["default"].close()
