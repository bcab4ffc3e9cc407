"""The stop reason of queries answered before it was recorded: filled in as complete, range by range."""

from importlib import import_module

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from insights.models import InsightQuery, KeySource, Outcome

COLUMN_ADDED = ("insights", "0005_insightquery_stop_reason")
FILLED_IN = ("insights", "0006_answered_queries_ended_complete")
backfill = import_module("insights.migrations.0006_answered_queries_ended_complete")


def migrate(target) -> None:
    MigrationExecutor(connection).migrate([target])


def asked(org, *outcomes: str) -> list[int]:
    # The model as it stood then: today's has columns added since.
    model = MigrationExecutor(connection).loader.project_state(COLUMN_ADDED).apps.get_model("insights", "InsightQuery")
    rows = model.objects.bulk_create(
        model(organisation_id=org.pk, key_source=KeySource.PLATFORM, query=f"q{i}", outcome=outcome, stop_reason=None)
        for i, outcome in enumerate(outcomes)
    )
    return [row.pk for row in rows]


@pytest.mark.django_db(transaction=True)
def test_answered_queries_read_complete_in_every_range_and_failed_or_pending_ones_have_none(
    world, monkeypatch, latest_schema_after
):
    monkeypatch.setattr(backfill, "BATCH", 2)  # 7 rows: four ranges, the last one short
    migrate(COLUMN_ADDED)
    answered, failed, pending = Outcome.ANSWERED, Outcome.FAILED, Outcome.PENDING
    pks = asked(world.acme, answered, failed, answered, answered, pending, answered, answered)
    InsightQuery.objects.filter(pk=pks[3]).update(stop_reason="max_tokens")  # recorded by the new code already

    migrate(FILLED_IN)

    assert [InsightQuery.objects.values_list("stop_reason", flat=True).get(pk=pk) for pk in pks] == [
        "complete",
        None,
        "complete",
        "max_tokens",
        None,
        "complete",
        "complete",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_fill_runs_outside_a_transaction_so_no_lock_outlives_its_range(world):
    # In 0005's transaction, PostgreSQL would hold the ALTER TABLE's lock on the whole table for the whole UPDATE.
    migration = MigrationExecutor(connection).loader.get_migration(*FILLED_IN)
    column = MigrationExecutor(connection).loader.get_migration(*COLUMN_ADDED)

    assert migration.atomic is False
    assert not any(op.__class__.__name__ == "RunPython" for op in column.operations)
