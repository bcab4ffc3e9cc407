"""Keys stored before each was bound to its organisation (orgs 0013): re-encrypted bound, and back again if reversed."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from orgs.models import ClaudeApiKey
from tests.base import CANARY_KEY, GOOD_KEY

UNBOUND = ("orgs", "0012_outbox_prune_indexes")
BOUND = ("orgs", "0013_claude_api_key_bound_to_its_organisation")

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(target) -> None:
    MigrationExecutor(connection).migrate([target])


def stored_unbound(org, key: str, entry: str) -> None:
    """A key as the code before 0013 stored it: encrypted under the entry itself, openable in any organisation's row."""
    ciphertext = Fernet(entry).encrypt(key.encode()).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO orgs_claudeapikey (organisation_id, secret, status, saved_at) VALUES (%s, %s, %s, %s)",
            [org.pk, ciphertext, "unverified", "2026-03-12 08:43:00+00:00"],
        )


def column(org) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM orgs_claudeapikey WHERE organisation_id = %s", [org.pk])
        return cursor.fetchone()[0]


def test_old_rows_are_bound_to_their_organisation_and_a_lost_one_is_left_as_it_was(
    world, settings, latest_schema_after
):
    entry = settings.FIELD_ENCRYPTION_KEYS[0]
    migrate(UNBOUND)
    stored_unbound(world.acme, CANARY_KEY, entry)
    stored_unbound(world.initech, GOOD_KEY, entry)
    stored_unbound(world.globex, GOOD_KEY, Fernet.generate_key().decode())  # an entry dropped too early
    lost = column(world.globex)

    migrate(BOUND)

    keys = {row.organisation.slug: row.secret for row in ClaudeApiKey.objects.select_related("organisation")}
    assert keys["acme"].reveal() == CANARY_KEY and keys["initech"].reveal() == GOOD_KEY
    assert not keys["globex"].readable() and column(world.globex) == lost
    # Bound: initech's ciphertext moved into acme's row no longer opens there.
    ClaudeApiKey.objects.filter(organisation=world.acme).update(secret=keys["initech"])
    assert not ClaudeApiKey.objects.get(organisation=world.acme).secret.readable()


def test_reversed_the_rows_are_openable_by_the_entry_itself_again(world, settings, latest_schema_after):
    entry = settings.FIELD_ENCRYPTION_KEYS[0]
    migrate(UNBOUND)
    stored_unbound(world.acme, CANARY_KEY, entry)
    migrate(BOUND)

    migrate(UNBOUND)

    assert Fernet(entry).decrypt(column(world.acme).encode()).decode() == CANARY_KEY
