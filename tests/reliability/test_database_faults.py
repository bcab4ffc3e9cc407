"""The database failing under a request: a 503 with a JSON error (API) or a plain page (console),
never a traceback, and never half a write (the key and its audit event commit together or not at all).

The faults are real: an insert the database itself refuses, a closed port, a backend terminated
by another connection. Nothing in the app is patched.
"""

import json
import logging

import pytest
from django.db import connection
from django.urls import reverse

from orgs.models import AuditEvent, ClaudeApiKey
from tests.base import GOOD_KEY, OTHER_KEY
from tests.clients import api_put_key
from tests.reliability.conftest import database_unreachable, pg_admin_connection, postgres_only

UNAVAILABLE = "Opsion is temporarily unavailable. Please try again shortly."
LEAKS = ("Traceback", "OperationalError", "InterfaceError", "psycopg", "sqlite", "orgs_auditevent", "audit store")


def assert_json_503(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json()["error"] == {"code": "service_unavailable", "message": UNAVAILABLE}
    assert response["Retry-After"] == "30"  # "shortly", as a client can read it


def assert_page_503(response) -> None:
    assert response.status_code == 503, response.content
    body = response.content.decode()
    assert "Temporarily unavailable" in body and UNAVAILABLE in body
    assert response["Retry-After"] == "30"
    for leak in LEAKS:
        assert leak not in body


def put_key(client, slug: str, key: str):
    return api_put_key(client, slug, {"apiKey": key})


def refuse(event: str, table: str) -> None:
    """Make the database itself refuse every `event` (INSERT, DELETE) on `table` with a connection-class error.
    Schema changes run inside the test's transaction and are rolled back with it."""
    name = f"reliability_{table}_down"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN RAISE EXCEPTION '{table} unreachable' USING ERRCODE = '08006'; END $$"
            )
            cursor.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
        else:
            # SQLite resolves a trigger's tables when it fires: one whose table is gone fails the
            # statement with OperationalError ("no such table"), as a lost database file would.
            cursor.execute("CREATE TABLE reliability_gone (x INTEGER)")
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON {table} BEGIN INSERT INTO reliability_gone VALUES (1); END"
            )
            cursor.execute("DROP TABLE reliability_gone")


@pytest.fixture
def audit_insert_fails(db):
    refuse("INSERT", "orgs_auditevent")


@pytest.mark.parametrize("debug", [False, True])
def test_a_key_save_whose_audit_event_fails_stores_no_key_and_answers_503_json(
    world, api_client, audit_insert_fails, settings, caplog, debug
):
    # With DEBUG on, django-ninja would answer any unhandled exception with a plain-text traceback.
    settings.DEBUG = debug
    client = api_client(world.acme_owner)

    with caplog.at_level(logging.ERROR, logger="opsion"):
        response = put_key(client, "acme", GOOD_KEY)

    assert_json_503(response)
    assert not ClaudeApiKey.objects.filter(organisation=world.acme).exists()
    assert not AuditEvent.objects.exists()
    assert "database unavailable while serving PUT /api/v1/orgs/acme/settings/claude-api-key" in caplog.text
    assert GOOD_KEY not in caplog.text


def test_replacing_a_key_when_the_audit_event_fails_keeps_the_old_key(world, acme_key, console, audit_insert_fails):
    before = ClaudeApiKey.objects.get(organisation=world.acme)

    response = console(world.acme_admin).post(reverse("orgs:byom_save", args=["acme"]), {"api_key": OTHER_KEY})

    assert_page_503(response)
    after = ClaudeApiKey.objects.get(organisation=world.acme)
    assert after.secret == before.secret and after.secret.reveal() == GOOD_KEY
    assert after.saved_by_id == world.acme_owner.pk
    assert AuditEvent.objects.filter(organisation=world.acme).count() == 1  # the original save only


def test_removing_a_key_when_the_audit_event_fails_keeps_it(world, acme_key, api_client, audit_insert_fails):
    response = api_client(world.acme_owner).delete("/api/v1/orgs/acme/settings/claude-api-key")

    assert_json_503(response)
    assert ClaudeApiKey.objects.get(organisation=world.acme).secret.reveal() == GOOD_KEY


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_between_key_and_audit_insert_leaves_neither(world, api_client):
    client = api_client(world.acme_owner)
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def drop_before_audit_insert(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "orgs_auditevent"'):
            # Another connection kills ours while its transaction holds the new key row.
            with pg_admin_connection() as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(drop_before_audit_insert):
            response = put_key(client, "acme", GOOD_KEY)
    finally:
        connection.close()

    assert_json_503(response)
    assert not ClaudeApiKey.objects.exists()
    assert not AuditEvent.objects.exists()


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [False, True])
def test_the_api_answers_503_json_while_postgresql_is_unreachable(world, api_client, settings, caplog, debug):
    settings.DEBUG = debug
    client = api_client(world.acme_member)

    with database_unreachable(), caplog.at_level(logging.ERROR, logger="opsion"):
        settings_response = client.get("/api/v1/orgs/acme/settings")
        query_response = client.post(
            "/api/v1/orgs/acme/insights/queries", data=json.dumps({"query": "Hello?"}), content_type="application/json"
        )

    assert_json_503(settings_response)
    assert_json_503(query_response)
    assert "database unavailable while serving GET /api/v1/orgs/acme/settings" in caplog.text
    # Back up: the same client is served again.
    assert client.get("/api/v1/orgs/acme/settings").status_code == 200


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [False, True])
def test_the_console_shows_a_plain_503_page_while_postgresql_is_unreachable(world, console, settings, debug):
    settings.DEBUG = debug
    client = console(world.acme_owner)

    with database_unreachable():
        settings_page = client.get(reverse("orgs:settings", args=["acme"]))
        insights_page = client.get(reverse("insights:query", args=["acme"]))

    assert_page_503(settings_page)
    assert_page_503(insights_page)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_connection_postgresql_dropped_between_requests_gives_a_503_page_not_a_500(world, console):
    client = console(world.acme_owner)
    connection.ensure_connection()
    with pg_admin_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [connection.connection.info.backend_pid])

    try:
        response = client.get(reverse("orgs:settings", args=["acme"]))
    finally:
        connection.close()

    assert_page_503(response)
    assert client.get(reverse("orgs:settings", args=["acme"])).status_code == 200


@pytest.fixture
def user_delete_fails(db):
    refuse("DELETE", "orgs_user")


def test_staff_deleting_users_when_the_deletion_fails_record_no_removal_in_the_audit_log(
    world, console, user_delete_fails
):
    # The list's bulk action runs outside any transaction of Django's own: the audit events it writes first
    # would otherwise tell acme's Owner that a user was deleted who is still there.
    response = console(world.staff).post(
        "/admin/orgs/user/",
        {"action": "delete_selected", "_selected_action": [world.acme_member.pk], "post": "yes"},
    )

    assert_page_503(response)
    assert world.membership(world.acme_member, world.acme)
    assert not AuditEvent.objects.exists()
