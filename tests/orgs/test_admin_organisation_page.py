"""An organisation's own page in admin: where its audit events and AI Insights queries are, what its History says."""

import json
import re

import pytest
from django.contrib.admin.models import LogEntry

from insights.models import InsightQuery
from orgs.admin import OrganisationAdmin
from orgs.models import AuditAction, AuditEvent, Plan, Role
from tests.base import CANARY_KEY, organisation_admin_form
from tests.clients import console
from tests.insights.helpers import seed
from tests.orgs.helpers import store_key
from tests.orgs.test_admin import page_text_of
from tests.orgs.test_admin_links import support_with

ORGS = "/admin/orgs/organisation/"


def object_tools(page: str) -> dict[str, str]:
    """The buttons above the page's form (History's among them), by their words: where each leads."""
    tools = re.search(r'<ul class="object-tools">(.*?)</ul>', page, re.S).group(1)
    return {
        page_text_of(words): href.replace("&amp;", "&")
        for href, words in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', tools, re.S)
    }


def record(org, *details: str) -> None:
    for detail in details:
        AuditEvent.objects.create(organisation=org, action=AuditAction.PLAN_CHANGED, detail=detail, via="admin")


class TestLinksToTheOrganisationsLists:
    def test_its_page_links_to_its_audit_events_and_its_queries_counted_and_each_lists_only_its_own(self, world):
        record(world.acme, "Acme's first change", "Acme's second change")
        record(world.globex, "Globex's change")
        seed(world.acme, 60, 120, 7200)
        (globex_query,) = seed(world.globex, 60)
        client = console(world.staff)

        tools = object_tools(client.get(f"{ORGS}{world.acme.pk}/change/").content.decode())

        assert set(tools) == {"Audit events (2)", "AI Insights queries (3)", "History"}
        events = client.get(tools["Audit events (2)"])
        queries = client.get(tools["AI Insights queries (3)"])
        assert events.status_code == queries.status_code == 200
        listed_events = page_text_of(events.content.decode())
        assert "Acme's first change" in listed_events and "Acme's second change" in listed_events
        assert "Globex's change" not in listed_events
        assert {row.organisation for row in events.context["cl"].result_list} == {world.acme}
        assert {row.organisation for row in queries.context["cl"].result_list} == {world.acme}
        assert queries.context["cl"].result_count == 3
        assert f"/admin/insights/insightquery/{globex_query.pk}/change/" not in queries.content.decode()
        # Each list's title says whose it is, as a large organisation's list of memberships does.
        assert "<h1>Audit events of Acme Digital Assets</h1>" in events.content.decode()
        assert "<h1>AI Insights queries of Acme Digital Assets</h1>" in queries.content.decode()

    def test_an_organisation_with_none_yet_still_links_to_both_lists(self, world):
        tools = object_tools(console(world.staff).get(f"{ORGS}{world.initech.pk}/change/").content.decode())

        assert set(tools) == {"Audit events (0)", "AI Insights queries (0)", "History"}

    def test_a_long_query_log_is_counted_only_up_to_a_cap(self, world, monkeypatch):
        # An organisation may have asked hundreds of thousands of queries: its page counts no further than the cap,
        # as the query list's own capped count does, and the list it links to says how many exactly.
        monkeypatch.setattr(OrganisationAdmin, "query_count_cap", 2)
        seed(world.acme, 60, 120)
        client = console(world.staff)

        at_the_cap = object_tools(client.get(f"{ORGS}{world.acme.pk}/change/").content.decode())
        seed(world.acme, 180)
        past_it = object_tools(client.get(f"{ORGS}{world.acme.pk}/change/").content.decode())

        assert "AI Insights queries (2)" in at_the_cap
        listing = past_it["AI Insights queries (more than 2)"]
        assert listing == f"/admin/insights/insightquery/?organisation__id__exact={world.acme.pk}"
        assert console(world.staff).get(listing).context["cl"].result_count == 3

    @pytest.mark.parametrize(
        "codenames, shown",
        [
            (["change_organisation"], set()),
            (["change_organisation", "view_auditevent"], {"Audit events (1)"}),
            (["view_organisation", "view_insightquery"], {"AI Insights queries (1)"}),
        ],
    )
    def test_staff_are_linked_only_to_the_lists_they_may_open(self, world, codenames, shown):
        record(world.acme, "Acme's change")
        seed(world.acme, 60)
        client = console(support_with(*codenames))

        tools = object_tools(client.get(f"{ORGS}{world.acme.pk}/change/").content.decode())

        assert set(tools) == {*shown, "History"}
        for href in tools.values():
            assert client.get(href).status_code == 200

    def test_the_add_page_has_no_such_links(self, world):
        page = console(world.staff).get(f"{ORGS}add/").content.decode()

        assert "Audit events (" not in page and "AI Insights queries (" not in page
        assert InsightQuery.objects.count() == 0


class TestHistorySaysWhatChanged:
    def history(self, client, org) -> str:
        return page_text_of(client.get(f"{ORGS}{org.pk}/history/").content.decode())

    def test_a_plan_change_says_from_which_plan_to_which(self, world):
        client = console(world.staff)

        client.post(f"{ORGS}{world.globex.pk}/change/", organisation_admin_form(world.globex, plan=Plan.INSTITUTIONAL))

        assert "Changed plan from Professional to Institutional." in self.history(client, world.globex)
        entry = LogEntry.objects.get()
        assert json.loads(entry.change_message) == [
            {"changed": {"fields": ["plan from Professional to Institutional"]}}
        ]

    def test_other_changes_made_in_the_same_save_are_still_said(self, world):
        client = console(world.staff)
        data = organisation_admin_form(world.acme, name="Acme Assets", plan=Plan.CUSTOM)
        rows = {v: k.removesuffix("-user") for k, v in data.items() if k.endswith("-user")}
        data[rows[str(world.acme_member.pk)] + "-role"] = Role.ADMIN

        assert client.post(f"{ORGS}{world.acme.pk}/change/", data).status_code == 302

        said = self.history(client, world.acme)
        assert (
            "Changed Name. Changed plan from Institutional to Custom. "
            "Changed Role for membership “member@acme.test — Acme Assets (Admin)”." in said
        )

    def test_a_save_that_leaves_the_plan_as_it_was_says_nothing_of_it(self, world):
        client = console(world.staff)

        client.post(f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, name="Acme Assets"))

        said = self.history(client, world.acme)
        assert "Changed Name." in said and "plan" not in said.lower()

    def test_it_never_names_the_stored_key_in_any_form(self, world):
        # The key is no field of the form, so nothing of it (not even its mask, or that one is stored) is said.
        store_key(world.acme, CANARY_KEY)
        client = console(world.staff)

        client.post(f"{ORGS}{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL))

        said = self.history(client, world.acme)
        assert "Changed plan from Institutional to Professional." in said
        message = LogEntry.objects.get().change_message
        for text in (said, message):
            assert CANARY_KEY not in text and "sk-ant" not in text and "•" not in text and "gAAAA" not in text
        assert "key" not in message.lower()
