"""Fixtures for the fault and load tests: API and console clients, a stored BYOM key, and real
database faults (a closed port, a terminated backend, a failing insert) instead of patched code."""

import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from tests.clients import closed_port

POSTGRES_ONLY = (
    "needs PostgreSQL: a closed port or a terminated backend is a database-server fault; SQLite has no server"
)

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason=POSTGRES_ONLY)


@contextmanager
def database_unreachable():
    """Point the default connection at a closed port, as if PostgreSQL had gone away.

    Every query in the block raises OperationalError from the real driver. Needs a transactional
    test: the test's own connection is closed on the way in and reopened on the way out.
    """
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = closed_port()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original


def pg_admin_connection() -> psycopg.Connection:
    """A second, independent connection to the test database (to terminate the app's backend)."""
    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"] or None,
        port=s["PORT"] or None,
        user=s["USER"] or None,
        password=s["PASSWORD"] or None,
        dbname=s["NAME"],
        autocommit=True,
    )


def wait_for_lock_waiters(cursor, count: int) -> None:
    """Until `count` other connections to this database wait for a lock (PostgreSQL)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees its first snapshot
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if cursor.fetchone()[0] >= count:
            return
        time.sleep(0.05)
    cursor.execute("SELECT state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity")
    pytest.fail(f"{count} connections never waited for a lock together; connections: {cursor.fetchall()}")
