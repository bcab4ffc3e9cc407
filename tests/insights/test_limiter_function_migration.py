"""The limiter's functions across migrations: 0010 drops 0004's signature, which no release since 0007 calls; 0011 adds
this release's (the asker's membership checked under the lock) beside 0007's, which processes on the previous release
call during a rolling deploy."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the limiter's function is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]

BEFORE = ("insights", "0009_insightquery_idempotency_key_index")
AFTER = ("insights", "0010_drop_the_limiters_function_of_0004")
OURS = "bigint, integer, integer, jsonb, text[], timestamp with time zone, bigint"
PREVIOUS = "bigint, integer, integer, jsonb, text[], timestamp with time zone"  # 0007's
ITS = "bigint, integer, integer, jsonb"  # 0004's


def signatures() -> set[str]:
    """The argument types of each function of the limiter's name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT oidvectortypes(p.proargtypes) FROM pg_proc AS p WHERE p.proname = 'insights_ratelimit_acquire'"
        )
        return {args for (args,) in cursor.fetchall()}


def test_the_function_this_release_calls_is_left_beside_the_previous_releases():
    assert signatures() == {OURS, PREVIOUS}


def test_taking_0010_back_restores_the_function_processes_on_the_earlier_release_call(latest_schema_after):
    MigrationExecutor(connection).migrate([BEFORE])
    assert signatures() == {PREVIOUS, ITS}

    MigrationExecutor(connection).migrate([AFTER])
    assert signatures() == {PREVIOUS}


def test_taking_0011_back_leaves_the_previous_releases_function(latest_schema_after):
    MigrationExecutor(connection).migrate([AFTER])
    assert signatures() == {PREVIOUS}
