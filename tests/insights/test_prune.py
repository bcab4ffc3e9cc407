"""`manage.py prune_insight_queries`: old history goes, the rolling window's rows never do."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from insights import services
from insights.models import InsightQuery, Outcome

from .helpers import seed

DAY = 86400


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_insight_queries", *args, stdout=out)
    return out.getvalue()


def test_it_deletes_queries_older_than_90_days_only(world):
    old = seed(world.globex, 91 * DAY, 200 * DAY)
    kept = seed(world.globex, 89 * DAY, 2 * DAY, 600)
    other_org_old = seed(world.acme, 120 * DAY)

    output = prune("--older-than", "90d")

    assert set(InsightQuery.objects.values_list("pk", flat=True)) == {q.pk for q in kept}
    assert not InsightQuery.objects.filter(pk__in=[q.pk for q in old + other_org_old]).exists()
    assert output.strip() == "Deleted 3 insight queries older than 90d."


def test_the_age_is_echoed_as_read_without_the_spaces_around_it(world):
    seed(world.globex, 91 * DAY)

    assert prune("--older-than", " 90d ").strip() == "Deleted 1 insight query older than 90d."


def test_it_never_deletes_rows_inside_the_window(world):
    inside = seed(world.globex, *[60] * 20, 3500)
    seed(world.globex, 7300)

    prune("--older-than", "0h")

    assert set(InsightQuery.objects.values_list("pk", flat=True)) == {q.pk for q in inside}
    # The limit still holds after pruning: all 20 queries of the last hour still count.
    assert services.usage(world.globex).window.used == 21


def test_an_app_clock_running_ahead_cannot_reach_into_the_window(world, monkeypatch):
    inside = seed(world.globex, 3000, 60)
    ahead = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: ahead)  # this process's clock, not the database's

    prune("--older-than", "1h")

    assert set(InsightQuery.objects.values_list("pk", flat=True)) == {q.pk for q in inside}


def test_it_works_in_batches(world):
    seed(world.globex, *[100 * DAY] * 7)
    seed(world.globex, 10)

    output = prune("--older-than", "12w", "--batch-size", "2")

    assert InsightQuery.objects.count() == 1
    assert output.strip() == "Deleted 7 insight queries older than 12w."


def test_it_defaults_to_90_days(world):
    seed(world.globex, 91 * DAY, 89 * DAY)

    prune()

    assert InsightQuery.objects.count() == 1


@pytest.mark.parametrize("age", ["90", "ninety days", "90m", "-1d", "d"])
def test_it_refuses_an_unclear_age(world, age):
    seed(world.globex, 200 * DAY)

    with pytest.raises(CommandError, match="90d, 12w or 48h"):
        prune(f"--older-than={age}")

    assert InsightQuery.objects.count() == 1


@pytest.mark.parametrize("size", ["0", "-1"])
def test_it_refuses_a_batch_size_that_could_delete_nothing(world, size):
    seed(world.globex, 200 * DAY)

    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        prune("--batch-size", size)

    assert InsightQuery.objects.count() == 1


@pytest.mark.parametrize("age", ["36501d", "99999999999d", "800000d"])
def test_it_refuses_an_age_beyond_a_century_instead_of_crashing(world, age):
    seed(world.globex, 200 * DAY)

    with pytest.raises(CommandError, match="at most 36500d"):
        prune(f"--older-than={age}")

    assert InsightQuery.objects.count() == 1


def test_it_says_when_the_rolling_window_was_applied_instead_of_a_shorter_age(world):
    seed(world.globex, 2 * 3600, 60)

    output = prune("--older-than", "0d")

    assert InsightQuery.objects.count() == 1
    assert output.strip() == (
        "Deleted 1 insight query older than 60 minutes (0d was asked; rows inside the rolling window are never "
        "deleted)."
    )


def test_it_first_records_queries_a_killed_process_left_pending_as_failed(world):
    recent, abandoned = seed(world.globex, 30, 200)
    InsightQuery.objects.update(outcome=Outcome.PENDING, answer="")

    output = prune()

    assert output.splitlines()[0] == "Recorded 1 abandoned insight query as failed (interrupted)."
    recent.refresh_from_db()
    abandoned.refresh_from_db()
    assert recent.outcome == Outcome.PENDING  # may still be being answered
    assert (abandoned.outcome, abandoned.error_code) == (Outcome.FAILED, "interrupted")
