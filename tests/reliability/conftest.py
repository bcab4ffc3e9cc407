"""Fixtures for the fault and load tests: API and console clients, a stored BYOM key, and real
database faults (a closed port, a terminated backend, a failing insert) instead of patched code."""

import socket
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.test import Client

from orgs import services as org_services
from tests.base import GOOD_KEY

POSTGRES_ONLY = (
    "needs PostgreSQL: a closed port or a terminated backend is a database-server fault; SQLite has no server"
)

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason=POSTGRES_ONLY)


def closed_port() -> int:
    """A local TCP port with nothing listening on it: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The world signs up ten people; a deliberately slow hasher is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client():
    """`api_client(user)`: a client authenticated by a fresh personal API token, as a script would be."""

    def make(user) -> Client:
        _, raw = org_services.api_token_create(user=user, name="reliability tests")
        return Client(headers={"Authorization": f"Bearer {raw}"})

    return make


@pytest.fixture
def console():
    """`console(user)`: a browser-like client signed in as `user`."""

    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def acme_key(world):
    """Acme (Institutional) with GOOD_KEY saved by its Owner."""
    membership = world.membership(world.acme_owner, world.acme)
    org_services.claude_api_key_set(membership=membership, raw_key=GOOD_KEY, ip=None)
    return GOOD_KEY
