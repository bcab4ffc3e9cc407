"""Shared fixtures: the small world, the fake Anthropic server, clients, and test-wide settings."""

import os
import tempfile
import types
import zlib

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from orgs import mailer
from orgs import services as org_services
from tests import clients
from tests.base import GOOD_KEY
from tests.fake_anthropic import FakeAnthropic

# The race tests need every thread (and a second OS process) to reach the same database. Django's
# default SQLite test database is a shared-cache in-memory one, which other processes cannot open
# and whose table locks ignore the busy timeout, so unless a test database name was chosen SQLite
# uses a temporary file. This runs before pytest-django creates the database.
_default_db = django_settings.DATABASES["default"]
if _default_db["ENGINE"] == "django.db.backends.sqlite3" and not (_default_db.get("TEST") or {}).get("NAME"):
    _default_db.setdefault("TEST", {})["NAME"] = os.path.join(tempfile.mkdtemp(prefix="opsion-test-"), "test.sqlite3")


@pytest.fixture(scope="session")
def _fake_anthropic_server():
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def fake_anthropic(_fake_anthropic_server, settings):
    """The fake Anthropic server, reset, with the app pointed at it and a platform key configured."""
    _fake_anthropic_server.reset()
    settings.ANTHROPIC_BASE_URL = _fake_anthropic_server.base_url
    settings.ANTHROPIC_API_KEY = PLATFORM_KEY
    settings.ANTHROPIC_TIMEOUT_SECONDS = 2.0
    return _fake_anthropic_server


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every world has a dozen users; the production PBKDF2 work factor would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client():
    """`api_client(user)`: a client authenticated by a fresh personal API token, as a script would be."""

    return clients.token_client


@pytest.fixture
def console():
    """`console(user)`: a browser-like client signed in as `user`."""

    return clients.console


@pytest.fixture
def acme_key(world):
    """Acme (Institutional) with GOOD_KEY saved by its Owner."""
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None
    )
    return GOOD_KEY


@pytest.fixture(autouse=True)
def _mail_sent_within_the_test():
    # E-mail is sent on a background thread (orgs.mailer): none may land in the next test's outbox, or be written
    # after this test's settings are restored. A test reading the outbox calls mailer.wait() first.
    yield
    assert mailer.wait(timeout=15), "the mail thread was still sending when the test ended"


@pytest.fixture(autouse=True)
def _clear_cache():
    # django-ratelimit counters live in the cache; every test starts with none.
    cache.clear()
    yield
    cache.clear()


PLATFORM_KEY = "sk-ant-api03-PLATFORM-test-key-0000000000000000000000000000000000"


@pytest.fixture
def mail(settings, mailoutbox):
    """Opsion set up to send mail (EMAIL_URL), into Django's locmem outbox."""
    settings.EMAIL_CONFIGURED = True
    settings.DEFAULT_FROM_EMAIL = "Opsion <no-reply@opsion.example>"
    return mailoutbox


@pytest.fixture
def latest_schema_after():
    """For a test that migrates back: the next tests get the schema the app runs on, not the one it left. Taking an
    app back also takes back every later migration of another app depending on it (insights 0007, the limiter's
    PostgreSQL function, on orgs 0006), which migrating that app forward again does not reapply."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def world(db):
    from tests.base import build_world

    return build_world()


class Clock:
    """django-ratelimit's clock, held still so a test never straddles one of its fixed windows."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def to_second_of_window(self, value: str, period: int, second: int) -> None:
        """Move on to the `second`-th second (0 the first) of a window of `value`'s counters, the next such second
        from now: django-ratelimit's windows of `period` seconds end, for each key value, crc32(value) % period
        seconds past a multiple of the period, that last second still the window's own."""
        now = int(self.now)
        last = now - now % period + zlib.crc32(value.encode()) % period  # the last second of one of its windows
        target = last + 1 + second
        while target < now:
            target += period
        self.advance(target - self.now)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Holds django-ratelimit's clock: a test counting ten attempts then an eleventh never straddles the end of a
    fixed window (each key's falls at its own point), which would start the count again."""
    import django_ratelimit.core

    clock = Clock()
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=clock.time))
    return clock
