"""Two new tokens created at once by a user holding 19: exactly one gets through the cap of 20.

Both creations are held at the database's lock (PostgreSQL: the user's row, locked by another connection; SQLite:
the write lock, taken by another connection's BEGIN IMMEDIATE) until both have started, then let go together. A
cap counted outside the lock lets both count 19 and both insert."""

import sqlite3
import threading
import time

import pytest
from django.db import connection, connections

from orgs import services
from orgs.models import ApiToken
from tests.reliability.conftest import pg_admin_connection, wait_for_lock_waiters

pytestmark = pytest.mark.django_db(transaction=True)

RACERS = 2


def create_at_once(user) -> list[str]:
    outcomes: list[str] = []
    started = threading.Barrier(RACERS + 1)

    def create(n: int) -> None:
        try:
            started.wait()
            services.api_token_create(user=user, name=f"racer {n}")
            outcomes.append("created")
        except services.TooManyTokens:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(RACERS)]
    with _database_held(user):
        for thread in threads:
            thread.start()
        started.wait()
        _until_both_wait()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


class _database_held:
    """Another connection holds the lock a token creation needs until the block ends."""

    def __init__(self, user) -> None:
        self.user = user

    def __enter__(self):
        if connection.vendor == "postgresql":
            self.holder = pg_admin_connection()
            self.holder.autocommit = False
            self.holder.execute("SELECT id FROM orgs_user WHERE id = %s FOR UPDATE", [self.user.pk])
        else:
            self.holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc) -> None:
        self.holder.rollback()
        self.holder.close()


def _until_both_wait() -> None:
    if connection.vendor == "postgresql":
        with pg_admin_connection() as watcher, watcher.cursor() as cursor:
            wait_for_lock_waiters(cursor, RACERS)
    else:
        # SQLite says nothing of who waits on its lock. Both threads are past the barrier, a few statements from it:
        # half a second is ample for each to reach the lock (or, without one, to have counted 19 already).
        time.sleep(0.5)


def test_two_creations_at_nineteen_tokens_make_one_and_refuse_the_other(world):
    for n in range(19):
        services.api_token_create(user=world.acme_admin, name=f"t{n}")

    outcomes = create_at_once(world.acme_admin)

    assert sorted(outcomes) == ["created", "refused"]
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 20
