"""The stored key's ciphertext stays in the database: no error page, error report or log line prints it.

It opens with any FIELD_ENCRYPTION_KEYS entry, so a copy in a developer's error page, a ticket's screenshot or a log
shipped elsewhere is the key itself to whoever later learns an encryption key (a leaked `.env`, an old backup)."""

import logging

from django.db import IntegrityError, connection
from django.test import Client

from orgs.models import ClaudeApiKey
from tests.base import CANARY_KEY, GOOD_KEY


def _refuse_key_writes(execute, sql, params, many, context):
    """The database refusing the key row's write (a constraint, a disk quota), after the value was encrypted."""
    if "orgs_claudeapikey" in sql and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
        raise IntegrityError("the database refused the write")
    return execute(sql, params, many, context)


def _stored_ciphertext(world) -> str:
    return ClaudeApiKey.objects.get(organisation=world.acme).secret.ciphertext


def test_the_ciphertext_is_in_no_error_page_when_saving_the_key_fails_in_the_database(world, acme_key, settings):
    """With DEBUG on, Django's page lists each frame's variables: the SQL's parameters hold the new ciphertext."""
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(world.acme_admin)
    stored = _stored_ciphertext(world)

    with connection.execute_wrapper(_refuse_key_writes):
        response = client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY})

    page = response.content.decode()
    assert response.status_code == 500 and "IntegrityError" in page and "params" in page  # the technical page
    assert "gAAAAA" not in page  # every Fernet token starts so (its version byte, then a timestamp)
    assert CANARY_KEY not in page and CANARY_KEY[13:45] not in page
    assert _stored_ciphertext(world) == stored  # nothing was written


def test_the_ciphertext_is_in_no_log_line_of_the_sql_django_logs_with_debug_on(world, settings, caplog):
    """LOG_LEVEL=DEBUG with DEBUG on (a developer chasing a bug) logs every statement with its parameters."""
    settings.DEBUG = True  # Django logs SQL only then
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    client = Client()
    client.force_login(world.acme_admin)

    response = client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})

    assert response.status_code == 302
    assert "orgs_claudeapikey" in caplog.text  # the statements were logged
    assert _stored_ciphertext(world) not in caplog.text and "gAAAAA" not in caplog.text
