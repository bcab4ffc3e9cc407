"""Admin links to a related object (a membership's user, a query's organisation) only for staff who may open it.

Django's read-only display of a foreign key links to the related object's page whatever the viewer may do there:
support staff with only "Can change membership" or "Can view insight query" followed such links to a 403."""

import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib import admin
from django.contrib.admin.utils import get_deleted_objects
from django.contrib.auth.models import Permission
from django.test import RequestFactory

from orgs import services
from orgs.admin_links import deleted_objects
from orgs.admin_memberships import MembershipAdmin, MembershipInline
from orgs.models import ApiToken, AuditEvent, Membership, User
from tests.base import GOOD_KEY, make_user
from tests.clients import console
from tests.insights.helpers import seed
from tests.orgs.test_admin import page_text, page_text_of

# Where admin links to itself and nothing it could refuse: its own chrome, and what it serves to every staff member.
CHROME = ("/admin/logout/", "/admin/password_change/", "/admin/jsi18n/", "/admin/autocomplete/")


@pytest.fixture
def rows(world):
    """One row of each model admin shows with a link to another's: a token, its audit event, a query."""
    services.claude_api_key_set(membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None)
    services.api_token_create(user=world.acme_admin, name="pipeline")
    (query,) = seed(world.acme, 60, user=world.acme_member)
    return {
        "membership": world.membership(world.acme_member, world.acme),
        "query": query,
        "event": AuditEvent.objects.filter(actor=world.acme_owner).first(),
        "token": ApiToken.objects.get(),
    }


def support_with(*codenames: str):
    user = make_user("support@opsion.test", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    assert user.user_permissions.count() == len(codenames), codenames
    return user


def hrefs(page: str) -> set[str]:
    """The admin pages a page links to, without their query strings' escaping."""
    found = {href.replace("&amp;", "&") for href in re.findall(r'href="(/admin/[^"#]*)"', page)}
    return {href for href in found if not href.startswith(CHROME)}


def user_page(user) -> str:
    return f"/admin/orgs/user/{user.pk}/change/"


def org_page(org) -> str:
    return f"/admin/orgs/organisation/{org.pk}/change/"


@pytest.mark.parametrize(
    "permission, page",
    [
        ("change_membership", lambda rows: f"/admin/orgs/membership/{rows['membership'].pk}/change/"),
        ("view_insightquery", lambda rows: f"/admin/insights/insightquery/{rows['query'].pk}/change/"),
    ],
    ids=["membership changed by staff who may only change memberships", "query seen by staff who may only view them"],
)
def test_a_page_names_its_user_and_organisation_unlinked_to_staff_who_may_not_open_them(world, rows, permission, page):
    client = console(support_with(permission))

    response = client.get(page(rows))

    assert response.status_code == 200
    links = hrefs(response.content.decode())
    assert user_page(world.acme_member) not in links and org_page(world.acme) not in links
    assert "member@acme.test" in page_text(response) and "Acme Digital Assets" in page_text(response)
    assert client.get(user_page(world.acme_member)).status_code == 403  # where the link led
    assert client.get(org_page(world.acme)).status_code == 403


@pytest.mark.parametrize(
    "codenames, user_linked, org_linked",
    [
        (["view_insightquery", "view_user"], True, False),
        (["view_insightquery", "change_organisation"], False, True),
    ],
)
def test_a_query_links_each_related_object_its_viewer_may_open(world, rows, codenames, user_linked, org_linked):
    client = console(support_with(*codenames))

    links = hrefs(client.get(f"/admin/insights/insightquery/{rows['query'].pk}/change/").content.decode())

    assert (user_page(world.acme_member) in links) is user_linked
    assert (org_page(world.acme) in links) is org_linked


def test_superusers_keep_every_link(world, rows):
    client = console(world.staff)
    pages = {
        f"/admin/orgs/membership/{rows['membership'].pk}/change/": {user_page(world.acme_member), org_page(world.acme)},
        f"/admin/insights/insightquery/{rows['query'].pk}/change/": {
            user_page(world.acme_member),
            org_page(world.acme),
        },
        f"/admin/orgs/auditevent/{rows['event'].pk}/change/": {user_page(world.acme_owner), org_page(world.acme)},
        f"/admin/orgs/apitoken/{rows['token'].pk}/change/": {user_page(world.acme_admin)},
    }

    for page, related in pages.items():
        assert related <= hrefs(client.get(page).content.decode()), page


def permission_sets() -> list[list[str]]:
    """Each view and change permission admin honours, alone."""
    codenames = set()
    for model in admin.site._registry:
        for action in ("view", "change"):
            codenames.add(f"{action}_{model._meta.model_name}")
    honoured = set(Permission.objects.filter(codename__in=codenames).values_list("codename", flat=True))
    return [[c] for c in sorted(honoured)]


def pages_to_visit(client, world, rows) -> list[str]:
    """Every list the viewer may open, and the change page of one row of each (the world's own)."""
    change_pages = [
        f"/admin/orgs/membership/{rows['membership'].pk}/change/",
        f"/admin/insights/insightquery/{rows['query'].pk}/change/",
        f"/admin/orgs/auditevent/{rows['event'].pk}/change/",
        f"/admin/orgs/apitoken/{rows['token'].pk}/change/",
        org_page(world.acme),
        user_page(world.acme_member),
    ]
    lists = [f"/admin/{m._meta.app_label}/{m._meta.model_name}/" for m in admin.site._registry]
    return [page for page in ["/admin/", *lists, *change_pages] if client.get(page).status_code == 200]


def test_every_link_admin_shows_a_staff_member_opens_for_them(world, rows):
    # Whatever permissions support staff hold, no admin page they can open links them to a 403.
    # And beside another, so that a page shows the links it has for its viewer.
    chosen = [
        *permission_sets(),
        ["view_membership", "view_organisation"],
        ["view_insightquery", "view_user"],
        ["view_auditevent", "change_organisation"],
        ["change_user", "view_apitoken"],
    ]
    for codenames in dict.fromkeys(tuple(c) for c in chosen):
        support = make_user(f"support-{'-'.join(codenames)}@opsion.test".replace("_", "-"), is_staff=True)
        support.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        client = console(support)
        opened = set(pages_to_visit(client, world, rows))
        for page in sorted(opened):
            for href in hrefs(client.get(page).content.decode()):
                # A filter or search of a list that opens opens too (a filter admin refuses is a 400, never a 403).
                if href.split("?")[0] not in opened:
                    assert client.get(href).status_code != 403, f"{codenames}: {page} links to {href}"


class TestMessagesLinkOnlyWhereAllowed:
    """What admin tells staff after an action links to the tokens or memberships only for staff who may open them."""

    TOKENS = "/admin/orgs/apitoken/?user__id__exact={}"

    @pytest.mark.parametrize("may_see_tokens", [False, True])
    def test_a_password_page_names_the_tokens_that_keep_working(self, world, may_see_tokens):
        services.api_token_create(user=world.acme_member, name="CI")
        tokens = ["view_apitoken"] if may_see_tokens else []
        client = console(support_with("view_user", "change_user", *tokens))

        response = client.get(f"/admin/orgs/user/{world.acme_member.pk}/password/")

        assert "If the account was compromised, delete it too." in page_text(response)
        linked = f'href="{self.TOKENS.format(world.acme_member.pk)}"' in response.content.decode()
        assert linked is may_see_tokens

    @pytest.mark.parametrize("may_see_tokens", [False, True])
    def test_deactivating_a_user_names_their_tokens(self, world, may_see_tokens):
        # One token: "delete its API token", in the singular.
        services.api_token_create(user=world.acme_member, name="CI")
        tokens = ["view_apitoken"] if may_see_tokens else []
        client = console(support_with("view_user", "change_user", *tokens))
        joined = world.acme_member.date_joined
        form = {
            "email": world.acme_member.email,
            "name": world.acme_member.name,
            "date_joined_0": joined.strftime("%Y-%m-%d"),
            "date_joined_1": joined.strftime("%H:%M:%S"),
        }

        response = client.post(f"/admin/orgs/user/{world.acme_member.pk}/change/", form, follow=True)

        assert "set a new password and delete its API token too." in page_text(response)
        linked = f'href="{self.TOKENS.format(world.acme_member.pk)}"' in response.content.decode()
        assert linked is may_see_tokens

    @pytest.mark.parametrize("may_see_memberships", [False, True])
    def test_a_large_organisations_page_names_its_memberships(self, world, monkeypatch, may_see_memberships):
        monkeypatch.setattr(MembershipInline, "all_rows_up_to", 2)
        memberships = ["change_membership"] if may_see_memberships else ["add_membership"]
        client = console(support_with("change_organisation", *memberships))

        response = client.get(org_page(world.acme))

        assert "all its memberships can be changed or removed on their own page." in page_text(response)
        listing = f"/admin/orgs/membership/?organisation__id__exact={world.acme.pk}"
        assert (f'href="{listing}"' in response.content.decode()) is may_see_memberships


def test_requests_racing_on_a_fresh_admin_get_the_same_unlinked_displays(world):
    # Admin pages run on gthread workers, one ModelAdmin per model shared by every thread, and admin tells a read-only
    # display from a form field by identity: a page whose fieldsets hold one display object while its read-only fields
    # hold another asks the form for a field named by a function, a 500 (FieldError). Two requests on a fresh worker
    # each made and cached their own.
    support = support_with("change_membership")
    request = RequestFactory().get("/admin/")
    request.user = support
    assert not support.has_perm("orgs.view_user")  # fills the permission cache: the threads read no database
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over often, as a busy worker does
    try:
        for _ in range(200):
            membership_admin = MembershipAdmin(Membership, admin.site)
            start = threading.Barrier(8)

            def displays(model_admin=membership_admin, start=start):
                start.wait()
                return {f.__name__: f for f in model_admin.get_readonly_fields(request) if callable(f)}

            with ThreadPoolExecutor(8) as pool:
                seen = list(pool.map(lambda _: displays(), range(8)))
            assert all(shown.keys() == {"user", "organisation"} for shown in seen)
            assert len({id(shown["user"]) for shown in seen}) == 1
            assert len({id(shown["organisation"]) for shown in seen}) == 1
    finally:
        sys.setswitchinterval(switch)


class TestRecentActions:
    """The admin index's "Recent actions" links each entry to its object's page only for staff who may open it."""

    def test_staff_who_may_only_add_memberships_see_the_one_they_added_unlinked(self, world):
        # Django links every entry to its object's change page: the membership just added led its adder to a 403.
        client = console(support_with("add_membership"))
        newcomer = make_user("new@acme.test")
        added = client.post(
            "/admin/orgs/membership/add/",
            {"user": newcomer.pk, "organisation": world.acme.pk, "role": "member"},
            follow=True,
        )
        membership = world.membership(newcomer, world.acme)

        index = client.get("/admin/")

        assert added.status_code == 200 and "was added successfully" in page_text(added)
        assert f"/admin/orgs/membership/{membership.pk}/change/" not in hrefs(index.content.decode())
        assert client.get(f"/admin/orgs/membership/{membership.pk}/change/").status_code == 403  # where it led
        # Still listed, in Django's own markup: the entry's class, its hidden "Added:", its name and its model's.
        entry = re.search(r'<li class="addlink">(.*?)</li>', index.content.decode(), re.S).group(1)
        assert page_text_of(entry) == f"Added: {membership} Membership"

    def test_staff_who_may_open_the_object_keep_the_link(self, world):
        client = console(support_with("add_membership", "view_membership"))
        newcomer = make_user("new@acme.test")
        client.post(
            "/admin/orgs/membership/add/", {"user": newcomer.pk, "organisation": world.acme.pk, "role": "member"}
        )
        membership = world.membership(newcomer, world.acme)

        index = client.get("/admin/").content.decode()

        assert f'<a href="/admin/orgs/membership/{membership.pk}/change/">{membership}</a>' in index
        assert client.get(f"/admin/orgs/membership/{membership.pk}/change/").status_code == 200


class TestDeleteConfirmation:
    """Django's confirmation step lists what a deletion takes with it, each object linked to its page only for staff
    who may open that page."""

    def test_staff_who_may_delete_but_not_open_memberships_and_tokens_see_them_unlinked(self, world):
        # Django links every object listed to its page whatever the viewer may open there: support allowed to delete
        # a user with their memberships and tokens, but not to look at either, were sent to a 403 by each.
        services.api_token_create(user=world.acme_member, name="CI")
        token, membership = ApiToken.objects.get(), world.membership(world.acme_member, world.acme)
        client = console(support_with("view_user", "delete_user", "delete_membership", "delete_apitoken"))

        response = client.get(f"/admin/orgs/user/{world.acme_member.pk}/delete/")

        links = hrefs(response.content.decode())
        assert "Yes, I’m sure" in response.content.decode()  # the confirmation, not "you cannot delete"
        assert f"Membership: {membership}" in page_text(response) and f"API token: {token}" in page_text(response)
        assert f"/admin/orgs/membership/{membership.pk}/change/" not in links
        assert f"/admin/orgs/apitoken/{token.pk}/change/" not in links
        assert client.get(f"/admin/orgs/membership/{membership.pk}/change/").status_code == 403  # where they led
        assert client.get(f"/admin/orgs/apitoken/{token.pk}/change/").status_code == 403
        assert user_page(world.acme_member) in links  # the user, whom they may open, stays linked

    def test_the_bulk_action_lists_them_unlinked_too(self, world):
        services.api_token_create(user=world.acme_member, name="CI")
        token = ApiToken.objects.get()
        client = console(support_with("view_user", "delete_user", "delete_membership", "delete_apitoken"))

        response = client.post(
            "/admin/orgs/user/", {"action": "delete_selected", "_selected_action": [world.acme_member.pk]}
        )

        assert f"API token: {token}" in page_text(response)
        assert f"/admin/orgs/apitoken/{token.pk}/change/" not in hrefs(response.content.decode())

    def test_superusers_keep_every_link(self, world):
        services.api_token_create(user=world.acme_member, name="CI")
        token, membership = ApiToken.objects.get(), world.membership(world.acme_member, world.acme)

        links = hrefs(console(world.staff).get(f"/admin/orgs/user/{world.acme_member.pk}/delete/").content.decode())

        assert {f"/admin/orgs/membership/{membership.pk}/change/", f"/admin/orgs/apitoken/{token.pk}/change/"} <= links

    def test_for_whoever_may_open_everything_it_lists_what_djangos_own_lists(self, world):
        # deleted_objects follows Django's get_deleted_objects line by line: for a superuser the two must agree
        # exactly (objects, nesting, counts, missing permissions), or a Django upgrade has moved away from the copy.
        services.api_token_create(user=world.acme_member, name="CI")
        request = RequestFactory().get("/admin/")
        request.user = world.staff
        users = User.objects.filter(pk__in=[world.acme_member.pk, world.acme_admin.pk])

        ours = deleted_objects(users, request, admin.site)

        assert ours == get_deleted_objects(users, request, admin.site)
        assert ours[1] and ours[0]  # something is listed: the comparison compared something
