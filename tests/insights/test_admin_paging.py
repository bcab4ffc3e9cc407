"""Admin's query log pages on a large log: the filters without an index count at most one page past a cap."""

import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from insights.models import InsightQuery, Outcome
from tests.clients import console
from tests.insights.helpers import seed_spread

QUERIES = "/admin/insights/insightquery/"
CAP = 1_000  # ten pages of 100


@pytest.fixture
def staff(world):
    return console(world.staff)


def failed(world, count: int) -> None:
    seed_spread(world.acme, count, oldest=30 * 86400)
    InsightQuery.objects.update(outcome=Outcome.FAILED, error_code="insights_unavailable", stop_reason=None, answer="")


def text(response) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split()))


def page_links(response) -> list[int]:
    paginator = response.content.decode().split('<p class="paginator">')[1].split("</p>")[0]
    return [int(n) for n in re.findall(r">\s*(\d+)\s*<", paginator)]


def counts(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "insights_insightquery" in q["sql"]]


def test_a_large_list_filtered_by_outcome_counts_one_row_past_the_cap_and_says_more_than(world, staff):
    failed(world, CAP + 250)

    with CaptureQueriesContext(connection) as queries:
        first = staff.get(QUERIES, {"outcome__exact": "failed"})

    (count,) = counts(queries)
    assert f"LIMIT {CAP + 1}" in count  # before: a count of every failed query, reading the whole table
    assert f"More than {CAP} insight queries" in text(first)
    assert f"More than {CAP} results" in text(first)  # beside the search box, in the same words
    assert f"Select all more than {CAP} insight queries" in text(first)
    assert page_links(first)[-1] == CAP // 100 + 1  # the page holding the row past the cap
    assert len(first.context["cl"].result_list) == 100


def test_staff_page_past_the_cap_to_the_last_page_which_counts_exactly(world, staff):
    failed(world, CAP + 250)
    oldest = list(InsightQuery.objects.order_by("id").values_list("id", flat=True)[:50])

    eleventh = staff.get(QUERIES, {"outcome__exact": "failed", "p": CAP // 100 + 1})
    twelfth = staff.get(QUERIES, {"outcome__exact": "failed", "p": CAP // 100 + 2})
    last = staff.get(QUERIES, {"outcome__exact": "failed", "p": CAP // 100 + 3})
    beyond = staff.get(QUERIES, {"outcome__exact": "failed", "p": CAP // 100 + 4})

    assert eleventh.status_code == twelfth.status_code == last.status_code == 200
    assert page_links(eleventh)[-1] == CAP // 100 + 2 and page_links(twelfth)[-1] == CAP // 100 + 3
    assert f"More than {CAP + 200} insight queries" in text(twelfth)  # its own page counted whole
    assert sorted(row.pk for row in last.context["cl"].result_list) == oldest
    assert f"{CAP + 250} insight queries" in text(last) and "More than" not in text(last)
    assert beyond.status_code == 302 and beyond["Location"].endswith("?e=1")  # the stock answer to a page past the end


@pytest.mark.parametrize("filtered", [{"key_source__exact": "platform"}, {"stop_reason__exact": "complete"}])
def test_the_key_and_ended_filters_cap_their_count_too(world, staff, filtered):
    seed_spread(world.acme, CAP + 1, oldest=30 * 86400)

    with CaptureQueriesContext(connection) as queries:
        response = staff.get(QUERIES, filtered)

    assert f"LIMIT {CAP + 1}" in counts(queries)[0]
    assert f"More than {CAP} insight queries" in text(response)


@pytest.mark.parametrize(
    "filtered",
    [
        {},  # the whole log: counted by an index, and its total is worth knowing
        {"error_code__exact": "insights_unavailable"},  # counted by its own index
        {"outcome__exact": "failed", "error_code__exact": "insights_unavailable"},
        {"outcome__exact": "failed", "q": "acme"},
    ],
)
def test_lists_counted_by_an_index_or_searched_keep_their_exact_count(world, staff, filtered):
    failed(world, CAP + 1)

    with CaptureQueriesContext(connection) as queries:
        response = staff.get(QUERIES, filtered)

    assert "LIMIT" not in counts(queries)[0]
    assert f"{CAP + 1} insight queries" in text(response) and "More than" not in text(response)


@pytest.mark.parametrize("count, label", [(3, "3 insight queries"), (CAP, f"{CAP} insight queries")])
def test_a_filtered_list_up_to_the_cap_says_its_exact_count_as_before(world, staff, count, label):
    failed(world, count)

    response = staff.get(QUERIES, {"outcome__exact": "failed"})

    assert label in text(response) and "More than" not in text(response)
    assert f"Select all {count} insight queries" in text(response) or count <= 100
    assert len(response.context["cl"].result_list) == min(count, 100)
    if count > 100:
        assert page_links(response)[-1] == count // 100


def test_select_all_past_the_cap_still_acts_on_every_filtered_query(world, staff):
    failed(world, CAP + 5)
    InsightQuery.objects.update(created_at=InsightQuery.objects.order_by("created_at").first().created_at)  # old

    response = staff.post(
        QUERIES + "?outcome__exact=failed",
        {"action": "delete_selected", "select_across": "1", "index": "0", "_selected_action": ["1"]},
    )

    assert f"Insight queries: {CAP + 5}" in text(response)  # the confirmation's summary: the count is not capped


@pytest.mark.parametrize(
    "extra",
    [{"q": ""}, {"_facets": "True"}, {"o": "1"}, {"p": "2"}],
    ids=["empty-search", "facets", "sorted", "paged"],
)
def test_a_list_filtered_by_outcome_alone_is_capped_whatever_else_its_address_says(world, staff, extra):
    # The search form sends `q=` with its box empty; facets' counts, a sort or a page filter nothing more: the list
    # is still one filtered by outcome alone, which only a capped count keeps from reading the whole log.
    failed(world, CAP + 1)

    response = staff.get(QUERIES, {"outcome__exact": "failed", **extra})

    assert response.status_code == 200
    assert f"More than {CAP} insight queries" in text(response)
