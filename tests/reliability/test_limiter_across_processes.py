"""The rolling limit holds across app servers: two gunicorn processes, one PostgreSQL database.

This is how Opsion scales past one machine (many app servers, one database), so the limit must
not live in any one process's memory. Both servers run the real app against the test database
and the fake Anthropic server; the test only speaks HTTP to them. The same real servers show that
one recovers by itself when PostgreSQL drops its persistent connection.
"""

import json
import threading
import urllib.error
import urllib.request

import pytest
from django.db import connection, transaction

from insights.models import InsightQuery
from orgs import services as org_services
from tests.reliability.app_servers import server_environment, servers
from tests.reliability.conftest import pg_admin_connection, wait_for_lock_waiters

LIMIT = 6

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: app servers in separate processes share one database server; "
        "SQLite is the single-process embedded default",
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def server_env(world, fake_anthropic) -> dict:
    return server_environment(fake_anthropic, INSIGHTS_PLATFORM_LIMIT=str(LIMIT))


@pytest.fixture
def two_servers(server_env, tmp_path):
    yield from servers(server_env, tmp_path, 2)


@pytest.fixture
def one_thread_server(server_env, tmp_path):
    """One worker with one thread: every request reuses the same persistent database connection."""
    yield from servers(server_env, tmp_path, 1, threads=1)


def _ask(base_url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310
        f"{base_url}/api/v1/orgs/globex/insights/queries",
        data=json.dumps({"query": "What does MiCAR Article 59 require?"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_two_app_servers_share_one_limit(world, two_servers):
    server_a, server_b = two_servers
    _, token = org_services.api_token_create(user=world.globex_member, name="two servers")

    # Each server sees the queries the other let through.
    for base_url in (server_a, server_a, server_b, server_b):
        assert _ask(base_url, token)[0] == 200

    # Then both race for the last two places: eight requests, four to each server, made to arrive
    # together. While this test holds back every insert into the log (LOCK TABLE … EXCLUSIVE still
    # lets reads through), each request gets as far as the limiter can take it and waits there, so
    # all eight are in flight at the same moment when the lock is released. A limiter that counted
    # before locking would let all eight through here.
    outcomes: list[tuple[int, dict]] = []
    racers = [
        threading.Thread(target=lambda url=url: outcomes.append(_ask(url, token))) for url in [server_a, server_b] * 4
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {InsightQuery._meta.db_table} IN EXCLUSIVE MODE")
        for racer in racers:
            racer.start()
        wait_for_lock_waiters(cursor, 8)
    for racer in racers:
        racer.join(timeout=60)

    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [200, 200, 429, 429, 429, 429, 429, 429], outcomes
    assert {body["error"]["code"] for status, body in outcomes if status == 429} == {"rate_limited"}
    assert [_ask(url, token)[0] for url in (server_a, server_b)] == [429, 429]
    assert InsightQuery.objects.filter(organisation=world.globex).count() == LIMIT


def test_a_server_reconnects_by_itself_after_postgresql_dropped_its_connection(world, one_thread_server):
    # A database restart or failover drops every connection. The next request must get a fresh one
    # (CONN_HEALTH_CHECKS), not fail on the dead persistent one.
    (server,) = one_thread_server
    _, token = org_services.api_token_create(user=world.globex_member, name="reconnect")
    assert _ask(server, token)[0] == 200  # the server now holds a persistent connection
    connection.ensure_connection()
    with pg_admin_connection() as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid NOT IN (pg_backend_pid(), %s)",
            [connection.connection.info.backend_pid],
        ).fetchone()[0]

    status, body = _ask(server, token)

    assert dropped >= 1
    assert status == 200, body
