"""The rolling limit is exact under concurrency: 50 threads and a second OS process race for the last
few queries of an organisation's window, and exactly that many get through and leave a row.

Each thread has its own database connection (closed when it ends) and the second process connects
to the same test database through DATABASE_URL, as another app server would. On PostgreSQL the
organisation row lock serialises the decisions; on SQLite BEGIN IMMEDIATE does, against a file
database (see conftest.py), and no attempt may fail with "database is locked".
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from insights.models import InsightQuery, KeySource, Outcome
from tests.base import GOOD_KEY
from tests.conftest import PLATFORM_KEY

from .helpers import seed, seed_spread
from .race_worker import attempt, load_membership

THREADS = 50
PROCESS_ATTEMPTS = 10

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(fake_anthropic, settings):
    # The machine may be busy with 60 threads and two processes: give the few answers time to arrive.
    settings.ANTHROPIC_TIMEOUT_SECONDS = 30.0
    return fake_anthropic


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_second_process(membership_id: int, fake, stderr, idempotency_key: str | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ANTHROPIC_API_KEY": settings.ANTHROPIC_API_KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "ANTHROPIC_TIMEOUT_SECONDS": str(settings.ANTHROPIC_TIMEOUT_SECONDS),
        "INSIGHTS_PLATFORM_LIMIT": str(settings.INSIGHTS_PLATFORM_LIMIT),
        "INSIGHTS_BYOM_LIMIT": str(settings.INSIGHTS_BYOM_LIMIT),
        "INSIGHTS_WINDOW_SECONDS": str(settings.INSIGHTS_WINDOW_SECONDS),
        "OPSION_READ_DOTENV": "0",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("TEST_DATABASE_NAME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.insights.race_worker", str(membership_id), str(PROCESS_ATTEMPTS)]
        + ([idempotency_key] if idempotency_key else []),
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def race(memberships: list, fake, idempotency_key: str | None = None) -> list[str]:
    """Fire THREADS threads here and PROCESS_ATTEMPTS in a second process at once, each with `idempotency_key` if
    given; every outcome."""
    results: list[str] = []
    ready = threading.Barrier(THREADS + 1, timeout=120)

    def fire(membership_id: int) -> None:
        try:
            membership = load_membership(membership_id)  # opens this thread's own connection
            ready.wait()
            results.append(attempt(membership, idempotency_key))
        except Exception as exc:
            results.append(f"error in thread: {type(exc).__name__}: {exc}")
        finally:
            connection.close()

    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = start_second_process(memberships[0].pk, fake, stderr, idempotency_key)
        try:
            threads = [
                threading.Thread(target=fire, args=(memberships[i % len(memberships)].pk,)) for i in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            assert process.stdout.readline().strip() == "ready", _stderr(stderr)
            # The other process first: it takes a pipe read to wake, so signalled after our own threads it
            # would mostly find the race already run, and the processes would not really compete.
            process.stdin.write("go\n")
            process.stdin.flush()
            ready.wait()
            for thread in threads:
                thread.join(120)
            out, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, _stderr(stderr)
        from_process = json.loads(out.strip().splitlines()[-1])
    assert len(results) == THREADS
    assert len(from_process) == PROCESS_ATTEMPTS
    return results + from_process


def _stderr(handle) -> str:
    handle.seek(0)
    return handle.read()[-3000:]


def assert_exactly(outcomes: list[str], allowed: int) -> None:
    errors = [o for o in outcomes if o not in ("ok", "limited")]
    assert errors == [], errors[:5]
    assert outcomes.count("ok") == allowed
    assert outcomes.count("limited") == len(outcomes) - allowed


def org_members(world, org) -> list:
    return list(org.memberships.order_by("pk"))


def test_with_3_queries_left_exactly_3_of_60_concurrent_queries_get_through(world, fake, settings):
    settings.INSIGHTS_PLATFORM_LIMIT = 3
    seed(world.globex, 3700, 5000, 7000)  # outside the window: must not count
    seed(world.acme, 60, 120)  # another organisation's window: must not count either

    outcomes = race(org_members(world, world.globex), fake)

    assert_exactly(outcomes, 3)
    added = InsightQuery.objects.filter(organisation=world.globex, query__startswith="What does MiCAR")
    assert added.count() == 3
    assert set(added.values_list("outcome", flat=True)) == {Outcome.ANSWERED}
    assert fake.keys_used == [PLATFORM_KEY] * 3


def test_at_the_platform_boundary_exactly_the_last_3_of_20_get_through(world, fake):
    seed_spread(world.globex, 17, oldest=3000, newest=60)
    seed(world.globex, 3650, 3700)

    outcomes = race(org_members(world, world.globex), fake)

    assert_exactly(outcomes, 3)
    assert InsightQuery.objects.filter(organisation=world.globex).count() == 17 + 2 + 3
    assert fake.keys_used == [PLATFORM_KEY] * 3


def test_at_the_byom_boundary_exactly_the_last_3_of_200_get_through(world, fake, acme_key):
    seed_spread(world.acme, 197, oldest=3000, newest=60, source=KeySource.ORGANISATION)

    outcomes = race(org_members(world, world.acme), fake)

    assert_exactly(outcomes, 3)
    added = InsightQuery.objects.filter(organisation=world.acme, query__startswith="What does MiCAR")
    assert added.count() == 3
    assert set(added.values_list("key_source", flat=True)) == {KeySource.ORGANISATION}
    assert fake.keys_used == [GOOD_KEY] * 3


def test_60_concurrent_retries_with_one_idempotency_key_ask_once(world, fake):
    # One member's retries racing from threads here and from another process: the unique index lets one query in, and
    # every other is given it (the API's 409 while it is answered, its answer after), nothing else counted or sent.
    member = world.membership(world.globex_member, world.globex)

    outcomes = race([member], fake, idempotency_key="0b6c2f4e-retried-everywhere")

    assert [o for o in outcomes if o not in ("ok", "asked before")] == []
    assert outcomes.count("ok") == 1
    assert InsightQuery.objects.filter(organisation=world.globex).count() == 1
    assert fake.keys_used == [PLATFORM_KEY]
