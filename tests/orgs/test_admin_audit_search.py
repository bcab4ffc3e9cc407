"""Admin's audit event list, searched by what changed (the detail column) as well as by organisation and actor."""

import html
import re

import pytest

from orgs import services
from orgs.models import AuditAction, AuditEvent, Membership, Role
from tests.base import CANARY_KEY, make_user, organisation_admin_form
from tests.clients import console

AUDIT = "/admin/orgs/auditevent/"


@pytest.fixture
def staff(world):
    return console(world.staff)


def details(response) -> list[str]:
    """The detail cells of the change list's rows, top to bottom."""
    cells = re.findall(r'<td class="field-detail">([^<]*)</td>', response.content.decode())
    return [html.unescape(cell) for cell in cells]


def test_an_event_is_found_by_what_changed(world, staff):
    # "Who removed member@globex.test?": the address is in the row's detail, not in its organisation or actor.
    AuditEvent.objects.create(
        organisation=world.globex, action=AuditAction.MEMBER_REMOVED, detail="member@globex.test (Member)"
    )
    AuditEvent.objects.create(organisation=world.acme, action=AuditAction.PLAN_CHANGED, detail="Institutional → Custom")

    by_address = staff.get(AUDIT, {"q": "member@globex"})
    by_plan = staff.get(AUDIT, {"q": "custom"})  # case-insensitive, on SQLite and PostgreSQL alike
    by_arrow = staff.get(AUDIT, {"q": "Institutional → Custom"})  # a phrase, as the column shows it

    assert details(by_address) == ["member@globex.test (Member)"]
    assert details(by_plan) == ["Institutional → Custom"]
    assert details(by_arrow) == ["Institutional → Custom"]
    assert "or what changed (an address, a plan)" in html.unescape(by_address.content.decode())


def test_a_search_holding_a_key_is_refused_and_finds_nothing(world, staff):
    AuditEvent.objects.create(organisation=world.acme, action=AuditAction.MEMBER_ADDED, detail="x@acme.test as Member")

    response = staff.get(AUDIT, {"q": CANARY_KEY})

    assert response.status_code == 400
    assert CANARY_KEY not in response.content.decode()


def test_a_key_in_an_address_never_reaches_an_events_detail(world, staff):
    # Staff can add a user whose address holds a key's form (the wrong clipboard): the membership's audit row names the
    # address, and the detail is listed and searched, so the key is blanked there as in a log line.
    pasted = make_user(f"{CANARY_KEY}@acme.test".lower())
    data = organisation_admin_form(world.acme)
    added = int(data["memberships-TOTAL_FORMS"])
    data |= {
        "memberships-TOTAL_FORMS": str(added + 1),
        f"memberships-{added}-organisation": str(world.acme.pk),
        f"memberships-{added}-user": str(pasted.pk),
        f"memberships-{added}-role": Role.MEMBER,
    }

    assert staff.post(f"/admin/orgs/organisation/{world.acme.pk}/change/", data).status_code == 302
    assert Membership.objects.filter(user=pasted).exists()
    event = AuditEvent.objects.get(action=AuditAction.MEMBER_ADDED)
    assert CANARY_KEY.lower() not in event.detail.lower()
    assert event.detail == "sk-ant-[redacted]@acme.test as Member"
    assert CANARY_KEY.lower() not in staff.get(AUDIT).content.decode().lower()
    assert details(staff.get(AUDIT, {"q": "redacted"})) == [event.detail]


def test_staff_details_are_cut_to_the_column_after_blanking(world):
    services.audit_staff_change(
        org=world.acme, staff_user=world.staff, action=AuditAction.MEMBER_ADDED, detail=f"{CANARY_KEY} " * 10, ip=None
    )

    assert "CANARY" not in AuditEvent.objects.get().detail
