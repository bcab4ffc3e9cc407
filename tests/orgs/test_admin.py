"""Django admin for Opsion staff: organisations, memberships, users, tokens, audit events, key removal."""

import html
import re
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from insights.models import InsightQuery, KeySource
from insights.services import FAILURE_MESSAGES, INTERRUPTED
from orgs import admin as org_admin
from orgs import mailer, services
from orgs.crypto import Sealed
from orgs.models import (
    ApiToken,
    AuditAction,
    AuditEvent,
    ClaudeApiKey,
    KeyStatus,
    Membership,
    Organisation,
    OutboxMail,
    Plan,
    Role,
    User,
)
from tests.base import CANARY_KEY, GOOD_KEY, PASSWORD, make_user, organisation_admin_form
from tests.clients import console
from tests.insights.helpers import seed, seed_spread
from tests.orgs.helpers import form_data, store_key, stored_key

ORGS = "/admin/orgs/organisation/"


@pytest.fixture
def staff(world):
    return console(world.staff)


def rows_of(page: str) -> dict[str, str]:
    """The change list's rows, keyed by the organisation name in each."""
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    named = {}
    for row in rows:
        match = re.search(r'<th class="field-name"><a href="[^"]+">([^<]+)</a></th>', row)
        if match:
            named[match.group(1)] = row
    return named


def page_text(response) -> str:
    """The page's text, as a reader sees it."""
    return page_text_of(response.content.decode())


def sidebar(response) -> str:
    """The change list's filters, as markup."""
    return response.content.decode().split('id="changelist-filter"')[1]


def page_text_of(markup: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", markup).split()))


def test_only_staff_get_in(world):
    response = console(world.acme_owner).get(ORGS, follow=True)

    assert response.redirect_chain[0][0].startswith("/admin/login/")
    assert response.status_code == 403  # signed in, but not staff: signing in again would change nothing


def test_admin_has_no_sign_in_page_of_its_own_staff_use_the_guarded_one(world):
    # Admin's stock page checked passwords with no guard at all: 50 guesses, then the right one, got in.
    right = {"username": "staff@opsion.test", "password": PASSWORD}
    client = Client()

    posted = client.post("/admin/login/", right)  # checks nothing: sends to the site's page
    sent = client.get(f"/admin/login/?next={ORGS}")
    signed_in = client.post("/accounts/login/", {**right, "next": ORGS}, follow=True)

    assert posted.status_code == 302 and not posted.wsgi_request.user.is_authenticated
    assert sent["Location"] == f"/accounts/login/?next={ORGS}"
    assert signed_in.redirect_chain == [(ORGS, 302)] and signed_in.status_code == 200
    assert client.get("/admin/login/")["Location"] == "/admin/"  # already signed in: straight on


class TestOrganisationList:
    def test_it_shows_plan_key_set_and_member_count(self, world, staff):
        store_key(world.acme, CANARY_KEY)

        page = staff.get(ORGS).content.decode()

        rows = rows_of(page)
        assert set(rows) == {"Acme Digital Assets", "Globex Payments", "Initech Custody"}
        assert '<td class="field-plan">Institutional</td>' in rows["Acme Digital Assets"]
        assert '<td class="field-plan">Professional</td>' in rows["Globex Payments"]
        assert '<td class="field-claude_api_key_state">In use</td>' in rows["Acme Digital Assets"]
        assert '<td class="field-claude_api_key_state">None stored</td>' in rows["Globex Payments"]
        assert '<td class="field-member_count">3</td>' in rows["Acme Digital Assets"]
        assert '<td class="field-member_count">2</td>' in rows["Initech Custody"]
        assert CANARY_KEY not in page

    def test_a_key_left_behind_by_a_downgrade_reads_unused_not_set_and_each_state_filters(self, world, staff):
        # After a downgrade the key stays stored but no query uses it: a tick beside it read as BYOM still on.
        store_key(world.acme, CANARY_KEY)
        store_key(world.globex, GOOD_KEY)  # Professional: unused

        page = staff.get(ORGS).content.decode()
        in_use = staff.get(ORGS, {"claude_api_key": "in_use"}).content.decode()
        unused = staff.get(ORGS, {"claude_api_key": "unused"}).content.decode()
        none = staff.get(ORGS, {"claude_api_key": "none"}).content.decode()

        cell = '<td class="field-claude_api_key_state">Stored, unused on this plan</td>'
        assert cell in rows_of(page)["Globex Payments"]
        assert set(rows_of(in_use)) == {"Acme Digital Assets"}
        assert set(rows_of(unused)) == {"Globex Payments"}
        assert set(rows_of(none)) == {"Initech Custody"}
        assert CANARY_KEY not in page and GOOD_KEY not in page

    def test_it_filters_by_plan(self, world, staff):
        page = staff.get(ORGS, {"plan__exact": Plan.CUSTOM}).content.decode()

        assert set(rows_of(page)) == {"Initech Custody"}

    def test_it_searches_by_name_and_slug(self, world, staff):
        assert set(rows_of(staff.get(ORGS, {"q": "globex"}).content.decode())) == {"Globex Payments"}
        assert set(rows_of(staff.get(ORGS, {"q": "Custody"}).content.decode())) == {"Initech Custody"}


class TestOrganisationChange:
    def test_the_change_page_has_an_editable_plan_and_the_memberships_inline(self, world, staff):
        store_key(world.acme, CANARY_KEY)

        page = staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode()

        assert '<select name="plan"' in page
        assert 'name="memberships-TOTAL_FORMS" value="3"' in page
        assert 'name="memberships-0-role"' in page
        assert CANARY_KEY not in page
        assert "secret" not in page.lower()

    @pytest.mark.parametrize("window, words", [(600, "10 minutes"), (7200, "2 hours"), (90, "90 seconds")])
    def test_the_plan_help_follows_the_configured_limit(self, world, staff, settings, window, words):
        settings.INSIGHTS_PLATFORM_LIMIT, settings.INSIGHTS_WINDOW_SECONDS = 5, window

        page = " ".join(staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode().split())

        assert f"its limit of 5 queries per rolling {words} applies at once" in page

    def test_the_change_page_says_whether_a_key_is_stored_and_what_a_plan_change_does(self, world, staff):
        store_key(world.acme, CANARY_KEY)
        store_key(world.globex, CANARY_KEY)  # left from an earlier BYOM plan

        acme = " ".join(staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode().split())
        globex = " ".join(staff.get(f"{ORGS}{world.globex.pk}/change/").content.decode().split())
        initech = " ".join(staff.get(f"{ORGS}{world.initech.pk}/change/").content.decode().split())

        assert "In use." in acme and "Stored, unused on this plan." in globex
        assert "None stored." in initech
        assert "its limit of 20 queries per rolling 60 minutes applies at once" in acme
        for page in (acme, globex):
            assert CANARY_KEY not in page and "gAAAA" not in page  # neither the key nor a Fernet token

    def test_changing_the_plan_keeps_the_key_and_logs_no_key(self, world, staff):
        store_key(world.acme, CANARY_KEY)
        data = organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL)

        response = staff.post(f"{ORGS}{world.acme.pk}/change/", data)

        assert response.status_code == 302, response.content.decode()[:2000]
        world.acme.refresh_from_db()
        assert world.acme.plan == Plan.PROFESSIONAL
        assert stored_key(world.acme) == CANARY_KEY
        entry = LogEntry.objects.get()
        assert "plan" in entry.get_change_message().lower()
        assert CANARY_KEY not in entry.change_message
        assert CANARY_KEY not in entry.object_repr

    def test_each_row_marks_a_deactivated_owner_or_admin(self, world, staff):
        # They keep the role but cannot sign in to manage the key: staff asked why a save was refused for leaving
        # no active Owner or Admin saw nothing on the rows to tell them which ones were not.
        gone = make_user("gone@acme.test", is_active=False)
        Membership.objects.create(user=gone, organisation=world.acme, role=Role.ADMIN)
        Membership.objects.create(user=make_user("left@acme.test", is_active=False), organisation=world.acme)

        page = staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode()

        rows = {
            email: page_text_of(row)
            for row in re.findall(r'<tr class="form-row[^"]*".*?</tr>', page, re.S)
            for email in re.findall(r"[\w.-]+@acme\.test", row)[:1]
        }
        assert "Deactivated: cannot sign in to manage the organisation or its key" in rows["gone@acme.test"]
        assert "Deactivated" in rows["left@acme.test"] and "manage" not in rows["left@acme.test"]
        assert "Deactivated" not in rows["owner@acme.test"] and "Deactivated" not in rows["admin@acme.test"]
        assert 'name="memberships-TOTAL_FORMS" value="5"' in page  # the mark is shown, not a field posted

    def test_the_change_page_of_a_large_organisation_does_not_query_per_member(self, world, staff):
        def queries_for_change_page() -> int:
            with CaptureQueriesContext(connection) as queries:
                assert staff.get(f"{ORGS}{world.acme.pk}/change/").status_code == 200
            return len(queries)

        queries_for_change_page()  # fills the caches the first view fills (the content type's)
        few = queries_for_change_page()
        for i in range(30):
            Membership.objects.create(user=make_user(f"m{i}@acme.test"), organisation=world.acme, role=Role.MEMBER)

        # The same number: each row's autocomplete names its member from the user the inline already joined
        # (Django's widget looked each one up again, one query per member).
        assert queries_for_change_page() == few

    def test_each_row_names_its_member_and_a_form_shown_again_names_the_posted_choice(self, world, staff):
        # The rows' autocompletes name their members from the inline's own query; a posted choice is looked up.
        members = list(world.acme.memberships.order_by("pk").select_related("user"))
        page = staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode()
        data = organisation_admin_form(world.acme, slug="GLOBEX")  # refused: the page comes back
        data["memberships-2-user"] = str(world.outsider.pk)

        again = staff.post(f"{ORGS}{world.acme.pk}/change/", data).content.decode()

        for i, m in enumerate(members):
            assert re.search(
                rf'name="memberships-{i}-user"[^>]*>\s*<option value="{m.user_id}" selected>{m.user.email}<', page, re.S
            )
        assert "Organisation with this Slug already exists." in again
        assert re.search(
            rf'name="memberships-2-user"[^>]*>\s*<option value="{world.outsider.pk}" selected>outsider@', again, re.S
        )

    def test_a_slug_differing_only_in_case_from_anothers_is_refused(self, world, staff):
        data = organisation_admin_form(world.globex, slug="ACME")

        response = staff.post(f"{ORGS}{world.globex.pk}/change/", data)

        assert (
            response.status_code == 200 and "Organisation with this Slug already exists." in response.content.decode()
        )
        world.globex.refresh_from_db()
        assert world.globex.slug == "globex"

    @pytest.mark.parametrize("slug", ["sk-ant-capital-markets", "opsn_nordic-digital-assets-exchange"])
    def test_a_slug_in_the_form_of_a_key_or_token_is_refused(self, world, staff, slug):
        # Log lines hide such text wherever it appears, and console addresses carrying it in a parameter (a search, a
        # sign-in's next) are refused: the organisation would be blanked in its own log lines and unreachable there.
        response = staff.post(f"{ORGS}{world.globex.pk}/change/", organisation_admin_form(world.globex, slug=slug))

        page = response.content.decode()
        assert response.status_code == 200
        assert "A slug cannot look like a Claude API key (sk-ant-…) or an API token (opsn_…)." in page
        world.globex.refresh_from_db()
        assert world.globex.slug == "globex"

    def test_a_slug_typed_in_capitals_is_saved_in_lower_case(self, world, staff):
        staff.post(f"{ORGS}{world.globex.pk}/change/", organisation_admin_form(world.globex, slug="Globex-EU"))

        world.globex.refresh_from_db()
        assert world.globex.slug == "globex-eu"

    def test_staff_cannot_leave_an_organisation_without_an_owner_or_admin(self, world, staff):
        data = organisation_admin_form(world.acme)
        rows = {v: k.removesuffix("-user") for k, v in data.items() if k.endswith("-user")}
        data[rows[str(world.acme_owner.pk)] + "-DELETE"] = "on"
        data[rows[str(world.acme_admin.pk)] + "-role"] = Role.MEMBER

        before = dict(world.acme.memberships.values_list("user__email", "role"))
        refused = staff.post(f"{ORGS}{world.acme.pk}/change/", data)

        assert refused.status_code == 200
        assert "This would leave the organisation without an active Owner or Admin" in refused.content.decode()
        assert dict(world.acme.memberships.values_list("user__email", "role")) == before  # nothing of it saved
        assert not AuditEvent.objects.exists() and not LogEntry.objects.exists()

        data[rows[str(world.acme_member.pk)] + "-role"] = Role.ADMIN  # someone else takes over in the same save
        accepted = staff.post(f"{ORGS}{world.acme.pk}/change/", data)

        assert accepted.status_code == 302
        roles = dict(world.acme.memberships.values_list("user__email", "role"))
        assert roles == {"admin@acme.test": Role.MEMBER, "member@acme.test": Role.ADMIN}


class TestStaffChangesReachTheCustomersAuditLog:
    def test_a_plan_change(self, world, staff):
        store_key(world.acme, CANARY_KEY)

        staff.post(f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL))

        event = AuditEvent.objects.get(organisation=world.acme)
        assert (event.action, event.detail, event.via) == (
            AuditAction.PLAN_CHANGED,
            "Institutional → Professional",
            "admin",
        )
        assert event.actor_email == world.staff.email
        page = console(world.acme_owner).get("/orgs/acme/settings/").content.decode()
        assert "Plan changed: Institutional → Professional (by Opsion staff)" in page

    def test_an_organisation_added_starts_its_log_with_its_plan_and_first_members(self, world, staff):
        # Its Owners and Admins can then tell from the log alone which plan it began on (whether its key could be
        # used), as every later change of plan is recorded, and who was given the right to manage the key.
        data = {
            "name": "Hooli",
            "slug": "hooli",
            "plan": Plan.INSTITUTIONAL,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-user": str(world.acme_member.pk),
            "memberships-0-role": Role.OWNER,
        }

        assert staff.post(f"{ORGS}add/", data).status_code == 302

        org = Organisation.objects.get(slug="hooli")
        recorded = [(e.action, e.detail, e.via, e.actor_email) for e in reversed(org.audit_events.all())]
        assert recorded == [
            (AuditAction.ORGANISATION_CREATED, "on the Institutional plan", "admin", world.staff.email),
            (AuditAction.MEMBER_ADDED, "member@acme.test as Owner", "admin", world.staff.email),
        ]
        page = console(world.acme_member).get("/orgs/hooli/settings/").content.decode()
        assert "Organisation created: on the Institutional plan (by Opsion staff)" in page

    def test_a_name_change_alone_records_nothing(self, world, staff):
        response = staff.post(f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, name="Acme Assets"))

        assert response.status_code == 302  # saved: a refused form would record nothing either
        world.acme.refresh_from_db()
        assert world.acme.name == "Acme Assets"
        assert not AuditEvent.objects.exists()

    def test_membership_changes(self, world, staff):
        newcomer = make_user("new@acme.test")
        data = organisation_admin_form(world.acme)
        rows = {v: k.removesuffix("-user") for k, v in data.items() if k.endswith("-user")}
        data[rows[str(world.acme_member.pk)] + "-role"] = Role.ADMIN
        data[rows[str(world.acme_admin.pk)] + "-DELETE"] = "on"
        data |= {
            "memberships-TOTAL_FORMS": str(len(rows) + 1),
            f"memberships-{len(rows)}-organisation": str(world.acme.pk),
            f"memberships-{len(rows)}-user": str(newcomer.pk),
            f"memberships-{len(rows)}-role": Role.MEMBER,
        }

        assert staff.post(f"{ORGS}{world.acme.pk}/change/", data).status_code == 302

        recorded = {(e.action, e.detail) for e in AuditEvent.objects.filter(organisation=world.acme, via="admin")}
        assert recorded == {
            (AuditAction.ROLE_CHANGED, "member@acme.test: Member → Admin"),
            (AuditAction.MEMBER_REMOVED, "admin@acme.test (Admin)"),
            (AuditAction.MEMBER_ADDED, "new@acme.test as Member"),
        }


class TestLimitedStaff:
    """Support accounts with some of the membership permissions: the inline shows them less, or nothing."""

    @staticmethod
    def support(*codenames: str):
        user = make_user("support@opsion.test", is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(codename__in=["view_organisation", "change_organisation", *codenames])
        )
        return console(user)

    def test_a_plan_change_by_staff_who_may_only_view_memberships_records_only_the_plan(self, world):
        client = self.support("view_membership")
        data = form_data(client.get(f"{ORGS}{world.acme.pk}/change/").content.decode(), "organisation_form")
        data["plan"] = Plan.PROFESSIONAL  # the read-only rows post no user or role

        assert client.post(f"{ORGS}{world.acme.pk}/change/", data).status_code == 302

        recorded = [(e.action, e.detail) for e in AuditEvent.objects.filter(organisation=world.acme)]
        assert recorded == [(AuditAction.PLAN_CHANGED, "Institutional → Professional")]

    def test_staff_who_may_only_add_memberships_can_add_a_member_and_change_the_plan(self, world):
        client = self.support("add_membership")  # sees no existing rows, so cannot remove a manager
        newcomer = make_user("new@acme.test")
        data = form_data(client.get(f"{ORGS}{world.acme.pk}/change/").content.decode(), "organisation_form")
        data |= {
            "plan": Plan.CUSTOM,
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-organisation": str(world.acme.pk),
            "memberships-0-user": str(newcomer.pk),
            "memberships-0-role": Role.MEMBER,
        }

        assert client.post(f"{ORGS}{world.acme.pk}/change/", data).status_code == 302

        world.acme.refresh_from_db()
        assert world.acme.plan == Plan.CUSTOM
        assert Membership.objects.filter(organisation=world.acme, user=newcomer).exists()

    def test_staff_who_may_not_delete_queries_cannot_delete_an_organisation_that_has_some(self, world):
        seed_spread(world.acme, 3, oldest=7200)
        client = self.support("delete_organisation")

        assert client.post(f"{ORGS}{world.acme.pk}/delete/", {"post": "yes"}).status_code == 403
        assert Organisation.objects.filter(pk=world.acme.pk).exists()


def test_deleting_a_user_records_their_removal_in_each_organisations_audit_log(world, staff):
    response = staff.post(f"/admin/orgs/user/{world.initech_admin.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    event = AuditEvent.objects.get(organisation=world.initech)
    assert (event.action, event.detail, event.via) == (
        AuditAction.MEMBER_REMOVED,
        "admin@initech.test (Admin; user deleted)",
        "admin",
    )


def test_deleting_an_organisations_only_manager_warns_on_the_confirmation_step(world, staff):
    # Not refused (an erasure request must go through), but staff are told before they confirm.
    warned = staff.get(f"/admin/orgs/user/{world.initech_admin.pk}/delete/").content.decode()
    not_warned = staff.get(f"/admin/orgs/user/{world.acme_admin.pk}/delete/").content.decode()  # acme keeps its Owner

    assert "Deleting this leaves Initech Custody without an Owner or Admin" in warned
    assert "without an Owner or Admin" not in not_warned


def user_admin_form(user, **fields) -> dict:
    """The POST data of the user's admin change page as it stands, with `fields` changed."""
    joined = user.date_joined
    data = {
        "email": user.email,
        "name": user.name,
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        **({"is_active": "on"} if user.is_active else {}),
    }
    return {k: v for k, v in (data | fields).items() if v is not None}


@pytest.mark.parametrize("by_another_manager", [False, True], ids=["last-manager", "another-manager-left"])
def test_deactivating_an_organisations_last_active_manager_is_allowed_and_warned_about(
    world, staff, by_another_manager
):
    if by_another_manager:  # acme's Owner stays a member, but is no longer active
        world.acme_owner.is_active = False
        world.acme_owner.save(update_fields=["is_active"])
    target = world.acme_admin if by_another_manager else world.initech_admin
    org = world.acme if by_another_manager else world.initech

    response = staff.post(f"/admin/orgs/user/{target.pk}/change/", user_admin_form(target, is_active=None), follow=True)

    target.refresh_from_db()
    assert target.is_active is False  # a compromised account must be lockable at once
    assert f"The user {target.email} was the last active Owner or Admin of {org}" in response.content.decode()


@pytest.mark.parametrize(
    ("names", "refused", "delete"),
    [
        (["CI", "Laptop"], "their sessions and 2 API tokens are refused", "delete its API tokens"),
        # One token: "their sessions and API token is refused" read as if only the token were.
        (["CI"], "their sessions and API token are refused", "delete its API token"),
    ],
    ids=["two-tokens", "one-token"],
)
def test_deactivating_a_user_says_what_it_ends_and_that_their_tokens_are_kept_not_deleted(
    world, staff, names, refused, delete
):
    # Deactivation refuses sessions and tokens but deletes nothing: for a compromised account staff must be told the
    # tokens come back with a reactivation, and where to delete them.
    for name in names:
        services.api_token_create(user=world.acme_member, name=name)
    form = user_admin_form(world.acme_member, is_active=None)

    response = staff.post(f"/admin/orgs/user/{world.acme_member.pk}/change/", form, follow=True)

    text = page_text(response)
    assert (
        f"The user member@acme.test can no longer sign in, and {refused} from now on. Nothing is deleted: "
        f"reactivating the account brings them back. If it was compromised, set a new password and {delete} too."
        in text
    )
    assert f'href="/admin/orgs/apitoken/?user__id__exact={world.acme_member.pk}"' in response.content.decode()
    assert ApiToken.objects.filter(user=world.acme_member).count() == len(names)


def test_deactivating_a_user_without_tokens_says_nothing_of_tokens(world, staff):
    form = user_admin_form(world.acme_member, is_active=None)

    response = staff.post(f"/admin/orgs/user/{world.acme_member.pk}/change/", form, follow=True)

    (deactivated,) = [str(m) for m in response.context["messages"] if "can no longer sign in" in str(m)]
    assert deactivated == "The user member@acme.test can no longer sign in, and their sessions are refused from now on."


def test_deactivating_a_manager_whose_organisation_keeps_another_is_not_warned_about(world, staff):
    response = staff.post(
        f"/admin/orgs/user/{world.acme_admin.pk}/change/",
        user_admin_form(world.acme_admin, is_active=None),
        follow=True,
    )

    world.acme_admin.refresh_from_db()
    assert world.acme_admin.is_active is False
    assert "last active Owner or Admin" not in response.content.decode()


def test_editing_a_last_manager_without_deactivating_them_is_not_warned_about(world, staff):
    response = staff.post(
        f"/admin/orgs/user/{world.initech_admin.pk}/change/",
        user_admin_form(world.initech_admin, name="Ina Admin"),
        follow=True,
    )

    world.initech_admin.refresh_from_db()
    assert world.initech_admin.name == "Ina Admin"
    assert "last active Owner or Admin" not in response.content.decode()


@pytest.mark.parametrize(
    "url, table",
    [
        ("/admin/orgs/auditevent/?via__exact=admin", "orgs_auditevent"),
        ("/admin/insights/insightquery/?outcome__exact=failed", "insights_insightquery"),
        ("/admin/insights/insightquery/?q=acme", "insights_insightquery"),
    ],
)
def test_the_largest_tables_change_lists_count_their_rows_once(world, staff, url, table):
    # Each grows by the million (every query, every change); Django's change list counts the whole table a
    # second time beside each filtered or searched list, for the "(N total)" it shows beside the result count.
    seed_spread(world.acme, 5, oldest=7200)

    with CaptureQueriesContext(connection) as queries:
        assert staff.get(url).status_code == 200

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and f'"{table}"' in q["sql"]]
    assert len(counts) == 1, counts


def test_staff_see_whose_key_a_query_ran_on_in_their_own_words_not_the_customers(world, staff):
    # "Your organisation's Anthropic key" is the customer's history speaking; to Opsion staff "your
    # organisation" is Opsion, the very opposite of the key it names.
    (own,) = seed(world.acme, 60, source=KeySource.ORGANISATION)
    seed(world.acme, 30, source=KeySource.PLATFORM)

    pages = [
        html.unescape(staff.get("/admin/insights/insightquery/").content.decode()),  # the list and its filter
        html.unescape(staff.get(f"/admin/insights/insightquery/{own.pk}/change/").content.decode()),  # one query
    ]

    for page in pages:
        assert "Your organisation" not in page
        assert "The organisation's own Anthropic key" in page
    assert "Opsion's platform key" in pages[0]
    filtered = html.unescape(staff.get("/admin/insights/insightquery/?key_source__exact=organisation").content.decode())
    assert filtered.count("The organisation's own Anthropic key") == 2  # the filter's choice and the one row
    assert filtered.count("Opsion's platform key") == 1  # the filter's other choice: its row is filtered out


def test_staff_find_an_organisations_queries_by_its_name_as_well_as_its_slug(world, staff):
    # The list shows the organisation's name, so that is what staff type (the organisations list finds it so too).
    seed(world.acme, 60, user=world.acme_member)
    seed(world.globex, 60, user=world.globex_member)

    by_name = staff.get("/admin/insights/insightquery/", {"q": "Globex Payments"}).content.decode()
    by_slug = staff.get("/admin/insights/insightquery/", {"q": "globex"}).content.decode()

    for page in (by_name, by_slug):
        assert "member@globex.test" in page and "member@acme.test" not in page


def test_staff_see_how_each_answer_ended_read_only(world, staff):
    whole, cut, declined, failed = seed(world.acme, 40, 30, 20, 10)
    InsightQuery.objects.filter(pk=cut.pk).update(stop_reason="max_tokens")
    InsightQuery.objects.filter(pk=declined.pk).update(stop_reason="refusal")
    InsightQuery.objects.filter(pk=failed.pk).update(outcome="failed", error_code="interrupted", stop_reason=None)

    listed = html.unescape(staff.get("/admin/insights/insightquery/").content.decode())
    filtered = html.unescape(staff.get("/admin/insights/insightquery/?stop_reason__exact=max_tokens").content.decode())
    page = html.unescape(staff.get(f"/admin/insights/insightquery/{cut.pk}/change/").content.decode())

    assert "Ended" in listed
    assert "By how it ended" in page_text(
        staff.get("/admin/insights/insightquery/")
    )  # the column's word, not the field's
    assert "stop reason" not in page_text(staff.get("/admin/insights/insightquery/")).lower()
    assert "Cut short at the length limit" in listed and "Claude declined" in listed and "Complete" in listed
    assert f"/admin/insights/insightquery/{cut.pk}/change/" in filtered
    assert f"/admin/insights/insightquery/{whole.pk}/change/" not in filtered
    assert "Cut short at the length limit" in page and 'name="stop_reason"' not in page  # shown, not editable
    # The query's own page names it as the list does: "Ended", not the field's "Stop reason".
    own_page = page_text(staff.get(f"/admin/insights/insightquery/{cut.pk}/change/"))
    assert "Ended: Cut short at the length limit" in own_page and "stop reason" not in own_page.lower()


def test_a_failed_querys_own_page_leaves_ended_empty_as_the_list_does_never_none(world, staff):
    # Support opening a failed query ("our queries fail") read "Ended: None" beside its error code: admin prints what a
    # method returns as it is on an object's own page, Python's None included, where the list shows "-".
    (failed,) = seed(world.acme, 40)
    InsightQuery.objects.filter(pk=failed.pk).update(
        outcome="failed", error_code="claude_api_key_invalid", stop_reason=None
    )

    own_page = page_text(staff.get(f"/admin/insights/insightquery/{failed.pk}/change/"))

    assert "Error code: claude_api_key_invalid" in own_page
    assert "Ended: -" in own_page and "None" not in own_page


@pytest.mark.parametrize(
    "behaviour, code",
    [
        ("auth_error", "claude_api_key_invalid"),
        ("billing_error", "upstream_billing"),
        ("rate_limited", "upstream_rate_limited"),
        ("overloaded", "insights_unavailable"),
    ],
)
def test_a_failed_querys_own_page_says_what_its_reader_was_told_beside_the_code(
    world, staff, acme_key, api_client, fake_anthropic, behaviour, code
):
    # Support answering "our queries fail" read only the code (claude_api_key_invalid, upstream_billing) and had to
    # guess what the customer had been told.
    fake_anthropic.behave(acme_key, behaviour)
    refused = api_client(world.acme_member).post(
        "/api/v1/orgs/acme/insights/queries", data={"query": "What is MiCAR?"}, content_type="application/json"
    )
    told = refused.json()["error"]
    query = InsightQuery.objects.get(organisation=world.acme)

    own_page = page_text(staff.get(f"/admin/insights/insightquery/{query.pk}/change/"))

    assert told["code"] == code
    assert f"Error code: {code}" in own_page  # still there, as staff search and filter by it
    # Word for word what the API said (Anthropic's wait before a retry is not recorded: its sentence is left out).
    assert f"Message shown: {told['message'].split(' Try again in ')[0]}" in own_page


def test_an_interrupted_querys_own_page_says_no_refusal_was_given_and_what_a_streaming_page_said(world, staff):
    # "No message" was not what a customer watching the answer stream was told: the page's script says the answer was
    # interrupted when its stream ends without an answer or an error (static/js/insights.js), word for word as here.
    (cut,) = seed(world.acme, 40)
    InsightQuery.objects.filter(pk=cut.pk).update(outcome="failed", error_code="interrupted", stop_reason=None)
    (answered,) = seed(world.globex, 40)
    script = (settings.BASE_DIR / "static/js/insights.js").read_text()
    (streamed,) = re.findall(r'if \(!finished\)\s*\{?\s*showError\("([^"]+)"', script)

    cut_page = page_text(staff.get(f"/admin/insights/insightquery/{cut.pk}/change/"))
    answered_page = page_text(staff.get(f"/admin/insights/insightquery/{answered.pk}/change/"))

    assert "Error code: interrupted" in cut_page
    assert "Message shown: No refusal: the answer stopped unfinished (the server answering it stopped)." in cut_page
    assert f"A page streaming it said “{streamed}”" in cut_page
    assert "No message" not in cut_page
    assert "Message shown: -" in answered_page


def test_an_answer_a_worker_on_older_code_wrote_mid_deploy_reads_complete_in_admin_as_in_the_api(world, staff):
    (row,) = seed(world.acme, 40, user=world.acme_member)
    InsightQuery.objects.filter(pk=row.pk).update(stop_reason=None)  # answered before stop reasons were recorded

    listed = staff.get("/admin/insights/insightquery/").content.decode()

    assert '<td class="field-ended">Complete</td>' in listed
    assert "Ended: Complete" in page_text(staff.get(f"/admin/insights/insightquery/{row.pk}/change/"))  # as listed
    assert console(world.acme_member).get("/api/v1/orgs/acme/insights/queries").json()["items"][0]["stopReason"] == (
        "complete"
    )


def test_the_ended_filter_and_sort_count_a_mid_deploy_answer_as_complete_as_its_column_does(world, staff):
    # The column says "Complete" of an answer a worker on older code wrote mid-deploy, but the filter's Complete
    # choice (and its count) left it out, and sorting by the column put it among the failed and pending ones ("-").
    mid_deploy, failed, whole, cut, pending, older_mid_deploy = seed(world.acme, 60, 50, 40, 30, 20, 10)
    InsightQuery.objects.filter(pk__in=[mid_deploy.pk, older_mid_deploy.pk]).update(stop_reason=None)
    InsightQuery.objects.filter(pk=failed.pk).update(outcome="failed", error_code="interrupted", stop_reason=None)
    InsightQuery.objects.filter(pk=pending.pk).update(outcome="pending", answer="", stop_reason=None)
    InsightQuery.objects.filter(pk=cut.pk).update(stop_reason="max_tokens")
    queries = "/admin/insights/insightquery/"
    column = staff.get(queries).context["cl"].list_display.index("ended")

    complete = staff.get(queries, {"stop_reason__exact": "complete", "_facets": "1"})
    cut_short = staff.get(queries, {"stop_reason__exact": "max_tokens", "_facets": "1"})
    ascending, descending = (staff.get(queries, {"o": order}) for order in (f"{column}", f"-{column}"))

    assert {row.pk for row in complete.context["cl"].result_list} == {mid_deploy.pk, whole.pk, older_mid_deploy.pk}
    assert {row.pk for row in cut_short.context["cl"].result_list} == {cut.pk}
    assert "Complete (3)" in page_text(complete) and "Cut short at the length limit (1)" in page_text(complete)
    for response in (ascending, descending):
        ended = re.findall(r'<td class="field-ended">([^<]*)</td>', response.content.decode())
        runs = [state for n, state in enumerate(ended) if n == 0 or ended[n - 1] != state]
        assert sorted(ended) == sorted(["Complete"] * 3 + ["Cut short at the length limit"] + ["-"] * 2)
        assert len(runs) == len(set(runs)), ended  # each state in one run: none mixed with another


def test_staff_find_the_queries_that_failed_on_an_invalid_key_last_week_by_error_code_and_date(world, staff):
    # Support asked "all queries that failed on an invalid key last week" had no filter by error code: only the
    # column, read row by row through a log of every query ever asked.
    rejected, unreadable, answered, rejected_long_ago = seed(world.acme, 2 * 86400, 3 * 86400, 86400, 30 * 86400)
    InsightQuery.objects.filter(pk__in=[rejected.pk, rejected_long_ago.pk]).update(
        outcome="failed", error_code="claude_api_key_invalid", stop_reason=None
    )
    InsightQuery.objects.filter(pk=unreadable.pk).update(
        outcome="failed", error_code="claude_api_key_unreadable", stop_reason=None
    )
    queries = "/admin/insights/insightquery/"
    listed = staff.get(queries)
    link = re.search(r'<a href="([^"]*)">Key rejected by Anthropic \(claude_api_key_invalid\)</a>', sidebar(listed))

    rejected_at_all = staff.get(queries + html.unescape(link.group(1)) + "&_facets=1")  # with its count
    week = re.search(r'<a href="([^"]*)">Past 7 days[^<]*</a>', sidebar(rejected_at_all))  # keeps the code chosen
    last_week = staff.get(queries + html.unescape(week.group(1)))

    assert {row.pk for row in rejected_at_all.context["cl"].result_list} == {rejected.pk, rejected_long_ago.pk}
    assert "Key rejected by Anthropic (claude_api_key_invalid) (2)" in page_text(rejected_at_all)
    assert {row.pk for row in last_week.context["cl"].result_list} == {rejected.pk}
    # Every code the app records is a choice, in words, beside the code the column and the API show.
    (by_code,) = (spec for spec in listed.context["cl"].filter_specs if spec.title == "error code")
    choices = dict(by_code.lookup_choices)
    assert set(choices) == {*FAILURE_MESSAGES, INTERRUPTED}
    assert all(label.endswith(f"({code})") and len(label) > len(code) + 3 for code, label in choices.items())


class TestDeleteOrganisation:
    def test_a_superuser_can_delete_an_organisation_whose_key_was_saved_and_its_audit_goes_with_it(self, world, staff):
        services.claude_api_key_set(
            membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None
        )

        asked = staff.get(f"{ORGS}{world.acme.pk}/delete/")
        deleted = staff.post(f"{ORGS}{world.acme.pk}/delete/", {"post": "yes"})

        assert asked.status_code == 200 and "Yes, I’m sure" in asked.content.decode()
        assert deleted.status_code == 302
        assert not Organisation.objects.filter(pk=world.acme.pk).exists()
        assert not AuditEvent.objects.exists() and not ClaudeApiKey.objects.exists()

    def test_the_confirmation_counts_the_rows_that_go_with_it_without_loading_them(self, world, staff):
        seed_spread(world.acme, 60, oldest=7200)
        store_key(world.acme, CANARY_KEY)

        with CaptureQueriesContext(connection) as queries:
            page = staff.get(f"{ORGS}{world.acme.pk}/delete/").content.decode()

        # A busy organisation has hundreds of thousands of queries: counted, never fetched.
        assert not [q["sql"] for q in queries.captured_queries if '"insights_insightquery"."answer"' in q["sql"]]
        assert "Insight queries: 60" in page and "Memberships: 3" in page
        assert "Claude API keys: 1" in page
        assert CANARY_KEY not in page
        assert "Insight query: " not in page

    def test_deleting_removes_the_rows_in_bulk_without_loading_them(self, world, staff):
        seed_spread(world.acme, 200, oldest=7200)
        seed_spread(world.globex, 10, oldest=7200)
        action = {"action": "delete_selected", "_selected_action": [world.acme.pk, world.globex.pk]}

        with CaptureQueriesContext(connection) as queries:
            asked = staff.post(ORGS, action)
            done = staff.post(ORGS, {**action, "post": "yes"})

        assert "Insight queries: 200" in asked.content.decode() and done.status_code == 302
        assert not InsightQuery.objects.exists()
        assert not [q["sql"] for q in queries.captured_queries if '"insights_insightquery"."answer"' in q["sql"]]

    def test_audit_events_still_cannot_be_deleted_one_by_one(self, world, staff):
        services.claude_api_key_set(
            membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None
        )
        event = AuditEvent.objects.get()

        assert staff.get(f"/admin/orgs/auditevent/{event.pk}/delete/").status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        ORGS + "?plan__exact=%00",
        ORGS + "?plan__exact=%00&plan__exact=institutional",  # admin filters read every value of a key
        "/admin/orgs/auditevent/?action__exact=%00",
        "/admin/insights/insightquery/?outcome__exact=%00",
        "/admin/autocomplete/?app_label=orgs&model_name=membership&field_name=user&term=%00",
    ],
)
def test_a_nul_in_an_admin_filter_or_search_is_a_400_not_a_500(world, staff, url):
    # PostgreSQL refuses NUL in a text comparison; SQLite does not, so this fails only there without the guard.
    staff.raise_request_exception = False

    assert staff.get(url).status_code == 400


def test_a_nul_in_an_api_query_string_is_a_json_400(world):
    response = console(world.acme_member).get("/api/v1/orgs/acme/insights/queries?limit=%00")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


class TestRemoveKeyAction:
    def test_staff_who_may_only_view_organisations_cannot_remove_a_key(self, world):
        viewer = make_user("viewer@opsion.test", is_staff=True)
        viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
        store_key(world.acme, CANARY_KEY)

        client = console(viewer)
        offered = client.get(ORGS).content.decode()
        client.post(ORGS, {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk]}, follow=True)

        assert "remove_claude_api_key" not in offered
        assert stored_key(world.acme) == CANARY_KEY
        assert not AuditEvent.objects.exists()

    def test_staff_who_may_only_view_are_not_sent_to_an_action_they_do_not_have(self, world):
        viewer = make_user("viewer@opsion.test", is_staff=True)
        viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
        store_key(world.acme, CANARY_KEY)

        viewed = page_text(console(viewer).get(f"{ORGS}{world.acme.pk}/change/"))
        changed = page_text(console(world.staff).get(f"{ORGS}{world.acme.pk}/change/"))

        assert "Claude API key: In use." in viewed and "Remove it with" not in viewed
        assert "Claude API key: In use. Remove it with the list's action" in changed
        assert CANARY_KEY not in viewed

    def test_it_deletes_the_key_and_audits_the_removal(self, world, staff):
        store_key(world.acme, CANARY_KEY)
        store_key(world.globex, GOOD_KEY)

        action = {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk, world.initech.pk]}
        asked = staff.post(ORGS, action, REMOTE_ADDR="10.1.2.3")
        # One key to remove (initech has none): asked of "this organisation", not "these organisations".
        assert "<title>Remove the Claude API key? |" in asked.content.decode()
        assert "Remove the stored Claude API key of this organisation?" in asked.content.decode()
        assert stored_key(world.acme) == CANARY_KEY and not AuditEvent.objects.exists()  # nothing yet

        response = staff.post(ORGS, {**action, "confirm": "yes"}, REMOTE_ADDR="10.1.2.3", follow=True)

        page = response.content.decode()
        assert "Removed the Claude API key of 1 organisation." in page
        assert not ClaudeApiKey.objects.filter(organisation=world.acme).exists()
        assert stored_key(world.globex) == GOOD_KEY
        event = AuditEvent.objects.get()
        assert (event.organisation, event.action, event.actor, event.ip, event.via) == (
            world.acme,
            AuditAction.KEY_REMOVED,
            world.staff,
            "10.1.2.3",
            "admin",
        )
        assert CANARY_KEY not in page
        assert not LogEntry.objects.filter(change_message__contains=CANARY_KEY).exists()

    def test_the_confirmation_names_each_key_and_warns_of_a_lockout(self, world, staff):
        store_key(world.acme, CANARY_KEY)
        store_key(world.globex, GOOD_KEY)  # left from an earlier plan: unused
        seed_spread(world.acme, 25, oldest=3000, newest=60, source="organisation")
        selected = [world.acme.pk, world.globex.pk, world.initech.pk]

        page = staff.post(ORGS, {"action": "remove_claude_api_key", "_selected_action": selected}).content.decode()

        text = " ".join(re.sub(r"<[^>]+>", "", page).split())
        assert (
            "Acme Digital Assets (Institutional): its AI Insights queries move to Opsion's platform key at once, "
            "limited to 20 queries per rolling 60 minutes. It has used 25 queries in the window, so no one in it "
            "can ask AI Insights for about 21 min." in text
        )
        assert "Globex Payments (Professional): the key is not in use on this plan" in text
        assert "Remove the stored Claude API key of these organisations?" in text
        assert "<title>Remove Claude API keys? |" in page
        assert "1 other selected organisation has no key stored." in text
        assert 'value="Yes, remove the keys"' in page
        assert page.count('name="_selected_action"') == 3 and 'name="confirm" value="yes"' in page
        assert CANARY_KEY not in page and GOOD_KEY not in page
        assert ClaudeApiKey.objects.count() == 2

    def test_the_confirmation_reads_every_organisations_window_in_as_many_queries_however_many(self, world, staff):
        # Each organisation's window was counted in a query of its own (and when its next query fits in another):
        # a confirmation for 50 organisations made 100 queries more.
        orgs = [
            Organisation.objects.create(name=f"Org {i}", slug=f"org-{i}", plan=Plan.INSTITUTIONAL) for i in range(4)
        ]
        for org in orgs:
            store_key(org, GOOD_KEY)
            seed_spread(org, 25, oldest=3000, newest=60, source="organisation")  # locked out on the platform key

        def confirmation_for(selected) -> tuple[str, int]:
            action = {"action": "remove_claude_api_key", "_selected_action": [org.pk for org in selected]}
            with CaptureQueriesContext(connection) as queries:
                response = staff.post(ORGS, action)
            assert response.status_code == 200
            return page_text(response), len(queries)

        confirmation_for(orgs[:1])  # fills the caches the first view fills
        one, for_one = confirmation_for(orgs[:1])
        every, for_every = confirmation_for(orgs)

        locked_out = "It has used 25 queries in the window, so no one in it can ask AI Insights for about 21 min."
        assert one.count(locked_out) == 1 and every.count(locked_out) == 4
        assert "Remove the stored Claude API key of these organisations?" in every
        assert for_every == for_one

    def test_the_confirmation_looks_like_djangos_own_and_leads_back_to_the_organisations(self, world, staff):
        # Django's deletion confirmation marks its "Yes" as destructive (red) and its "No" as the way out (grey), by
        # the body's class; without it both were the same blue button. Its breadcrumbs lead back to the list.
        store_key(world.acme, CANARY_KEY)

        page = staff.post(ORGS, {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk]})
        html_ = page.content.decode()

        body = re.search(r"<body[^>]*class=\"([^\"]*)\"", html_).group(1).split()
        assert "delete-confirmation" in body and "model-organisation" in body
        breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', html_, re.S).group(1)
        assert f'href="{ORGS}"' in breadcrumbs and "Organisations" in breadcrumbs
        assert 'value="Yes, remove the key"' in html_  # one key: not "the keys"

    def test_taking_the_way_back_keeps_the_lists_search_and_filters(self, world, staff):
        # Staff who searched and filtered the list, then chose "No, take me back", lost both.
        store_key(world.acme, CANARY_KEY)
        listed = f"{ORGS}?q=acme&plan__exact={Plan.INSTITUTIONAL}"
        action = {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk]}

        page = html.unescape(staff.post(listed, action).content.decode())
        nothing = html.unescape(
            staff.post(f"{ORGS}?q=globex", {**action, "_selected_action": [world.globex.pk]}).content.decode()
        )
        done = staff.post(listed, {**action, "confirm": "yes"})

        back = re.search(r'<a href="([^"]*)" class="button cancel-link">No, take me back</a>', page).group(1)
        assert back.startswith(f"{ORGS}?") and parse_qs(back.split("?", 1)[1]) == {
            "q": ["acme"],
            "plan__exact": [Plan.INSTITUTIONAL],
        }
        assert staff.get(back).status_code == 200 and set(rows_of(staff.get(back).content.decode())) == {
            "Acme Digital Assets"
        }
        assert f'<a href="{ORGS}?q=globex">Back to the organisations</a>' in nothing
        assert re.search(r'<form method="post"(?: action="")?>', page)  # the "Yes" posts back to the filtered list
        assert done["Location"] == listed and not ClaudeApiKey.objects.exists()

    def test_a_confirmation_whose_keys_were_removed_meanwhile_says_nothing_was_removed(self, world, staff):
        # The customer removed their key while staff's confirmation stood open: "Removed … of 0" read as a success.
        store_key(world.acme, CANARY_KEY)
        action = {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk], "index": "0"}
        staff.post(ORGS, action)
        ClaudeApiKey.objects.filter(organisation=world.acme).delete()

        response = staff.post(ORGS, {**action, "confirm": "yes"}, follow=True)

        said = [(m.level_tag, str(m)) for m in response.context["messages"]]
        assert said == [("warning", "No key was removed: none of the selected organisations has one stored now.")]
        assert not AuditEvent.objects.exists()

    def test_a_removal_is_in_the_organisations_history_and_one_with_no_key_is_not(self, world, staff):
        # Staff answering "who removed our key?" open the organisation's History, where a plan change shows too.
        store_key(world.acme, CANARY_KEY)
        action = {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk, world.globex.pk]}

        staff.post(ORGS, {**action, "confirm": "yes"})

        acme = staff.get(f"{ORGS}{world.acme.pk}/history/").content.decode()
        globex = staff.get(f"{ORGS}{world.globex.pk}/history/").content.decode()
        assert "Removed the Claude API key." in acme and "staff@opsion.test" in acme
        assert "Removed the Claude API key." not in globex
        assert CANARY_KEY not in acme


class TestOtherModels:
    def test_users_are_listed_and_editable(self, world, staff):
        listing = staff.get("/admin/orgs/user/").content.decode()
        change = staff.get(f"/admin/orgs/user/{world.acme_admin.pk}/change/").content.decode()

        assert "admin@acme.test" in listing
        assert 'name="email" value="admin@acme.test"' in change

    def test_a_users_page_names_their_organisations_and_links_to_their_memberships(self, world, staff):
        # Staff deactivating or resetting someone ask first where they are a member, and as what.
        Membership.objects.create(user=world.acme_member, organisation=world.globex, role=Role.ADMIN)

        response = staff.get(f"/admin/orgs/user/{world.acme_member.pk}/change/")
        outsider = page_text(staff.get(f"/admin/orgs/user/{world.outsider.pk}/change/"))

        assert "Organisations: Acme Digital Assets (Member), Globex Payments (Admin)" in page_text(response)
        assert f'href="/admin/orgs/membership/?user__id__exact={world.acme_member.pk}"' in response.content.decode()
        assert "Organisations: None." in outsider
        theirs = staff.get("/admin/orgs/membership/", {"user__id__exact": world.acme_member.pk})
        assert theirs.status_code == 200 and "2 memberships" in page_text(theirs)

    @pytest.mark.parametrize("perms, linked", [([], False), (["view_membership"], True), (["change_membership"], True)])
    def test_the_memberships_link_is_offered_only_to_staff_who_may_open_it(self, world, perms, linked):
        # Support staff who may see users but not memberships followed "Their memberships" to a 403.
        support = make_user("support@opsion.test", is_staff=True)
        support.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user", *perms]))
        client = console(support)
        memberships = f"/admin/orgs/membership/?user__id__exact={world.acme_member.pk}"

        response = client.get(f"/admin/orgs/user/{world.acme_member.pk}/change/")

        assert response.status_code == 200
        assert "Organisations: Acme Digital Assets (Member)" in page_text(response)  # the names, for everyone
        assert (f'href="{memberships}"' in response.content.decode()) is linked
        assert ("Their memberships" in page_text(response)) is linked
        assert (client.get(memberships).status_code == 200) is linked

    def test_api_tokens_never_show_their_hash(self, world, staff):
        _, raw = services.api_token_create(user=world.acme_admin, name="pipeline")
        token = ApiToken.objects.get()

        listing = staff.get("/admin/orgs/apitoken/").content.decode()
        change = staff.get(f"/admin/orgs/apitoken/{token.pk}/change/").content.decode()

        assert "pipeline" in listing
        assert token.prefix in listing
        for page in (listing, change):
            assert token.token_hash not in page
            assert raw not in page
        assert staff.get("/admin/orgs/apitoken/add/").status_code == 403

    def test_a_token_cannot_be_moved_to_another_user_renamed_or_given_a_new_expiry_in_admin(self, world, staff):
        # A token acts as its user: moved to another, whoever holds it (staff who made it, say) would act as them.
        token, _ = services.api_token_create(user=world.acme_member, name="pipeline")
        url = f"/admin/orgs/apitoken/{token.pk}/change/"

        page = staff.get(url).content.decode()
        staff.post(url, {"user": world.acme_owner.pk, "name": "renamed", "expires_at_0": "2099-01-01"})

        for field in ("user", "name", "expires_at", "last_used_at"):
            assert f'name="{field}' not in page
        token.refresh_from_db()
        assert (token.user, token.name) == (world.acme_member, "pipeline")

    def test_a_tokens_page_is_for_viewing_and_deleting_with_no_save_that_changes_nothing(self, world, staff):
        # Every field is read-only, yet the page read "Change API token" with Save buttons: a Save said "was changed
        # successfully" and wrote "No fields changed." into the token's history.
        token, _ = services.api_token_create(user=world.acme_member, name="pipeline")
        url = f"/admin/orgs/apitoken/{token.pk}/change/"

        page = html.unescape(staff.get(url).content.decode())
        listing = html.unescape(staff.get("/admin/orgs/apitoken/").content.decode())
        saved = staff.post(url, {"_save": "Save"})

        assert "<title>pipeline (" in page and "| View API token |" in page
        assert 'name="_save"' not in page and 'name="_continue"' not in page
        assert f'href="/admin/orgs/apitoken/{token.pk}/delete/"' in page
        assert "Select API token to view" in listing
        assert saved.status_code == 403
        assert not LogEntry.objects.filter(object_id=str(token.pk)).exists()
        assert staff.post(f"/admin/orgs/apitoken/{token.pk}/delete/", {"post": "yes"}).status_code == 302
        assert not ApiToken.objects.filter(pk=token.pk).exists()

    def test_a_token_is_found_by_the_prefix_its_owner_sees_in_settings(self, world, staff):
        # "Our token opsn_AbC… leaked": Settings lists it by that prefix, and staff deleting it search by it.
        leaked, _ = services.api_token_create(user=world.acme_owner, name="CI")
        services.api_token_create(user=world.acme_owner, name="Laptop")

        page = staff.get("/admin/orgs/apitoken/", {"q": leaked.prefix}).content.decode()

        assert ">CI</a>" in page and "Laptop" not in page

    def test_api_tokens_show_when_they_expire_and_filter_by_it(self, world, staff):
        now = timezone.now()
        active, _ = services.api_token_create(user=world.acme_admin, name="active one")
        expired, _ = services.api_token_create(user=world.acme_admin, name="expired one")
        legacy, _ = services.api_token_create(user=world.acme_admin, name="legacy one")
        ApiToken.objects.filter(pk=expired.pk).update(expires_at=now - timedelta(days=1))
        ApiToken.objects.filter(pk=legacy.pk).update(expires_at=None)

        listing = staff.get("/admin/orgs/apitoken/").content.decode()
        change = staff.get(f"/admin/orgs/apitoken/{active.pk}/change/").content.decode()
        only_expired = staff.get("/admin/orgs/apitoken/", {"expiry": "expired"}).content.decode()
        only_active = staff.get("/admin/orgs/apitoken/", {"expiry": "active"}).content.decode()
        only_legacy = staff.get("/admin/orgs/apitoken/", {"expiry": "never"}).content.decode()

        assert "column-expires_at" in listing
        assert 'name="expires_at"' not in change  # read-only: shown, not a field
        assert "Expires at" in change
        assert "expired one" in only_expired and "active one" not in only_expired and "legacy one" not in only_expired
        assert "active one" in only_active and "legacy one" in only_active and "expired one" not in only_active
        assert "legacy one" in only_legacy and "active one" not in only_legacy

    def test_audit_events_are_read_only(self, world, staff):
        services.claude_api_key_set(
            membership=world.membership(world.acme_admin, world.acme), raw_key=CANARY_KEY, ip="203.0.113.1"
        )
        event = AuditEvent.objects.get()

        listing = staff.get("/admin/orgs/auditevent/").content.decode()
        change = staff.get(f"/admin/orgs/auditevent/{event.pk}/change/")

        assert "admin@acme.test" in listing
        assert "203.0.113.1" in listing
        assert change.status_code == 200
        assert 'name="_save"' not in change.content.decode()
        assert staff.post(f"/admin/orgs/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
        assert staff.get("/admin/orgs/auditevent/add/").status_code == 403
        assert staff.post(f"/admin/orgs/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
        assert AuditEvent.objects.filter(pk=event.pk, action=AuditAction.KEY_SAVED).exists()
        assert CANARY_KEY not in listing + change.content.decode()

    def test_an_audit_events_page_says_when_it_happened(self, world, staff):
        # The list has the time; the event's own page left it out (created_at is not a form field), so a row opened
        # from a search said who and what but not when.
        event = AuditEvent.objects.create(
            organisation=world.acme, action=AuditAction.KEY_REMOVED, actor_email="admin@acme.test", ip="203.0.113.9"
        )
        AuditEvent.objects.filter(pk=event.pk).update(created_at=timezone.now().replace(2026, 3, 12, 9, 30))

        text = page_text(staff.get(f"/admin/orgs/auditevent/{event.pk}/change/"))

        assert "Created at: 12 Mar 2026, 09:30 UTC" in text
        assert "IP: 203.0.113.9" in text and "Ip:" not in text

    def test_admin_times_say_they_are_utc_as_the_customers_pages_do(self, world, staff):
        # "8:43 a.m." with no zone, while the customer's audit log says "08:43 UTC": staff on a call compared the two.
        at = timezone.now().replace(2026, 3, 12, 8, 43)
        event = AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_SAVED)
        AuditEvent.objects.filter(pk=event.pk).update(created_at=at)
        token, _ = services.api_token_create(user=world.acme_admin, name="pipeline")
        ApiToken.objects.filter(pk=token.pk).update(created_at=at, expires_at=at + timedelta(days=90))
        world.acme_admin.last_login = at
        world.acme_admin.save(update_fields=["last_login"])

        pages = {
            "audit list": page_text(staff.get("/admin/orgs/auditevent/")),
            "audit event": page_text(staff.get(f"/admin/orgs/auditevent/{event.pk}/change/")),
            "token list": page_text(staff.get("/admin/orgs/apitoken/")),
            "token": page_text(staff.get(f"/admin/orgs/apitoken/{token.pk}/change/")),
            "organisation list": page_text(staff.get(ORGS)),
        }
        customer = page_text(console(world.acme_owner).get("/orgs/acme/settings/audit-log/"))

        assert "12 Mar 2026, 08:43 UTC" in customer
        for name in ("audit list", "audit event", "token list", "token"):
            assert "12 Mar 2026, 08:43 UTC" in pages[name], name
        assert "10 Jun 2026, 08:43 UTC" in pages["token list"] and "10 Jun 2026, 08:43 UTC" in pages["token"]
        created = world.acme.created_at.strftime("%d %b %Y, %H:%M UTC").lstrip("0")
        assert created in pages["organisation list"]
        for text in pages.values():
            assert "a.m." not in text and "p.m." not in text

    def test_the_audit_lists_time_column_still_sorts_by_the_time_both_ways(self, world, staff):
        # The column is written in the UTC format; clicking its heading must still sort by the stored time, and not
        # leave it unsortable (a display method without `ordering`). The times are in neither order of the primary
        # key, so neither the list's default (newest row first) nor the rows' order passes for them.
        now = timezone.now()
        for email, days_ago in (("b@x.test", 2), ("a@x.test", 3), ("c@x.test", 1)):  # made in this order
            event = AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_SAVED, actor_email=email)
            AuditEvent.objects.filter(pk=event.pk).update(created_at=now - timedelta(days=days_ago))

        def heading_link(page: str) -> str:
            """Where the time column's heading leads (its sort, or the other way round once sorted by it)."""
            headings = [th for th in re.findall(r'<th scope="col".*?</th>', page, re.S) if ">Created at<" in th]
            link = re.search(r'<div class="text"><a href="([^"]+)">Created at</a>', headings[0]) if headings else None
            assert link, "the time column cannot be sorted"
            return html.unescape(link.group(1))

        def emails_in(page: str) -> list[str]:
            return sorted(["a@x.test", "b@x.test", "c@x.test"], key=page.index)

        oldest_first = staff.get(
            f"/admin/orgs/auditevent/{heading_link(staff.get('/admin/orgs/auditevent/').content.decode())}"
        ).content.decode()
        newest_first = staff.get(f"/admin/orgs/auditevent/{heading_link(oldest_first)}").content.decode()

        assert emails_in(oldest_first) == ["a@x.test", "b@x.test", "c@x.test"]
        assert emails_in(newest_first) == ["c@x.test", "b@x.test", "a@x.test"]

    def test_the_key_model_is_not_in_admin(self, world, staff):
        store_key(world.acme, CANARY_KEY)

        index = staff.get("/admin/").content.decode()

        assert "claudeapikey" not in index.lower()
        assert staff.get("/admin/orgs/claudeapikey/").status_code == 404
        assert CANARY_KEY not in index


def test_a_user_staff_add_with_capitals_in_the_address_can_sign_in_however_they_type_it(staff):
    # The sign-in form lower-cases what is typed; addresses must be stored that way whichever way in.
    response = staff.post(
        "/admin/orgs/user/add/",
        {
            "email": "Ada.Lovelace@Example.COM",
            "password1": "a-long-new-password-1",
            "password2": "a-long-new-password-1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.filter(email="ada.lovelace@example.com").exists()

    for typed in ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"):
        client = Client()
        client.post("/accounts/login/", {"username": typed, "password": "a-long-new-password-1"})
        assert "_auth_user_id" in client.session, typed


def test_staff_cannot_add_an_address_that_differs_from_a_users_only_in_case(staff, world):
    response = staff.post(
        "/admin/orgs/user/add/",
        {"email": "Admin@ACME.test", "password1": "a-long-new-password-1", "password2": "a-long-new-password-1"},
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.filter(email__iexact="admin@acme.test").count() == 1


@pytest.mark.parametrize(
    "address", ["sk-ant-api03-abcdefghijklmnopqrstuvwx@acme.test", "opsn_abcdefghijklmnopqrstuvwx@acme.test"]
)
def test_staff_cannot_add_an_address_in_the_form_of_a_key_or_token(staff, world, address):
    # Such an address passes Django's e-mail check, then is blanked in every log line and audit detail naming the
    # user, and refused by the sign-in form: the account could never sign in. The box does not type it back.
    response = staff.post(
        "/admin/orgs/user/add/",
        {"email": address, "password1": "a-long-new-password-1", "password2": "a-long-new-password-1"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "That looks like a Claude API key or an API token, not an e-mail address: it was not kept." in page
    assert address.split("@")[0] not in page
    assert not User.objects.filter(email=address).exists()


def test_staff_cannot_change_an_address_into_the_form_of_a_key(staff, world):
    address = "sk-ant-api03-abcdefghijklmnopqrstuvwx@acme.test"
    response = staff.post(
        f"/admin/orgs/user/{world.acme_member.pk}/change/",
        TestStaffPrivileges.change_form(world.acme_member, email=address),
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "That looks like a Claude API key or an API token, not an e-mail address: it was not kept." in page
    assert address.split("@")[0] not in page
    world.acme_member.refresh_from_db()
    assert world.acme_member.email == "member@acme.test"


class TestStaffPrivileges:
    """Support staff who may change users cannot grant privileges or take over other staff accounts."""

    @pytest.fixture
    def support(self, world):
        user = make_user("support@opsion.test", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user", "delete_user"]))
        return user

    @staticmethod
    def change_form(user: User, **fields) -> dict:
        return {
            "email": user.email,
            "name": user.name,
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            **fields,
        }

    def test_support_staff_cannot_make_themselves_superuser(self, world, support):
        escalate = self.change_form(support, is_staff="on", is_superuser="on", name="Support")
        response = console(support).post(f"/admin/orgs/user/{support.pk}/change/", escalate)

        assert response.status_code == 302, response.content.decode()[:2000]
        support.refresh_from_db()
        assert (support.name, support.is_staff, support.is_superuser) == ("Support", True, False)
        assert not support.user_permissions.filter(codename="change_organisation").exists()

    def test_support_staff_cannot_make_a_customer_staff_or_grant_permissions(self, world, support):
        grant = Permission.objects.get(codename="change_organisation")
        form = self.change_form(world.acme_owner, is_staff="on", user_permissions=[grant.pk])
        page = console(support).get(f"/admin/orgs/user/{world.acme_owner.pk}/change/").content.decode()
        response = console(support).post(f"/admin/orgs/user/{world.acme_owner.pk}/change/", form)

        assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
        assert response.status_code == 302
        world.acme_owner.refresh_from_db()
        assert not world.acme_owner.is_staff
        assert not world.acme_owner.user_permissions.exists()

    def test_support_staff_cannot_change_or_delete_another_staff_account(self, world, support):
        client = console(support)
        target = world.staff  # a superuser
        password = {"password1": "a-long-new-password-1", "password2": "a-long-new-password-1"}

        changed = client.post(f"/admin/orgs/user/{target.pk}/change/", self.change_form(target, name="Mallory"))
        reset = client.post(f"/admin/orgs/user/{target.pk}/password/", password)
        deleted = client.post(f"/admin/orgs/user/{target.pk}/delete/", {"post": "yes"})

        assert (changed.status_code, reset.status_code, deleted.status_code) == (403, 403, 403)
        target.refresh_from_db()
        assert target.name != "Mallory" and not target.check_password("a-long-new-password-1")

    def test_support_staff_cannot_delete_a_staff_account_through_the_bulk_action(self, world, support):
        action = {"action": "delete_selected", "_selected_action": [world.staff.pk], "post": "yes"}

        response = console(support).post("/admin/orgs/user/", action)

        assert response.status_code in (200, 403)
        assert User.objects.filter(pk=world.staff.pk).exists()

    def test_support_staff_cannot_grant_permissions_through_their_own_group(self, world, support):
        team = Group.objects.create(name="Support")
        team.permissions.set(Permission.objects.filter(codename__in=["view_group", "change_group", "add_group"]))
        support.groups.add(team)
        grab = Permission.objects.filter(codename__in=["change_organisation", "add_membership", "change_membership"])
        client = console(support)

        changed = client.post(
            f"/admin/auth/group/{team.pk}/change/", {"name": "Support", "permissions": [p.pk for p in grab]}
        )
        added = client.post("/admin/auth/group/add/", {"name": "Mine", "permissions": [p.pk for p in grab]})

        assert (changed.status_code, added.status_code) == (403, 403)
        support = User.objects.get(pk=support.pk)  # fresh: permissions are cached per instance
        assert not support.has_perm("orgs.change_organisation") and not Group.objects.filter(name="Mine").exists()
        assert client.get(f"/admin/auth/group/{team.pk}/change/").status_code == 200  # may still look

    def test_superusers_still_manage_groups(self, world, staff):
        grant = Permission.objects.get(codename="view_organisation")

        response = staff.post("/admin/auth/group/add/", {"name": "Support", "permissions": [grant.pk]})

        assert response.status_code == 302
        assert list(Group.objects.get(name="Support").permissions.all()) == [grant]

    def test_superusers_still_grant_staff_status(self, world, staff):
        form = self.change_form(world.acme_owner, is_staff="on")
        response = staff.post(f"/admin/orgs/user/{world.acme_owner.pk}/change/", form)

        assert response.status_code == 302
        world.acme_owner.refresh_from_db()
        assert world.acme_owner.is_staff


def test_staff_cannot_demote_the_last_active_manager_beside_a_deactivated_one(world, staff):
    # acme's Owner left and was deactivated: its Admin is the only one who can still sign in and manage the key.
    world.acme_owner.is_active = False
    world.acme_owner.save(update_fields=["is_active"])
    data = organisation_admin_form(world.acme)
    rows = {v: k.removesuffix("-user") for k, v in data.items() if k.endswith("-user")}
    data[rows[str(world.acme_admin.pk)] + "-role"] = Role.MEMBER

    refused = staff.post(f"{ORGS}{world.acme.pk}/change/", data)

    assert refused.status_code == 200
    assert "This would leave the organisation without an active Owner or Admin" in refused.content.decode()
    assert world.acme.memberships.get(user=world.acme_admin).role == Role.ADMIN


def test_deactivating_and_reactivating_a_user_reach_each_organisations_audit_log(world, staff):
    # Deactivating an Admin decides who may manage the key as much as deleting them does: the customer sees it.
    target = world.initech_admin
    staff.post(f"/admin/orgs/user/{target.pk}/change/", user_admin_form(target, is_active=None))
    target.refresh_from_db()
    staff.post(f"/admin/orgs/user/{target.pk}/change/", user_admin_form(target, is_active="on"))

    recorded = [(e.action, e.detail, e.via) for e in AuditEvent.objects.filter(organisation=world.initech)]
    assert recorded == [
        (AuditAction.ACCOUNT_REACTIVATED, "admin@initech.test (Admin)", "admin"),
        (AuditAction.ACCOUNT_DEACTIVATED, "admin@initech.test (Admin)", "admin"),
    ]
    assert not AuditEvent.objects.exclude(organisation=world.initech).exists()


def test_a_downgrade_that_locks_an_organisation_out_warns_as_removing_its_key_would(world, staff):
    # Off a BYOM plan its stored key goes unused: the platform key's 20 apply at once to the 25 already asked.
    store_key(world.acme, CANARY_KEY)
    seed_spread(world.acme, 25, oldest=3000, newest=60, source="organisation")

    response = staff.post(
        f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL), follow=True
    )

    world.acme.refresh_from_db()
    assert world.acme.plan == Plan.PROFESSIONAL  # staff may downgrade; they are told what it does
    text = html.unescape(" ".join(re.sub(r"<[^>]+>", "", response.content.decode()).split()))
    assert (
        "Acme Digital Assets now uses Opsion's platform key, limited to 20 queries per rolling 60 minutes. It has "
        "used 25 queries in the window, so no one in it can ask AI Insights for about 21 min." in text
    )
    assert CANARY_KEY not in response.content.decode()


def test_a_downgrade_within_the_platform_limit_is_not_warned_about(world, staff):
    store_key(world.acme, CANARY_KEY)
    seed_spread(world.acme, 5, oldest=3000, newest=60, source="organisation")

    response = staff.post(
        f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL), follow=True
    )

    world.acme.refresh_from_db()
    assert world.acme.plan == Plan.PROFESSIONAL  # downgraded: a refused form would warn about nothing either
    assert "no one in it can ask AI Insights" not in response.content.decode()


def test_a_downgrade_says_the_stored_key_is_now_unused_and_kept(world, staff):
    # The document: a downgrade removes the key from future queries; it stays stored until removed or the plan returns.
    store_key(world.acme, CANARY_KEY)

    response = staff.post(
        f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL), follow=True
    )

    assert (
        "Acme Digital Assets now uses Opsion's platform key, limited to 20 queries per rolling 60 minutes. Its Claude "
        "API key stays stored, unused, until it is removed or the plan returns." in page_text(response)
    )
    assert stored_key(world.acme) == CANARY_KEY and CANARY_KEY not in response.content.decode()


def test_restoring_a_byom_plan_says_the_stored_key_is_in_use_again(world, staff):
    # A key left behind months ago starts receiving the organisation's questions the moment the plan returns.
    store_key(world.globex, CANARY_KEY)
    ClaudeApiKey.objects.filter(organisation=world.globex).update(saved_at=timezone.now().replace(2026, 3, 12))

    response = staff.post(
        f"{ORGS}{world.globex.pk}/change/", organisation_admin_form(world.globex, plan=Plan.INSTITUTIONAL), follow=True
    )

    assert (
        "The stored Claude API key of Globex Payments (saved 12 Mar 2026) is in use again: its AI Insights queries "
        "now go to that key, limited to 200 queries per rolling 60 minutes. If the organisation no longer wants it "
        "used, remove it with the list's action." in page_text(response)
    )
    assert CANARY_KEY not in response.content.decode()


def test_restoring_a_byom_plan_to_a_key_anthropic_rejected_does_not_tell_staff_its_queries_now_run(world, staff):
    # The Owners and Admins are mailed that queries will fail until a valid key is saved; staff, who may be on the
    # phone with them, were told the queries "now go to that key" as if it answered.
    store_key(world.globex, CANARY_KEY)
    ClaudeApiKey.objects.filter(organisation=world.globex).update(
        saved_at=timezone.now().replace(2026, 3, 12), status=KeyStatus.INVALID
    )

    response = staff.post(
        f"{ORGS}{world.globex.pk}/change/", organisation_admin_form(world.globex, plan=Plan.INSTITUTIONAL), follow=True
    )

    assert (
        "The stored Claude API key of Globex Payments (saved 12 Mar 2026) is in use again, limited to 200 queries per "
        "rolling 60 minutes, but Anthropic rejected it when it was last used: its AI Insights queries will fail until "
        "the organisation saves a valid key. If it no longer wants it used, remove it with the list's action."
        in page_text(response)
    )


@pytest.mark.parametrize("plan, status", [(Plan.INSTITUTIONAL, KeyStatus.VALID), (Plan.CUSTOM, KeyStatus.INVALID)])
def test_restoring_a_byom_plan_to_a_key_no_configured_entry_opens_does_not_tell_staff_its_queries_now_run(
    world, staff, plan, status
):
    # The Owners and Admins are mailed that Opsion cannot decrypt the key and queries are refused until it is saved
    # again; staff were told the queries "now go to that key" (or, of a key Anthropic had rejected too, only that).
    store_key(world.globex, CANARY_KEY)
    lost = Fernet(Fernet.generate_key())  # the encryption key it was sealed with, since dropped from the settings
    ClaudeApiKey.objects.filter(organisation=world.globex).update(
        saved_at=timezone.now().replace(2026, 3, 12),
        status=status,
        secret=Sealed(lost.encrypt(CANARY_KEY.encode()).decode()),
    )

    response = staff.post(
        f"{ORGS}{world.globex.pk}/change/", organisation_admin_form(world.globex, plan=plan), follow=True
    )

    assert (
        "The stored Claude API key of Globex Payments (saved 12 Mar 2026) is in use again, but no configured "
        "FIELD_ENCRYPTION_KEYS entry opens it: its AI Insights queries are "
        "refused until an Owner or Admin saves the key again, or the encryption key it was sealed with is configured "
        "again. If the organisation no longer wants it used, remove it with the list's action." in page_text(response)
    )
    assert "now go to that key" not in page_text(response) and "Anthropic rejected it" not in page_text(response)
    assert CANARY_KEY not in response.content.decode()


@pytest.mark.parametrize("plan", [Plan.CUSTOM, Plan.STARTER])
def test_a_plan_change_that_does_not_change_which_key_is_used_says_nothing_of_it(world, staff, plan):
    store_key(world.acme if plan == Plan.CUSTOM else world.globex, CANARY_KEY)
    org = world.acme if plan == Plan.CUSTOM else world.globex

    response = staff.post(f"{ORGS}{org.pk}/change/", organisation_admin_form(org, plan=plan), follow=True)

    said = [re.sub(r"<[^>]+>", "", str(message)) for message in response.context["messages"]]
    assert said == [f"The organisation “{org}” was changed successfully."]


@pytest.mark.parametrize("lookup", ["token_hash__startswith", "token_hash", "token_hash__gt"])
def test_a_token_list_cannot_be_filtered_by_the_tokens_hash(world, staff, lookup):
    # The hash is never shown, but a filter that matches or not would read it out one character at a time.
    services.api_token_create(user=world.acme_member, name="ci")
    staff.raise_request_exception = False

    assert staff.get("/admin/orgs/apitoken/", {lookup: "a"}).status_code == 400
    assert staff.get("/admin/orgs/apitoken/", {"user__id__exact": world.acme_member.pk}).status_code == 200


def test_guessing_the_old_password_on_admins_password_change_is_stopped_after_ten_tries(world, staff, clock):
    # Someone holding a staff member's session could otherwise try passwords there without limit, and learn
    # the one that outlives the session. The eleventh try within 15 minutes is not even checked.
    clock.to_second_of_window(f"user:{world.staff.pk}", 900, 449)  # the limit's window has 451 seconds left
    url = "/admin/password_change/"
    guess = {"old_password": "wrong", "new_password1": "a-New-passw0rd-1", "new_password2": "a-New-passw0rd-1"}
    for _ in range(10):
        assert staff.post(url, guess).status_code == 200  # the form again, saying the old password is wrong

    locked = staff.post(url, {**guess, "old_password": PASSWORD})

    assert locked.status_code == 429 and locked["Retry-After"] == "451"  # when the limit lifts, not 15 minutes
    assert "Too many attempts to change your password. Please try again in 8 minutes." in locked.content.decode()
    assert f"Reference: {locked['X-Request-ID']}" in locked.content.decode()  # as the site's own page shows it
    world.staff.refresh_from_db()
    assert world.staff.check_password(PASSWORD)  # not changed, though the old password was right
    assert console(world.acme_admin).post(url, guess).status_code == 302  # not staff: admin's own redirect


@pytest.mark.parametrize("superuser", [True, False])
def test_staff_change_their_own_password_only_where_the_old_one_is_asked_and_guesses_are_limited(world, superuser):
    # The user page's own password form sets a new password without the old one: someone holding a staff
    # member's session could set the password that outlives it there, instead of guessing it where guesses
    # are limited. For their own account staff are sent to admin's password change, which asks for the old one.
    me = make_user("support@opsion.test", is_staff=True, is_superuser=superuser)
    me.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user"]))
    client = console(me)
    url = f"/admin/orgs/user/{me.pk}/password/"

    shown = client.get(url)
    same_account = f"/admin/orgs/user/0{me.pk}/password/"  # written otherwise, as Django reads it
    posted = client.post(same_account, {"password1": "a-long-new-password-1", "password2": "a-long-new-password-1"})

    assert (shown.status_code, shown["Location"]) == (302, "/admin/password_change/")
    assert (posted.status_code, posted["Location"]) == (302, "/admin/password_change/")
    me.refresh_from_db()
    assert me.check_password(PASSWORD) and not me.check_password("a-long-new-password-1")


@pytest.mark.parametrize("superuser", [True, False])
def test_staff_cannot_change_their_own_email_address_which_a_reset_link_would_then_reach(
    world, superuser, settings, mailoutbox
):
    # A password reset link goes to the account's address: someone holding a staff member's session who could
    # change it on the user page would have the link mailed to them and set the password that outlives the session,
    # past admin's password change, which asks for the old one. Another superuser changes it.
    settings.EMAIL_CONFIGURED = True
    me = make_user("support@opsion.test", is_staff=True, is_superuser=superuser)
    me.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user"]))
    client = console(me)
    url = f"/admin/orgs/user/{me.pk}/change/"
    data = {"email": "thief@evil.example", "is_active": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00"}
    if superuser:
        data |= {"is_staff": "on", "is_superuser": "on"}

    assert client.post(url, data).status_code == 302  # the rest of the form is saved
    Client().post("/accounts/password/reset/", {"email": "thief@evil.example"})

    assert mailer.wait(timeout=10) and mailoutbox == []
    me.refresh_from_db()
    assert me.email == "support@opsion.test"
    world.staff.refresh_from_db()
    other = console(world.staff).get(f"/admin/orgs/user/{me.pk}/change/").content.decode()
    assert 'name="email"' in other  # another superuser still can


def test_a_password_set_by_staff_signs_the_user_out_everywhere_but_their_api_tokens_keep_working(world, staff):
    # Staff resetting a compromised account's password are told, on the form, that it does not revoke its tokens.
    signed_in = Client()
    signed_in.post("/accounts/login/", {"username": "member@acme.test", "password": PASSWORD})
    _, raw = services.api_token_create(user=world.acme_member, name="laptop")
    services.api_token_create(user=world.acme_member, name="ci")
    url = f"/admin/orgs/user/{world.acme_member.pk}/password/"

    page = html.unescape(staff.get(url).content.decode())
    response = staff.post(url, {"password1": "a-long-new-password-1", "password2": "a-long-new-password-1"})

    said = "A new password signs member@acme.test out of every session, but their 2 API tokens keep working."
    assert said in page
    assert f'href="/admin/orgs/apitoken/?user__id__exact={world.acme_member.pk}"' in page
    assert response.status_code == 302
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password("a-long-new-password-1")
    assert signed_in.get("/orgs/acme/insights/").status_code == 302  # to sign in again
    usage = Client().get("/api/v1/orgs/acme/insights/usage", headers={"Authorization": f"Bearer {raw}"})
    assert usage.status_code == 200
    no_tokens = html.unescape(staff.get(f"/admin/orgs/user/{world.acme_admin.pk}/password/").content.decode())
    assert "keep working" not in no_tokens and "keeps working" not in no_tokens


def test_staff_are_not_offered_to_disable_a_users_password_sign_in_which_opsion_has_no_other(world, staff):
    # Django's page offers "Disable password-based authentication", saying the user "may still be able to
    # authenticate using other backends, such as Single Sign-On or LDAP". Opsion has none: the user could no longer
    # sign in, nor reset (no reset link goes to an account without a usable password), while their e-mail said a
    # password was set and to use "Forgot your password?".
    url = f"/admin/orgs/user/{world.acme_member.pk}/password/"

    page = html.unescape(staff.get(url).content.decode())
    response = staff.post(url, {"usable_password": "false", "unset-password": "1", "password1": "", "password2": ""})

    assert "Disable password-based authentication" not in page
    assert 'name="usable_password"' not in page
    assert "Single Sign-On" not in page
    assert response.status_code == 200  # the form again, refused: no password was typed
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)
    assert not OutboxMail.objects.filter(to="member@acme.test").exists()


def test_staff_cannot_add_a_user_without_a_password_which_opsion_has_no_other_way_to_sign_in_with(staff):
    # Django's add form takes `usable_password=false` too (Opsion's page does not show it, but a post sending it was
    # obeyed): the account made could neither sign in nor ever be sent a reset link.
    response = staff.post(
        "/admin/orgs/user/add/",
        {"email": "new@acme.test", "usable_password": "false", "password1": "", "password2": ""},
    )

    assert response.status_code == 200  # the form again, refused: no password was typed
    assert 'name="usable_password"' not in response.content.decode()
    assert not User.objects.filter(email="new@acme.test").exists()


def test_a_large_organisations_page_lists_only_its_managers_so_its_plan_can_still_be_changed(world, staff, monkeypatch):
    # Every membership row posts four fields: past Django's 1,000-field cap (about 250 members) the whole change
    # form was refused (400), the plan (the BYOM gate) with it, and 5,000 rows took seconds to render.
    monkeypatch.setattr(org_admin.MembershipInline, "all_rows_up_to", 5)
    for i in range(4):
        Membership.objects.create(user=make_user(f"m{i}@acme.test"), organisation=world.acme, role=Role.MEMBER)

    page = staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode()

    assert "Acme Digital Assets has 7 members: only its Owners and Admins are listed below" in html.unescape(page)
    assert 'name="memberships-TOTAL_FORMS" value="2"' in page  # owner@ and admin@
    assert "m0@acme.test" not in page
    managers = Membership.objects.filter(organisation=world.acme, role__in=[Role.OWNER, Role.ADMIN])
    data = organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL, members=managers)

    assert staff.post(f"{ORGS}{world.acme.pk}/change/", data).status_code == 302
    world.acme.refresh_from_db()
    assert world.acme.plan == Plan.PROFESSIONAL
    assert world.acme.memberships.count() == 7  # the members not listed are kept as they were


def test_the_audit_event_list_is_newest_first_by_its_primary_key(world, staff):
    # created_at has no index across organisations: ordering by it sorted the whole log for every page.
    for i in range(3):
        AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_SAVED, actor_email=f"a{i}@acme.test")

    with CaptureQueriesContext(connection) as queries:
        page = staff.get("/admin/orgs/auditevent/").content.decode()

    listing = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "orgs_auditevent"."id"')]
    assert listing and all('ORDER BY "orgs_auditevent"."id" DESC' in sql for sql in listing)
    assert "created_at" not in listing[0].split("ORDER BY")[1]
    assert page.index("a2@acme.test") < page.index("a1@acme.test") < page.index("a0@acme.test")


def test_the_audit_event_list_says_what_changed_and_finds_an_organisation_by_its_name(world, staff):
    # "Plan changed" alone does not say from what to what, nor "Member removed" whom: staff opened each row.
    staff.post(f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL))
    AuditEvent.objects.create(
        organisation=world.globex, action=AuditAction.MEMBER_REMOVED, detail="member@globex.test (Member)"
    )

    page = staff.get("/admin/orgs/auditevent/").content.decode()
    by_name = staff.get("/admin/orgs/auditevent/", {"q": "Acme Digital"}).content.decode()

    assert '<td class="field-detail">Institutional → Professional</td>' in page
    assert '<td class="field-detail">member@globex.test (Member)</td>' in page
    assert ">IP</" in page and ">Ip</" not in page
    assert "Institutional → Professional" in by_name and "member@globex.test" not in by_name


def test_the_audit_lists_filter_on_where_a_change_was_made_reads_as_the_column_does(world, staff):
    saved = AuditAction.KEY_SAVED
    AuditEvent.objects.create(organisation=world.acme, action=saved, via="api", actor_email="a@x.test")
    AuditEvent.objects.create(organisation=world.acme, action=saved, via="admin", actor_email="s@x.test")

    text = page_text(staff.get("/admin/orgs/auditevent/"))
    staffs = page_text(staff.get("/admin/orgs/auditevent/", {"via__exact": "admin"}))

    assert "By via" not in text and "By where it was made All Console API Admin (Opsion staff)" in text
    assert "s@x.test" in staffs and "a@x.test" not in staffs  # the stock filter's links still work
    assert "API" in text.split("a@x.test", 1)[1][:40]  # the row's own cell, in the same words


def test_the_app_is_called_organisations_in_breadcrumbs_and_on_the_index(world, staff):
    index = page_text(staff.get("/admin/"))
    change = page_text(staff.get(f"{ORGS}{world.acme.pk}/change/"))

    assert "Organisations" in index and "Orgs" not in index
    assert "Home › Organisations › Organisations › Acme Digital Assets" in change
    assert "Orgs" not in change


def test_adding_a_member_a_large_organisations_page_does_not_list_is_refused_not_a_server_error(
    world, staff, monkeypatch
):
    # Its page lists only Owners and Admins, so Django's check for the same user on two rows cannot see the
    # Member already there: the save reached the database's unique constraint (a 500).
    monkeypatch.setattr(org_admin.MembershipInline, "all_rows_up_to", 5)
    for i in range(4):
        Membership.objects.create(user=make_user(f"m{i}@acme.test"), organisation=world.acme, role=Role.MEMBER)
    managers = Membership.objects.filter(organisation=world.acme, role__in=[Role.OWNER, Role.ADMIN])
    data = organisation_admin_form(world.acme, members=managers, plan=Plan.PROFESSIONAL)
    new = int(data["memberships-TOTAL_FORMS"])
    data |= {
        "memberships-TOTAL_FORMS": str(new + 1),
        f"memberships-{new}-organisation": str(world.acme.pk),
        f"memberships-{new}-user": str(world.acme_member.pk),
        f"memberships-{new}-role": Role.ADMIN,
    }

    refused = staff.post(f"{ORGS}{world.acme.pk}/change/", data)

    assert refused.status_code == 200
    assert "member@acme.test is already a member of this organisation, as Member" in html.unescape(
        refused.content.decode()
    )
    world.acme.refresh_from_db()
    assert world.acme.plan == Plan.INSTITUTIONAL
    assert world.acme.memberships.get(user=world.acme_member).role == Role.MEMBER
    assert not AuditEvent.objects.exists() and not LogEntry.objects.exists()


def test_an_organisation_listing_every_member_still_fits_in_one_form(world, staff):
    # The threshold is under Django's cap on a form's fields: at it, every row is listed and the page saves.
    limit = org_admin.MembershipInline.all_rows_up_to
    users = User.objects.bulk_create(User(email=f"m{i}@acme.test") for i in range(limit - 3))
    Membership.objects.bulk_create(Membership(user=u, organisation=world.acme, role=Role.MEMBER) for u in users)
    assert world.acme.memberships.count() == limit

    response = staff.post(f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.CUSTOM))

    assert response.status_code == 302
    world.acme.refresh_from_db()
    assert world.acme.plan == Plan.CUSTOM


MEMBERSHIPS = "/admin/orgs/membership/"


class TestMembershipPage:
    """Every membership, searchable: where a large organisation's members are managed, since its own page lists
    only its Owners and Admins."""

    def staff_changes(self, world) -> set:
        return {(e.action, e.detail) for e in AuditEvent.objects.filter(organisation=world.acme, via="admin")}

    def test_it_shows_and_filters_whose_account_is_deactivated(self, world, staff):
        # A deactivated Owner still reads "Owner", yet cannot sign in to manage the key: staff refused a save for
        # leaving no *active* Owner or Admin could not see which ones were not.
        world.acme_owner.is_active = False
        world.acme_owner.save(update_fields=["is_active"])

        listing = staff.get("/admin/orgs/membership/", {"organisation__id__exact": world.acme.pk}).content.decode()
        inactive = staff.get("/admin/orgs/membership/", {"user__is_active__exact": "0"}).content.decode()

        rows = {}
        for row in re.findall(r"<tr>.*?</tr>", listing, re.S):
            if found := re.search(r">([a-z]+@acme\.test)<", row):
                rows[found.group(1)] = row
        assert 'class="field-account_active"' in rows["owner@acme.test"] and 'alt="False"' in rows["owner@acme.test"]
        assert 'alt="True"' in rows["admin@acme.test"]
        assert "owner@acme.test" in inactive and "admin@acme.test" not in inactive
        assert "By account active" in page_text(staff.get("/admin/orgs/membership/"))

    def test_a_large_organisations_page_links_to_its_members(self, world, staff, monkeypatch):
        monkeypatch.setattr(org_admin.MembershipInline, "all_rows_up_to", 2)

        page = staff.get(f"{ORGS}{world.acme.pk}/change/").content.decode()

        assert f'href="{MEMBERSHIPS}?organisation__id__exact={world.acme.pk}"' in page
        listing = staff.get(MEMBERSHIPS, {"organisation__id__exact": world.acme.pk}).content.decode()
        assert "member@acme.test" in listing and "owner@globex.test" not in listing
        assert "<h1>Memberships of Acme Digital Assets</h1>" in listing
        assert "member@acme.test" in staff.get(MEMBERSHIPS, {"q": "member@acme"}).content.decode()

    def test_a_member_made_admin_there_is_audited_and_only_the_role_can_change(self, world, staff):
        member = world.membership(world.acme_member, world.acme)

        response = staff.post(f"{MEMBERSHIPS}{member.pk}/change/", {"role": Role.ADMIN, "user": world.staff.pk})

        assert response.status_code == 302
        member.refresh_from_db()
        assert (member.role, member.user) == (Role.ADMIN, world.acme_member)
        assert self.staff_changes(world) == {(AuditAction.ROLE_CHANGED, "member@acme.test: Member → Admin")}

    def test_demoting_the_last_active_owner_or_admin_is_refused(self, world, staff):
        world.membership(world.acme_admin, world.acme).delete()
        owner = world.membership(world.acme_owner, world.acme)

        response = staff.post(f"{MEMBERSHIPS}{owner.pk}/change/", {"role": Role.MEMBER})

        assert response.status_code == 200
        assert "without an active Owner or Admin" in html.unescape(response.content.decode())
        owner.refresh_from_db()
        assert owner.role == Role.OWNER and not self.staff_changes(world)
        assert not LogEntry.objects.exists()  # nor a line in admin's own history

    def test_adding_a_member_there_is_audited(self, world, staff):
        newcomer = make_user("new@acme.test")

        response = staff.post(
            f"{MEMBERSHIPS}add/", {"user": newcomer.pk, "organisation": world.acme.pk, "role": Role.MEMBER}
        )

        assert response.status_code == 302
        assert self.staff_changes(world) == {(AuditAction.MEMBER_ADDED, "new@acme.test as Member")}

    def test_removing_a_member_there_is_audited_and_the_last_owner_or_admin_stays(self, world, staff):
        member = world.membership(world.acme_member, world.acme)

        assert staff.post(f"{MEMBERSHIPS}{member.pk}/delete/", {"post": "yes"}).status_code == 302
        assert self.staff_changes(world) == {(AuditAction.MEMBER_REMOVED, "member@acme.test (Member)")}

        world.membership(world.acme_admin, world.acme).delete()
        owner = world.membership(world.acme_owner, world.acme)
        removed = self.staff_changes(world)
        history = LogEntry.objects.count()
        refused = staff.post(f"{MEMBERSHIPS}{owner.pk}/delete/", {"post": "yes"}, follow=True)

        assert Membership.objects.filter(pk=owner.pk).exists()
        assert self.staff_changes(world) == removed and LogEntry.objects.count() == history  # nothing recorded
        assert "without an active Owner or Admin" in html.unescape(refused.content.decode())
        assert "delete_selected" not in staff.get(MEMBERSHIPS).content.decode()  # one at a time, each checked


class TestDeleteQueries:
    """The limit counts the query log: a query inside the rolling window is the limit's, not staff's, to let go of
    (as `prune_insight_queries` never deletes inside it). Older ones can go, one by one or in bulk."""

    QUERIES = "/admin/insights/insightquery/"

    def test_a_query_inside_the_window_cannot_be_deleted_from_its_page(self, world, staff):
        (recent,) = seed(world.acme, 60)

        page = staff.get(f"{self.QUERIES}{recent.pk}/change/").content.decode()

        assert f"{recent.pk}/delete/" not in page
        assert staff.get(f"{self.QUERIES}{recent.pk}/delete/").status_code == 403
        assert staff.post(f"{self.QUERIES}{recent.pk}/delete/", {"post": "yes"}).status_code == 403
        assert InsightQuery.objects.filter(pk=recent.pk).exists()

    def test_checking_the_window_reads_no_row_again(self, world, staff):
        # The page loads the query once; whether the window still counts it is a yes or no, not the row (and its
        # answer) again for each check.
        (old,) = seed(world.acme, 3700)

        with CaptureQueriesContext(connection) as queries:
            assert staff.get(f"{self.QUERIES}{old.pk}/delete/").status_code == 200

        assert len([q for q in queries.captured_queries if '"insights_insightquery"."answer"' in q["sql"]]) == 1

    def test_a_query_older_than_the_window_can_be_deleted(self, world, staff):
        (old,) = seed(world.acme, 3700)

        response = staff.post(f"{self.QUERIES}{old.pk}/delete/", {"post": "yes"})

        assert response.status_code == 302
        assert not InsightQuery.objects.filter(pk=old.pk).exists()

    def test_a_bulk_delete_reaching_into_the_window_deletes_nothing_and_says_why(self, world, staff):
        old, recent = seed(world.acme, 3700, 60)
        action = {"action": "delete_selected", "_selected_action": [old.pk, recent.pk]}

        for step in (action, {**action, "post": "yes"}):  # the confirmation page, and a confirmation posted anyway
            response = staff.post(self.QUERIES, step, follow=True)
            page = html.unescape(response.content.decode())
            assert "1 of the 2 selected queries is inside the rolling window (the last 60 minutes)" in page
            assert InsightQuery.objects.count() == 2
        assert not LogEntry.objects.exists()  # nothing deleted, nothing recorded as deleted

    def test_a_query_near_the_end_of_the_window_still_counts_so_neither_way_deletes_it(self, world, staff):
        # 58 minutes old: the limit counts it for two more minutes, one by one or in bulk.
        (late,) = seed(world.acme, 3480)
        action = {"action": "delete_selected", "_selected_action": [late.pk], "post": "yes"}

        assert staff.post(f"{self.QUERIES}{late.pk}/delete/", {"post": "yes"}).status_code == 403
        page = html.unescape(staff.post(self.QUERIES, action, follow=True).content.decode())

        assert "The selected query is inside the rolling window (the last 60 minutes): the limit counts it" in page
        assert InsightQuery.objects.filter(pk=late.pk).exists()

    def test_a_bulk_delete_wholly_inside_the_window_says_all_of_them_are(self, world, staff):
        # "2 of the 2 selected queries", as "1 of the 1", read as if some had been left out of the count.
        queries = seed(world.acme, 60, 120)
        action = {"action": "delete_selected", "_selected_action": [q.pk for q in queries]}

        page = html.unescape(staff.post(self.QUERIES, action, follow=True).content.decode())

        assert (
            "All 2 selected queries are inside the rolling window (the last 60 minutes): the limit counts them, so "
            "nothing was deleted. Select only older queries." in page
        )
        assert InsightQuery.objects.count() == 2

    def test_a_bulk_delete_of_queries_older_than_the_window_goes_through(self, world, staff):
        seed(world.acme, 3700, 7200)
        (recent,) = seed(world.acme, 60)
        action = {
            "action": "delete_selected",
            "_selected_action": list(InsightQuery.objects.exclude(pk=recent.pk).values_list("pk", flat=True)),
        }

        asked = staff.post(self.QUERIES, action)
        done = staff.post(self.QUERIES, {**action, "post": "yes"})

        assert "Are you sure" in asked.content.decode() and done.status_code == 302
        assert list(InsightQuery.objects.values_list("pk", flat=True)) == [recent.pk]
