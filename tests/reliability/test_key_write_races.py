"""Staff change a membership or a plan in Django admin while a member's key save is under way.

Admin's change form writes the organisation row, then its membership inline, in one transaction. A
member's save that arrives in between must wait for it and then be judged on what it committed:
refused when the member was removed or demoted or the plan lost BYOM, never saved on the strength of
a check made before, and never deadlocked against admin's order of writes. PostgreSQL only: SQLite
serialises every write transaction (BEGIN IMMEDIATE), so nothing interleaves there.
"""

import threading

import pytest
from django.db import connection, connections

from orgs.models import AuditAction, AuditEvent, ClaudeApiKey
from tests.base import GOOD_KEY
from tests.clients import console
from tests.orgs.helpers import store_key
from tests.reliability.conftest import pg_admin_connection, wait_for_lock_waiters

INTERLEAVED_ONLY_ON_POSTGRES = (
    "needs PostgreSQL: two write transactions interleave only there; SQLite serialises them (BEGIN IMMEDIATE)"
)
pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason=INTERLEAVED_ONLY_ON_POSTGRES),
    pytest.mark.django_db(transaction=True),
]

# What staff change, as SQL on admin's own connection: (statement, status the member's save then gets).
CHANGES = {
    "member removed": ("DELETE FROM orgs_membership WHERE user_id = %(user)s AND organisation_id = %(org)s", 404),
    "member demoted": (
        "UPDATE orgs_membership SET role = 'member' WHERE user_id = %(user)s AND organisation_id = %(org)s",
        403,
    ),
    "plan downgraded": ("UPDATE orgs_organisation SET plan = 'professional' WHERE id = %(org)s", 403),
}


def _member_posts_while_staff_change(world, path: str, data: dict, statement: str) -> int:
    """The status the member's POST to `path` gets when it arrives while staff's admin transaction is open:
    it waits on the organisation row admin wrote first, then staff run `statement` and commit."""
    ids = {"user": world.acme_admin.pk, "org": world.acme.pk}
    outcome = {}

    def member_posts() -> None:
        try:
            outcome["status"] = console(world.acme_admin).post(path, data).status_code
        finally:
            connections.close_all()

    with pg_admin_connection() as staff, pg_admin_connection() as watcher:
        staff.autocommit = False
        with staff.cursor() as cursor:
            # Admin's save_model: the organisation row first (locked until the form's transaction ends).
            cursor.execute("UPDATE orgs_organisation SET name = name WHERE id = %(org)s", ids)
            member = threading.Thread(target=member_posts)
            member.start()
            with watcher.cursor() as watching:
                wait_for_lock_waiters(watching, 1)  # the member's request waits for admin's transaction
            # Then the membership inline (or the plan itself), and the form's commit.
            cursor.execute(statement, ids)
        staff.commit()
        member.join(timeout=30)
    return outcome.get("status")


@pytest.mark.parametrize("change", CHANGES)
def test_a_key_save_arriving_while_staff_change_the_organisation_is_judged_on_their_change(world, change):
    statement, refused_with = CHANGES[change]

    status = _member_posts_while_staff_change(
        world, "/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY}, statement
    )

    assert status == refused_with
    assert not ClaudeApiKey.objects.exists() and not AuditEvent.objects.exists()


# A removal is allowed on any plan (a key left from a BYOM plan can always be removed): only the membership counts.
REMOVAL_CHANGES = {
    "member removed": ("DELETE FROM orgs_membership WHERE user_id = %(user)s AND organisation_id = %(org)s", 404),
    "member demoted": (
        "UPDATE orgs_membership SET role = 'member' WHERE user_id = %(user)s AND organisation_id = %(org)s",
        403,
    ),
}


@pytest.mark.parametrize("change", REMOVAL_CHANGES)
def test_a_key_removal_arriving_while_staff_change_the_membership_is_judged_on_their_change(world, change):
    store_key(world.acme, GOOD_KEY)
    statement, refused_with = REMOVAL_CHANGES[change]

    status = _member_posts_while_staff_change(
        world, "/orgs/acme/settings/claude-api-key/remove", {"confirm": "yes"}, statement
    )

    assert status == refused_with
    assert ClaudeApiKey.objects.exists() and not AuditEvent.objects.exists()


def test_two_first_saves_at_once_record_one_key_saved_and_one_key_replaced(world):
    # The audit log tells a first key from a rotated one: that is decided under the organisation's lock, with the
    # write, so two Admins saving the organisation's first key at the same moment cannot both record "saved".
    statuses = []

    def saves(user) -> None:
        try:
            statuses.append(console(user).post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY}))
        finally:
            connections.close_all()

    with pg_admin_connection() as holder, pg_admin_connection() as watcher:
        holder.autocommit = False
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM orgs_organisation WHERE id = %s FOR UPDATE", [world.acme.pk])
            savers = [threading.Thread(target=saves, args=(user,)) for user in (world.acme_owner, world.acme_admin)]
            for saver in savers:
                saver.start()
            with watcher.cursor() as watching:
                wait_for_lock_waiters(watching, 2)  # both saves are under way, neither has looked at the key yet
        holder.commit()
        for saver in savers:
            saver.join(timeout=30)

    assert [response.status_code for response in statuses] == [302, 302]
    assert ClaudeApiKey.objects.count() == 1
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == [AuditAction.KEY_SAVED, AuditAction.KEY_REPLACED]
