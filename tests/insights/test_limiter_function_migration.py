"""Migration 0010 drops the limiter's function of 0004's signature, which no release since 0007 calls."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the limiter's function is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]

BEFORE = ("insights", "0009_insightquery_idempotency_key_index")
AFTER = ("insights", "0010_drop_the_limiters_function_of_0004")
OURS = "bigint, integer, integer, jsonb, text[], timestamp with time zone"
ITS = "bigint, integer, integer, jsonb"


def signatures() -> set[str]:
    """The argument types of each function of the limiter's name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT oidvectortypes(p.proargtypes) FROM pg_proc AS p WHERE p.proname = 'insights_ratelimit_acquire'"
        )
        return {args for (args,) in cursor.fetchall()}


def test_only_the_function_this_release_calls_is_left():
    assert signatures() == {OURS}


def test_taking_it_back_restores_the_function_processes_on_the_earlier_release_call(latest_schema_after):
    MigrationExecutor(connection).migrate([BEFORE])
    assert signatures() == {OURS, ITS}

    MigrationExecutor(connection).migrate([AFTER])
    assert signatures() == {OURS}
