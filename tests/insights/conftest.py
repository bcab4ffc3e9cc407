"""Fixtures for the AI Insights tests: an API client per user, a stored BYOM key, a file SQLite DB.

The race tests need every thread (and a second OS process) to reach the same database. Django's
default SQLite test database is a shared-cache in-memory one, which other processes cannot open
and whose table locks ignore the busy timeout, so unless a test database name was chosen we point
SQLite at a temporary file. This runs at collection time, before pytest-django creates the
database, so it holds for the whole session whichever test directory runs first.
"""

import os
import tempfile

import pytest
from django.conf import settings
from django.test import Client

from orgs import services as org_services
from tests.base import GOOD_KEY

_default_db = settings.DATABASES["default"]
if _default_db["ENGINE"] == "django.db.backends.sqlite3" and not (_default_db.get("TEST") or {}).get("NAME"):
    _default_db.setdefault("TEST", {})["NAME"] = os.path.join(tempfile.mkdtemp(prefix="opsion-test-"), "test.sqlite3")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The shared world creates a dozen users; these tests never check a password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client():
    """`api_client(user)`: a client authenticated by a fresh personal API token, as a script would be."""

    def make(user) -> Client:
        _, raw = org_services.api_token_create(user=user, name="tests")
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
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None
    )
    return GOOD_KEY
