"""The permissions a superuser may grant in admin: those of the models admin has pages for, and no others."""

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from orgs.models import ClaudeApiKey
from tests.base import make_user
from tests.clients import console

KEY_PERMISSIONS = {"add_claudeapikey", "change_claudeapikey", "delete_claudeapikey", "view_claudeapikey"}


def offered(page: str, field: str) -> set[str]:
    """The codenames a permission picker on a rendered admin form offers."""
    select = re.search(rf'<select name="{field}"[^>]*>(.*?)</select>', page, re.S)
    assert select, f"no {field} picker on the page"
    pks = re.findall(r'<option value="(\d+)"', select.group(1))
    return set(Permission.objects.filter(pk__in=pks).values_list("codename", flat=True))


def registered_permissions() -> set[str]:
    pages = Q.create(
        [
            Q(content_type__app_label=m._meta.app_label, content_type__model=m._meta.model_name)
            for m in admin.site._registry
        ],
        connector=Q.OR,
    )
    return set(Permission.objects.filter(pages).values_list("codename", flat=True))


def test_the_pickers_offer_no_permission_on_the_claude_api_key(world):
    # "Can view Claude API key" on a user's page read as if staff could grant access to customers' keys; the key
    # has no admin page, so the permission granted nothing, but a reader of the picker could not know that.
    staff = console(world.staff)
    group = Group.objects.create(name="Support")

    pickers = {
        "user": offered(
            staff.get(f"/admin/orgs/user/{world.acme_admin.pk}/change/").content.decode(), "user_permissions"
        ),
        "new group": offered(staff.get("/admin/auth/group/add/").content.decode(), "permissions"),
        "group": offered(staff.get(f"/admin/auth/group/{group.pk}/change/").content.decode(), "permissions"),
    }

    assert ClaudeApiKey not in admin.site._registry
    for name, codenames in pickers.items():
        assert not codenames & KEY_PERMISSIONS, name
        # What they offer are permissions of the models admin has pages for: no session, content type, log entry or
        # permission row either, whose permissions admin never checks.
        assert codenames <= registered_permissions(), name
        assert {"change_organisation", "view_auditevent", "change_user", "view_group"} <= codenames, name


def test_a_permission_on_the_key_posted_anyway_is_refused_and_not_granted(world):
    staff = console(world.staff)
    key = Permission.objects.get(codename="view_claudeapikey")
    form = {
        "email": world.acme_admin.email,
        "name": "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "user_permissions": [key.pk],
    }

    to_user = staff.post(f"/admin/orgs/user/{world.acme_admin.pk}/change/", form)
    to_group = staff.post("/admin/auth/group/add/", {"name": "Keys", "permissions": [key.pk]})

    assert to_user.status_code == 200 and to_group.status_code == 200  # the form again, with its error
    assert "Select a valid choice" in to_user.content.decode() + to_group.content.decode()
    assert not world.acme_admin.user_permissions.exists()
    assert not Group.objects.filter(name="Keys").exists()


def test_a_permission_admin_has_a_page_for_is_still_granted(world):
    staff = console(world.staff)
    grant = Permission.objects.get(codename="change_organisation")

    response = staff.post("/admin/auth/group/add/", {"name": "Support", "permissions": [grant.pk]})

    assert response.status_code == 302
    assert list(Group.objects.get(name="Support").permissions.all()) == [grant]


# What admin refuses whatever permissions a staff member holds: the audit log and the query log are written by Opsion
# alone, tokens are created by their user, and only superusers (who hold every permission anyway) manage groups.
NEVER_GRANTED = {
    "add_auditevent",
    "change_auditevent",
    "delete_auditevent",
    "add_insightquery",
    "change_insightquery",
    "add_apitoken",
    "change_apitoken",  # a token's page is for viewing and deleting: nothing of it is staff's to change
    "add_group",
    "change_group",
    "delete_group",
    # The security e-mails' outbox is written by the changes it tells of, sent by Opsion and pruned by it: staff look.
    "add_outboxmail",
    "change_outboxmail",
    "delete_outboxmail",
}


def test_the_pickers_offer_no_permission_admin_refuses_whoever_holds_it(world):
    # "Can delete audit event" read as if staff could be allowed to delete a customer's audit log; admin never lets
    # anyone, so ticking it granted nothing, but a reader of the picker could not know that.
    staff = console(world.staff)
    user_page = staff.get(f"/admin/orgs/user/{world.acme_admin.pk}/change/").content.decode()
    group_page = staff.get("/admin/auth/group/add/").content.decode()

    for codenames in (offered(user_page, "user_permissions"), offered(group_page, "permissions")):
        assert not codenames & NEVER_GRANTED
        # What admin does let a permission holder do is still offered.
        assert {
            "view_auditevent",
            "view_insightquery",
            "delete_insightquery",
            "view_apitoken",
            "delete_apitoken",
            "view_group",
            "add_organisation",
            "change_user",
            "delete_membership",
            "view_outboxmail",
        } <= codenames


def test_a_permission_admin_refuses_whoever_holds_it_posted_anyway_is_not_granted(world):
    staff = console(world.staff)
    delete_audit = Permission.objects.get(codename="delete_auditevent")

    response = staff.post("/admin/auth/group/add/", {"name": "Auditors", "permissions": [delete_audit.pk]})

    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Group.objects.filter(name="Auditors").exists()


@pytest.mark.parametrize("codename", sorted(NEVER_GRANTED))
def test_a_permission_admin_refuses_whoever_holds_it_granted_from_the_shell_opens_no_page(world, codename):
    # README: a permission the pickers do not offer, granted from the shell or before they were narrowed, is
    # honoured nowhere. Django's own check takes "Can change" for "Can view": a support group granted "Can change
    # outbox e-mail" or "Can change audit event" that way read every customer's e-mails or audit log.
    user = make_user("support@opsion.test", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename=codename))
    client = console(user)
    model = Permission.objects.get(codename=codename).content_type.model_class()._meta
    changelist = f"/admin/{model.app_label}/{model.model_name}/"

    assert client.get(changelist).status_code == 403, changelist
    assert changelist not in client.get("/admin/").content.decode()
