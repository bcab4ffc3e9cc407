"""Fixtures for the organisation tests: people by plan and role."""

import pytest
from django.db import connection

from orgs.models import Membership, Organisation, Plan, Role
from tests.base import make_user


@pytest.fixture
def people(world):
    """`people(plan, role)` -> (organisation, user or None). Adds the Owner the shared world lacks on initech."""
    initech_owner = make_user("owner@initech.test")
    Membership.objects.create(user=initech_owner, organisation=world.initech, role=Role.OWNER)
    umbrella = Organisation.objects.create(name="Umbrella Tokens", slug="umbrella", plan=Plan.STARTER)
    starter = {role: make_user(f"{role}@umbrella.test") for role in ("owner", "admin", "member")}
    for role, user in starter.items():
        Membership.objects.create(user=user, organisation=umbrella, role=role)
    orgs = {
        Plan.STARTER: umbrella,
        Plan.PROFESSIONAL: world.globex,
        Plan.INSTITUTIONAL: world.acme,
        Plan.CUSTOM: world.initech,
    }
    by_role = {
        Plan.STARTER: starter,
        Plan.PROFESSIONAL: {"owner": world.globex_owner, "admin": world.globex_admin, "member": world.globex_member},
        Plan.INSTITUTIONAL: {"owner": world.acme_owner, "admin": world.acme_admin, "member": world.acme_member},
        Plan.CUSTOM: {"owner": initech_owner, "admin": world.initech_admin, "member": world.initech_member},
    }

    def lookup(plan: str, role: str) -> tuple[Organisation, object]:
        if role == "anonymous":
            return orgs[plan], None
        if role == "outsider":
            return orgs[plan], world.outsider
        return orgs[plan], by_role[plan][role]

    return lookup


@pytest.fixture
def token_deletes_fail(db):
    """The database refuses to delete API tokens (a trigger): what a failure halfway through the change meets."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION test_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'deleting tokens refused'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_refuse_token_delete BEFORE DELETE ON orgs_apitoken "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse_delete()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_refuse_token_delete BEFORE DELETE ON orgs_apitoken "
                "BEGIN SELECT RAISE(ABORT, 'deleting tokens refused'); END"
            )
    yield
    # Dropped here, not left to the test's transaction: a test with none (transaction=True) commits the trigger, which
    # would outlive it and, on SQLite, refuse the DELETE that empties the tables after it.
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER test_refuse_token_delete" + (" ON orgs_apitoken" if connection.vendor == "postgresql" else "")
        )
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION test_refuse_delete()")
