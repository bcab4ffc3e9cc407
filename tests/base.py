"""A small shared world: organisations on every plan, and people in every role."""

from dataclasses import dataclass

from django.db import connection

from orgs.models import Membership, Organisation, Plan, Role, User

PASSWORD = "correct-horse-battery-staple"
# Obviously fake, but shaped like an Anthropic key so validation accepts it.
CANARY_KEY = "sk-ant-api03-CANARY0canary1CANARY2canary3CANARY4canary5-NEVER-LEAK-ME_0123456789"
GOOD_KEY = "sk-ant-api03-goodkey-0000000000000000000000000000000000000000000000"
OTHER_KEY = "sk-ant-api03-otherkey-111111111111111111111111111111111111111111111"


@dataclass
class World:
    acme: Organisation  # Institutional
    initech: Organisation  # Custom
    globex: Organisation  # Professional
    acme_owner: User
    acme_admin: User
    acme_member: User
    initech_admin: User
    initech_member: User
    globex_owner: User
    globex_admin: User
    globex_member: User
    outsider: User
    staff: User

    def membership(self, user: User, org: Organisation) -> Membership:
        return Membership.objects.select_related("organisation", "user").get(user=user, organisation=org)


def make_user(email: str, **extra) -> User:
    return User.objects.create_user(email=email, password=PASSWORD, **extra)


def build_world() -> World:
    acme = Organisation.objects.create(name="Acme Digital Assets", slug="acme", plan=Plan.INSTITUTIONAL)
    initech = Organisation.objects.create(name="Initech Custody", slug="initech", plan=Plan.CUSTOM)
    globex = Organisation.objects.create(name="Globex Payments", slug="globex", plan=Plan.PROFESSIONAL)
    people = {}
    for org, roles in (
        (acme, ("owner", "admin", "member")),
        (initech, ("admin", "member")),
        (globex, ("owner", "admin", "member")),
    ):
        for role in roles:
            user = make_user(f"{role}@{org.slug}.test")
            Membership.objects.create(user=user, organisation=org, role=Role(role))
            people[f"{org.slug}_{role}"] = user
    outsider = make_user("outsider@elsewhere.test")
    staff = make_user("staff@opsion.test", is_staff=True, is_superuser=True)
    return World(acme=acme, initech=initech, globex=globex, outsider=outsider, staff=staff, **people)


def organisation_admin_form(org: Organisation, *, members=None, **fields) -> dict:
    """The POST data of the organisation's admin change page as it stands (its inline holding `members`, by
    default all of them), with `fields` changed."""
    members = list((org.memberships.all() if members is None else members).order_by("pk"))
    data = {
        "name": org.name,
        "slug": org.slug,
        "plan": org.plan,
        "memberships-TOTAL_FORMS": str(len(members)),
        "memberships-INITIAL_FORMS": str(len(members)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, m in enumerate(members):
        data |= {
            f"memberships-{i}-id": str(m.pk),
            f"memberships-{i}-organisation": str(org.pk),
            f"memberships-{i}-user": str(m.user_id),
            f"memberships-{i}-role": m.role,
        }
    return data | fields


def query_plan(rows) -> str:
    """The database's plan for the queryset `rows`, as one text (PostgreSQL's EXPLAIN, SQLite's EXPLAIN QUERY PLAN),
    after fresh statistics for its table."""
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {rows.model._meta.db_table}")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("ANALYZE")
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())
