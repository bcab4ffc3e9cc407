"""The window count stays a range scan on an index however long the history grows."""

import pytest
from django.db import connection
from django.db.models import Count, DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from insights.models import InsightQuery

from .helpers import seed


def window_count_sql(org_id: int) -> tuple[str, tuple]:
    from datetime import timedelta

    cutoff = ExpressionWrapper(Now() - timedelta(seconds=3600), output_field=DateTimeField())
    queryset = InsightQuery.objects.filter(organisation_id=org_id, created_at__gt=cutoff).values("organisation_id")
    queryset = queryset.annotate(used=Count("*")).values("used")
    return queryset.query.sql_with_params()


def test_the_table_has_an_index_on_organisation_then_created_at(db):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, InsightQuery._meta.db_table)

    index = constraints["insight_org_created"]
    assert index["index"] is True
    assert index["columns"] == ["organisation_id", "created_at"]


@pytest.mark.parametrize(
    "table, column",
    [
        ("insights_insightquery", "organisation_id"),
        ("orgs_auditevent", "organisation_id"),
        ("orgs_membership", "user_id"),
    ],
)
def test_no_foreign_key_keeps_an_index_a_composite_one_already_leads_with(db, table, column):
    # One index fewer to write on every limiter insert (and every audit event and membership).
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)

    leading = [
        c["columns"] for c in constraints.values() if (c["index"] or c["unique"]) and c["columns"][:1] == [column]
    ]
    assert [column] not in leading and leading, leading


def test_the_window_count_uses_the_index(world):
    # Enough rows across organisations that reading the table would be the planner's worse choice.
    for org in (world.acme, world.globex, world.initech):
        seed(org, *range(60, 60 + 400 * 30, 30))
    org_id = world.globex.pk
    sql, params = window_count_sql(org_id)

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE insights_insightquery")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())

    assert "insight_org_created" in plan, plan
    if connection.vendor == "postgresql":
        assert "Index" in plan and "Seq Scan" not in plan, plan


def test_a_page_after_an_id_starts_at_it_on_the_index(world):
    # Keyset paging reads from the anchor on: the index bounds created_at, rather than walking every newer row
    # and filtering it out (deep pages would cost what offsets do).
    from opsion import paging

    mine = seed(world.globex, *range(60, 60 + 400 * 30, 30), user=world.globex_member)
    seed(world.acme, *range(60, 60 + 400 * 30, 30))
    rows = InsightQuery.objects.filter(organisation=world.globex, user=world.globex_member)
    sql, params = paging.after(rows.order_by("-created_at", "-id"), mine[-5].pk, what="")[:21].query.sql_with_params()

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE insights_insightquery")
            # The plan that reads the member's queries in order, as a long history makes the planner choose: at
            # this size it may as well read them all through the user_id index and sort them (it did, run after
            # test_ratelimit), which says nothing of where an ordered scan starts.
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())

    if connection.vendor == "postgresql":
        assert any("Index Cond" in line and "created_at" in line for line in plan.splitlines()), plan
    else:
        assert "created_at<" in plan.replace(" ", ""), plan


def test_admins_error_code_filter_counts_and_pages_on_the_failed_rows_index(world):
    # Admin's query log filtered by error code counted and paged by reading the whole log (both other indexes lead
    # with the organisation): about a second a page on a 1 M-row log (docs/benchmarks.md).
    from django.test.utils import CaptureQueriesContext

    from tests.clients import console

    for org in (world.acme, world.globex, world.initech):
        seed(org, *range(60, 60 + 1000 * 30, 30))
    failed = seed(world.acme, *range(90, 90 + 20 * 30, 30))
    InsightQuery.objects.filter(pk__in=[row.pk for row in failed]).update(
        outcome="failed", error_code="claude_api_key_invalid", stop_reason=None
    )
    with CaptureQueriesContext(connection) as captured:
        page = console(world.staff).get("/admin/insights/insightquery/?error_code__exact=claude_api_key_invalid")
    assert page.status_code == 200 and "20 insight queries" in page.content.decode()
    filtered = [q["sql"] for q in captured.captured_queries if '"error_code" = ' in q["sql"]]

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, InsightQuery._meta.db_table)
        assert constraints["insight_failed_by_code"]["columns"] == ["error_code", "id"]
        if connection.vendor != "postgresql":
            return  # SQLite cannot tell that one error code implies the index's condition (none is empty)
        cursor.execute("ANALYZE insights_insightquery")
        plans = []
        for sql in filtered:
            cursor.execute("EXPLAIN " + sql)
            plans.append("\n".join(line for (line,) in cursor.fetchall()))

    assert len(plans) == 2, filtered  # the count and the page
    for plan in plans:
        assert "insight_failed_by_code" in plan and "Seq Scan on insights_insightquery" not in plan, plan
