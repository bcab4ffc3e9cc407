"""An Owner saves their key while `manage.py rotate_encryption_keys` runs.

The rotation locks each key row only for its batch, so a save of a key whose batch has committed goes through at
once instead of waiting for the whole run (40 to 90 s for 30,000 keys when it was one transaction), and keeps its
new value. PostgreSQL only: SQLite serialises every write transaction (BEGIN IMMEDIATE), so there a save waits for
the batch in progress, whatever rows it holds.
"""

import io
import threading

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection, connections

from orgs import services
from orgs.models import ClaudeApiKey, Organisation, Plan
from tests.base import GOOD_KEY, OTHER_KEY
from tests.orgs.helpers import store_key

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: only there do two write transactions run at once; SQLite serialises them",
    ),
    pytest.mark.django_db(transaction=True),
]


def saving_in_another_connection(membership) -> tuple[threading.Thread, threading.Event]:
    """A thread (not started) in which `membership` saves OTHER_KEY on its own connection, and the event it sets once
    the save has committed."""
    saved = threading.Event()

    def saves() -> None:
        try:
            services.claude_api_key_set(membership=membership, raw_key=OTHER_KEY, ip=None)
            saved.set()
        finally:
            connections.close_all()

    return threading.Thread(target=saves), saved


def test_a_key_saved_while_a_later_batch_runs_goes_through_at_once_and_is_kept(world, settings):
    store_key(world.acme, GOOD_KEY)  # the first row, so in the first batch
    for slug in ["b-org", "c-org", "d-org"]:
        store_key(Organisation.objects.create(slug=slug, name=slug, plan=Plan.INSTITUTIONAL), GOOD_KEY)
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    owner, saved = saving_in_another_connection(world.membership(world.acme_admin, world.acme))
    updates, saved_during_the_run = 0, []

    def hook(execute, sql, params, many, context):
        # At the third key re-encrypted (the second batch's first), with that batch's rows locked, acme's key is
        # saved from another connection; the rotation waits for it, or for 10 s if the save cannot get through.
        nonlocal updates
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith('UPDATE "ORGS_CLAUDEAPIKEY"'):
            updates += 1
            if updates == 3:
                owner.start()
                saved_during_the_run.append(saved.wait(timeout=10))
        return result

    with connection.execute_wrapper(hook):
        call_command("rotate_encryption_keys", "--batch-size", "2", stdout=io.StringIO())
    owner.join(timeout=30)

    assert saved_during_the_run == [True]  # when the whole run held every row, it got through only after it
    assert updates == 4  # each of the four keys re-encrypted once
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert ClaudeApiKey.objects.get(organisation=world.acme).secret.reveal() == OTHER_KEY
    assert {row.secret.reveal() for row in ClaudeApiKey.objects.exclude(organisation=world.acme)} == {GOOD_KEY}


def test_a_key_saved_after_its_batch_read_it_is_never_overwritten_by_the_old_key_re_encrypted(world, settings):
    # The batch reads acme's ciphertext, then an Owner saves a new key from another connection before the batch writes
    # its re-encryption back. Unless the batch locked the rows it read, the save commits at once and the batch then
    # overwrites it with the old key, re-encrypted: the organisation's queries silently run on the key it replaced.
    store_key(world.acme, GOOD_KEY)
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    owner, saved = saving_in_another_connection(world.membership(world.acme_owner, world.acme))
    saved_before_the_batch_wrote = []

    def hook(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not owner.is_alive() and not saved_before_the_batch_wrote and 'FROM "orgs_claudeapikey"' in sql:
            owner.start()
            saved_before_the_batch_wrote.append(saved.wait(timeout=2))
        return result

    with connection.execute_wrapper(hook):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    owner.join(timeout=30)

    assert saved.is_set()
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert ClaudeApiKey.objects.get(organisation=world.acme).secret.reveal() == OTHER_KEY
    assert saved_before_the_batch_wrote == [False]  # the save waited for the batch holding its row
