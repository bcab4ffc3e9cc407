"""A query that arrives while the organisation's key or plan, or its asker's membership, is being changed is decided
on the change.

A key write (a member's save or removal) and staff's change form in admin hold the organisation row until they
commit; a query's decision waits for that row (PostgreSQL's row lock; on SQLite, BEGIN IMMEDIATE waits for the
writer). The query read the organisation's plan and key before it waited: once the change commits, it must be
counted under the limit now in force and sent with the key now in force, never the one that was just removed
or stopped being used; and someone removed from the organisation (or deactivated) as it waited is answered as any
non-member is, nothing counted, stored or asked.
"""

import json
import sqlite3
import threading

import pytest
from django.db import connection, connections

from insights import keys
from insights.models import InsightQuery, KeySource
from orgs import crypto
from tests.base import GOOD_KEY, OTHER_KEY
from tests.clients import console
from tests.conftest import PLATFORM_KEY
from tests.insights.helpers import seed
from tests.orgs.helpers import store_key
from tests.reliability.conftest import pg_admin_connection, wait_for_lock_waiters

pytestmark = pytest.mark.django_db(transaction=True)

QUERIES = "/api/v1/orgs/{}/insights/queries"


def _ask_the_api(client, org):
    return client.post(QUERIES.format(org.slug), {"query": "What is MiCAR?"}, content_type="application/json")


def _asked_while(org, user, statement: str, monkeypatch, ask=_ask_the_api) -> tuple:
    """The response to `user`'s query (`ask`) arriving while another transaction holds `org`'s row, and each source
    of the key it chose: it reads the plan and key, waits for the row, then `statement` runs in that transaction,
    which commits."""
    client = console(user)  # the session: a token's first use writes its last_used_at, which on SQLite waits too
    outcome = {}
    key_reads = []
    read = threading.Event()
    resolve = keys.resolve

    def resolve_and_tell(org_):  # a spy: the real choice, and word that it was made
        choice = resolve(org_)
        key_reads.append(choice.source)
        read.set()
        return choice

    monkeypatch.setattr(keys, "resolve", resolve_and_tell)

    def asking_thread() -> None:
        try:
            outcome["response"] = ask(client, org)
        finally:
            connections.close_all()

    if connection.vendor == "postgresql":
        with pg_admin_connection() as other, pg_admin_connection() as watcher:
            other.autocommit = False
            with other.cursor() as cursor:
                cursor.execute("UPDATE orgs_organisation SET name = name WHERE id = %s", [org.pk])
                asking = threading.Thread(target=asking_thread)
                asking.start()
                with watcher.cursor() as watching:
                    wait_for_lock_waiters(watching, 1)  # the query's decision waits for the organisation row
                cursor.execute(statement, {"org": org.pk})
            other.commit()
            asking.join(timeout=30)
    else:
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=20)
        try:
            other.execute("BEGIN IMMEDIATE")  # the write lock every decision takes first
            other.execute("UPDATE orgs_organisation SET name = name WHERE id = ?", [org.pk])
            asking = threading.Thread(target=asking_thread)
            asking.start()
            # SQLite shows no lock waiters: once the query has read the plan and key (readers never wait), it can
            # only go on to wait for the write lock this transaction holds.
            assert read.wait(timeout=20), "the query never read its organisation's key"
            other.execute(statement.replace("%(org)s", "?"), [org.pk])
            other.execute("COMMIT")
            asking.join(timeout=30)
        finally:
            other.close()
    return outcome.get("response"), key_reads


def _asked_while_changed(org, user, statement: str, monkeypatch) -> tuple[int, dict]:
    """The status and body of `user`'s query arriving as `statement` changes `org` (see _asked_while). The query must
    then choose its key again: a second reading of it is asserted, so the race is proved to have happened."""
    response, key_reads = _asked_while(org, user, statement, monkeypatch)
    assert len(key_reads) == 2, key_reads  # read before the change committed, and again after it
    return response.status_code, json.loads(response.content)


def test_a_query_waiting_while_the_plan_is_downgraded_is_counted_at_the_platform_limit(
    world, fake_anthropic, monkeypatch
):
    store_key(world.acme, GOOD_KEY)
    seed(world.acme, *[60] * 25, source=KeySource.ORGANISATION)  # within 200, over the platform key's 20

    status, body = _asked_while_changed(
        world.acme,
        world.acme_member,
        "UPDATE orgs_organisation SET plan = 'professional' WHERE id = %(org)s",
        monkeypatch,
    )

    assert status == 429, body
    assert body["error"]["code"] == "rate_limited" and "(20/hour)" in body["error"]["message"]
    assert InsightQuery.objects.filter(organisation=world.acme).count() == 25
    assert fake_anthropic.keys_used == []  # the key the plan no longer uses was not sent to Anthropic


def test_a_query_waiting_while_the_key_is_removed_runs_on_the_platform_key(world, fake_anthropic, monkeypatch):
    store_key(world.acme, GOOD_KEY)
    seed(world.acme, *[60] * 5, source=KeySource.ORGANISATION)

    status, body = _asked_while_changed(
        world.acme, world.acme_member, "DELETE FROM orgs_claudeapikey WHERE organisation_id = %(org)s", monkeypatch
    )

    assert status == 200, body
    assert body["keySource"] == KeySource.PLATFORM and body["rateLimit"]["limit"] == 20
    assert fake_anthropic.keys_used == [PLATFORM_KEY]  # never the key removed before the query was decided


def test_a_query_waiting_while_the_plan_is_upgraded_runs_on_the_stored_key_at_its_limit(
    world, fake_anthropic, monkeypatch
):
    store_key(world.globex, GOOD_KEY)  # left behind by an earlier downgrade: unused on Professional
    seed(world.globex, *[60] * 25)

    status, body = _asked_while_changed(
        world.globex,
        world.globex_member,
        "UPDATE orgs_organisation SET plan = 'institutional' WHERE id = %(org)s",
        monkeypatch,
    )

    assert status == 200, body
    assert body["keySource"] == KeySource.ORGANISATION and body["rateLimit"]["limit"] == 200
    assert fake_anthropic.keys_used == [GOOD_KEY]


def test_a_query_waiting_while_the_key_is_replaced_is_sent_with_the_new_key(world, fake_anthropic, monkeypatch):
    # The same plan and a key stored before and after: only which save of the key is in force tells them apart.
    store_key(world.acme, GOOD_KEY)
    replaced = "UPDATE orgs_claudeapikey SET secret = '{}', saved_at = {} WHERE organisation_id = %(org)s".format(
        crypto.encrypt(OTHER_KEY, organisation_id=world.acme.pk),
        "clock_timestamp()" if connection.vendor == "postgresql" else "STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')",
    )

    status, body = _asked_while_changed(world.acme, world.acme_member, replaced, monkeypatch)

    assert status == 200, body
    assert body["keySource"] == KeySource.ORGANISATION
    assert fake_anthropic.keys_used == [OTHER_KEY]  # never the key replaced before the query was decided


def test_a_query_waiting_while_its_member_is_removed_is_answered_as_a_non_members(world, fake_anthropic, monkeypatch):
    store_key(world.acme, GOOD_KEY)
    removal = f"DELETE FROM orgs_membership WHERE organisation_id = %(org)s AND user_id = {world.acme_member.pk}"

    response, key_reads = _asked_while(world.acme, world.acme_member, removal, monkeypatch)

    assert key_reads == [KeySource.ORGANISATION]  # read once, before the removal committed
    outsiders = console(world.globex_owner).post(
        QUERIES.format(world.acme.slug), {"query": "What is MiCAR?"}, content_type="application/json"
    )
    assert response.status_code == outsiders.status_code == 404
    body, outsiders_body = json.loads(response.content), json.loads(outsiders.content)
    assert body["error"] == outsiders_body["error"] == {"code": "not_found", "message": "Not found."}
    assert not any(name.lower().startswith("ratelimit") for name in response.headers)  # a member's fields
    assert InsightQuery.objects.filter(organisation=world.acme).count() == 0  # nothing counted or stored
    assert fake_anthropic.keys_used == []  # nor asked, on the organisation's key or any other


def test_a_query_waiting_while_its_user_is_deactivated_is_answered_as_a_non_members(world, fake_anthropic, monkeypatch):
    deactivation = (
        f"UPDATE orgs_user SET is_active = (1 = 0) WHERE id = {world.globex_member.pk}"
        " AND id IN (SELECT user_id FROM orgs_membership WHERE organisation_id = %(org)s)"
    )

    response, key_reads = _asked_while(world.globex, world.globex_member, deactivation, monkeypatch)

    assert key_reads == [KeySource.PLATFORM]
    assert response.status_code == 404, response.content
    assert json.loads(response.content)["error"]["code"] == "not_found"
    assert InsightQuery.objects.filter(organisation=world.globex).count() == 0
    assert fake_anthropic.keys_used == []


def test_a_console_question_waiting_while_its_member_is_removed_gets_the_non_members_page(
    world, fake_anthropic, monkeypatch
):
    removal = f"DELETE FROM orgs_membership WHERE organisation_id = %(org)s AND user_id = {world.acme_member.pk}"

    def ask_on_the_page(client, org):
        return client.post(f"/orgs/{org.slug}/insights/", {"query": "What is MiCAR?", "once": "a1b2c3"})

    response, key_reads = _asked_while(world.acme, world.acme_member, removal, monkeypatch, ask=ask_on_the_page)

    assert len(key_reads) == 1
    outsiders = console(world.globex_owner).post(f"/orgs/{world.acme.slug}/insights/", {"query": "What is MiCAR?"})
    assert response.status_code == outsiders.status_code == 404
    # The same page, but for the request's own reference: nothing of the organisation or its window.
    page, outsiders_page = (r.content.replace(r["X-Request-ID"].encode(), b"") for r in (response, outsiders))
    assert page == outsiders_page
    assert InsightQuery.objects.filter(organisation=world.acme).count() == 0
    assert fake_anthropic.keys_used == []
