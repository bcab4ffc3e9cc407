"""On SQLite, writes from other connections get in between `rotate_encryption_keys`' batches.

SQLite has one write lock (each batch takes it with BEGIN IMMEDIATE) and no queue for it: a waiting writer polls,
at best every 100 ms, and a run that takes the lock again as soon as it has let go of it is always holding it when
the writer looks. So an Owner's save, and every query's write to the rolling limit, waited for the whole run, not
for one batch, and failed with "database is locked" after 20 s on a long one.
"""

import io
import sqlite3
import threading
import time

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection, connections

from orgs import crypto
from orgs.models import ClaudeApiKey, Organisation, Plan
from tests.base import GOOD_KEY

pytestmark = [
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's single write lock; PostgreSQL locks rows"),
    pytest.mark.django_db(transaction=True),
]

BATCH_HOLDS = 0.1  # seconds each batch holds the write lock (a busy machine, or a larger batch)


def test_a_write_waiting_during_the_run_gets_in_after_one_batch_not_after_the_whole_run(settings):
    Organisation.objects.bulk_create(
        Organisation(slug=f"org-{n}", name=f"Org {n}", plan=Plan.INSTITUTIONAL) for n in range(40)
    )
    ClaudeApiKey.objects.bulk_create(
        ClaudeApiKey(organisation_id=pk, secret=GOOD_KEY) for pk in Organisation.objects.values_list("pk", flat=True)
    )
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), settings.FIELD_ENCRYPTION_KEYS[0]]
    third_batch = threading.Event()
    batches = 0

    def slow_batch(execute, sql, params, many, context):
        # Each batch's read of its key rows, inside its transaction: the lock is held while it sleeps.
        nonlocal batches
        if sql.lstrip().upper().startswith("SELECT") and 'FROM "orgs_claudeapikey"' in sql:
            batches += 1
            if batches == 3:
                third_batch.set()
            time.sleep(BATCH_HOLDS)
        return execute(sql, params, many, context)

    def rotate() -> None:
        try:
            with connection.execute_wrapper(slow_batch):
                call_command("rotate_encryption_keys", "--batch-size", "2", stdout=io.StringIO())
        finally:
            connections.close_all()

    rotation = threading.Thread(target=rotate)
    rotation.start()
    assert third_batch.wait(timeout=10)
    writer = sqlite3.connect(connection.settings_dict["NAME"], timeout=20, isolation_level=None)
    try:
        asked = time.monotonic()
        writer.execute("BEGIN IMMEDIATE")
        waited = time.monotonic() - asked
        still_rotating = rotation.is_alive()
        writer.execute("COMMIT")
    finally:
        writer.close()
    rotation.join(timeout=60)

    assert batches == 21  # twenty batches of two, and the read that finds no row left
    assert still_rotating, "the write got in only once the run was over"
    assert waited < 5 * BATCH_HOLDS, f"waited {waited:.2f} s"
    assert ClaudeApiKey.objects.count() == 40
    assert all(
        crypto.is_current(row.secret.ciphertext, organisation_id=row.organisation_id)
        for row in ClaudeApiKey.objects.all()
    )
