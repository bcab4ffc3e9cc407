"""The Settings page: organisation facts, the BYOM card in each state, the audit log, plan changes."""

import csv
import html
import io
import re
import time
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from orgs import recent_auth, services
from orgs.models import AuditAction, AuditEvent, ClaudeApiKey, KeyStatus, Plan
from tests.base import CANARY_KEY, GOOD_KEY
from tests.clients import api_put_key, bearer, console
from tests.orgs.helpers import CARD_HEADING, ELIGIBLE, MASKED, PLANS, store_key, stored_key

SAVE_ACTION = 'action="/orgs/{slug}/settings/claude-api-key/save"'


def offers_removal(page: str, slug: str) -> bool:
    """The Remove button: it opens the confirmation step, a page of its own, so Back never resends a form."""
    button = rf'<form method="get" action="/orgs/{slug}/settings/"[^>]*>\s*'
    button += r'<input type="hidden" name="confirm" value="remove">'
    return re.search(button, page) is not None


def page_of(user, slug: str) -> str:
    response = console(user).get(f"/orgs/{slug}/settings/")
    assert response.status_code == 200
    return response.content.decode()


def assert_no_card(page: str) -> None:
    assert CARD_HEADING not in page
    assert "Bring Your Own Model" not in page
    assert not re.search(r'id="byom', page)
    assert 'class="card byom"' not in page
    assert MASKED not in page
    assert 'name="api_key"' not in page


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_it_shows_the_organisation_the_plan_and_your_role(people, plan, role):
    org, user = people(plan, role)

    page = page_of(user, org.slug)

    assert f"<dd>{org.name}</dd>" in page
    assert f"<dd>{Plan(plan).label}</dd>" in page
    assert f"<dd>{role.capitalize()}</dd>" in page
    if plan not in ELIGIBLE:
        assert_no_card(page)
    else:
        assert CARD_HEADING in page
        assert 'id="byom"' in page


def test_a_professional_org_gets_no_card_markup_even_with_a_stored_key(world):
    store_key(world.globex, CANARY_KEY, by=world.globex_admin)

    for user in (world.globex_owner, world.globex_admin, world.globex_member):
        page = page_of(user, "globex")
        assert_no_card(page)
        assert CANARY_KEY not in page


def test_the_key_fields_hint_links_to_the_anthropic_console_where_keys_are_made(world):
    page = page_of(world.acme_admin, "acme")

    hint = re.search(r'<p class="hint" id="byom-hint">(.*?)</p>', page).group(1)
    assert hint.startswith('Create one at <a href="https://console.anthropic.com/">console.anthropic.com</a>.')


class TestNoKeyStored:
    def test_admins_get_a_masked_key_field_a_save_button_and_the_platform_limit(self, world):
        page = page_of(world.acme_admin, "acme")

        assert re.search(r'<input id="byom-key" name="api_key" type="text"[^>]* value=""', page)
        assert '<button class="button button--primary" type="submit">Save</button>' in page
        assert "Queries use Opsion's platform key at <strong>20 queries per rolling 60 minutes</strong>" in page
        assert "200 queries per rolling 60 minutes</strong>" not in page
        assert MASKED not in page
        assert "indicator--ok" not in page

    def test_members_see_the_same_state_without_any_form(self, world):
        page = page_of(world.acme_member, "acme")

        assert "No key stored." in page
        assert "20 queries per rolling 60 minutes" in page
        assert 'name="api_key"' not in page
        assert SAVE_ACTION.format(slug="acme") not in page
        # Not "can change this key", under "No key stored.": there is no key to change.
        assert "Only an Owner or Admin can save a key for your organisation. Your role is Member." in page
        assert "change this key" not in page

    def test_the_limit_lines_follow_the_configured_limits(self, world, settings):
        settings.INSIGHTS_PLATFORM_LIMIT = 7

        assert "Opsion's platform key at <strong>7 queries per rolling 60 minutes" in page_of(world.acme_admin, "acme")


class TestKeyStored:
    @pytest.fixture
    def saved(self, world):
        membership = world.membership(world.acme_admin, world.acme)
        services.claude_api_key_set(membership=membership, raw_key=CANARY_KEY, ip="198.51.100.4")
        ClaudeApiKey.objects.update(saved_at=datetime(2026, 3, 14, 9, 26, tzinfo=UTC))

    def test_admins_see_the_mask_the_green_indicator_who_when_the_limit_and_remove(self, world, saved):
        page = page_of(world.acme_owner, "acme")

        assert f'value="{MASKED}" readonly' in page
        assert re.search(r'class="indicator indicator--ok" role="status">.*Key saved\.', page)
        assert "Saved 14 Mar 2026, 09:26 UTC by admin@acme.test." in page
        assert "<strong>200 queries per rolling 60 minutes</strong>" in page
        assert "platform key at" not in page
        assert offers_removal(page, "acme")
        assert 'id="byom-remove"' in page
        assert "Replace with a new key" in page
        assert '<details class="replace">' in page  # a working key's replacement form stays folded away
        assert CANARY_KEY not in page

    def test_the_remove_button_is_labelled_remove_and_sits_next_to_the_masked_key(self, world, saved):
        # The documentation: "Click the Remove button next to the masked key display." Its accessible name says
        # more ("Remove the stored key"), which browser tests click by; the word a reader looks for is this one.
        page = page_of(world.acme_admin, "acme")

        line = re.search(r'<div class="key-row__line">(.*?)</div>', page, re.S).group(1)
        assert f'value="{MASKED}" readonly' in line
        assert re.search(r'<button [^>]*id="byom-remove"[^>]*>Remove</button>', line)

    @pytest.mark.parametrize(
        "behaviour, status, said",
        [("ok", 200, "Accepted by Anthropic since"), ("auth_error", 400, "Rejected by Anthropic")],
    )
    def test_the_page_says_when_anthropic_accepted_or_rejected_the_key(
        self, world, saved, fake_anthropic, behaviour, status, said
    ):
        if behaviour != "ok":
            fake_anthropic.behave(CANARY_KEY, behaviour)
        ask = console(world.acme_member).post(
            "/api/v1/orgs/acme/insights/queries", {"query": "MiCAR?"}, "application/json"
        )
        changed = ClaudeApiKey.objects.get().status_changed_at

        page = page_of(world.acme_admin, "acme")

        assert ask.status_code == status and changed is not None
        assert f"Saved 14 Mar 2026, 09:26 UTC by admin@acme.test. {said} {changed:%-d %b %Y, %H:%M} UTC." in page
        # A rejected key must be replaced: its form is open.
        assert ('<details class="replace" open>' in page) == (behaviour != "ok")

    def test_a_key_accepted_again_after_a_rejection_is_not_said_to_be_first_accepted_then(
        self, world, saved, fake_anthropic
    ):
        # Accepted, revoked at Anthropic, then restored there: only the last change is recorded, so "First accepted
        # <that time>" would contradict the answers the history shows on this key before it.
        def ask() -> None:
            console(world.acme_member).post(
                "/api/v1/orgs/acme/insights/queries", {"query": "MiCAR?"}, "application/json"
            )

        ask()
        ClaudeApiKey.objects.update(status_changed_at=datetime(2026, 3, 14, 9, 30, tzinfo=UTC))
        fake_anthropic.behave(CANARY_KEY, "auth_error")
        ask()
        fake_anthropic.behave(CANARY_KEY, "ok")
        ask()
        row = ClaudeApiKey.objects.get()

        page = page_of(world.acme_admin, "acme")

        assert row.status == KeyStatus.VALID and row.status_changed_at > datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
        assert "First accepted" not in page
        assert f"Accepted by Anthropic since {row.status_changed_at:%-d %b %Y, %H:%M} UTC." in page

    @pytest.mark.parametrize(
        "behaviour, midstream, refused",
        [
            ("rate_limited", None, "upstream_rate_limited"),
            ("billing_error", None, "upstream_billing"),
            ("credit_exhausted", None, "upstream_billing"),
            ("midstream_error", "overloaded_error", "insights_unavailable"),
            ("midstream_error", "rate_limit_error", "upstream_rate_limited"),
        ],
    )
    def test_a_key_anthropic_took_is_accepted_though_the_query_failed_for_another_reason(
        self, world, saved, fake_anthropic, behaviour, midstream, refused
    ):
        # Anthropic checks the key before its account's limits and balance, and an answer it began writing was
        # asked on an accepted key. The card must not go on saying the key will be checked on the next query:
        # that query was made, and the key is not what failed it.
        fake_anthropic.behave(CANARY_KEY, behaviour)
        if midstream:
            fake_anthropic.midstream_error = midstream
        ask = console(world.acme_member).post(
            "/api/v1/orgs/acme/insights/queries", {"query": "MiCAR?"}, "application/json"
        )

        page = page_of(world.acme_admin, "acme")

        assert ask.json()["error"]["code"] == refused  # the query failed, and not for the key
        assert "Anthropic has not checked it yet" not in page
        assert "Key saved and accepted by Anthropic." in page
        assert "indicator--ok" in page

    @pytest.mark.parametrize("behaviour", ["server_error", "overloaded"])
    def test_a_key_whose_query_anthropic_did_not_answer_is_not_promised_a_check_by_the_next_query(
        self, world, saved, fake_anthropic, behaviour
    ):
        # A query that Anthropic failed before looking at the key (5xx, overloaded, unreachable) leaves the key
        # unchecked. The card said "It will be checked on the next AI Insights query" to someone who had just made
        # that query: it now says what is known, and when that changes.
        fake_anthropic.behave(CANARY_KEY, behaviour)
        ask = console(world.acme_member).post(
            "/api/v1/orgs/acme/insights/queries", {"query": "MiCAR?"}, "application/json"
        )

        page = page_of(world.acme_admin, "acme")

        assert ask.json()["error"]["code"] == "insights_unavailable"
        assert "checked on the next AI Insights query" not in page
        assert (
            "Key saved. Anthropic has not checked it yet: it is checked when Anthropic next answers an AI Insights "
            "query." in page
        )

    def test_members_see_the_same_state_read_only(self, world, saved):
        page = page_of(world.acme_member, "acme")

        assert f'value="{MASKED}" readonly' in page
        assert "indicator--ok" in page
        assert "by admin@acme.test" in page
        assert "200 queries per rolling 60 minutes" in page
        assert SAVE_ACTION.format(slug="acme") not in page
        assert not offers_removal(page, "acme")
        assert 'name="api_key"' not in page
        assert "Only an Owner or Admin can change this key." in page
        assert CANARY_KEY not in page

    def test_a_key_anthropic_accepted_says_so(self, world, saved):
        ClaudeApiKey.objects.filter(organisation=world.acme).update(status=KeyStatus.VALID)

        assert "Key saved and accepted by Anthropic." in page_of(world.acme_admin, "acme")

    def test_a_key_anthropic_rejected_turns_the_indicator_red_with_the_documented_words(self, world, saved):
        ClaudeApiKey.objects.filter(organisation=world.acme).update(status=KeyStatus.INVALID)

        page = page_of(world.acme_admin, "acme")

        assert "indicator--bad" in page
        assert "indicator--ok" not in page
        assert "Your organisation's Claude API key is invalid. Update it in Settings → AI Insights." in page

    def test_a_member_told_the_key_was_rejected_is_told_whom_to_ask_as_on_the_insights_page(self, world, saved):
        ClaudeApiKey.objects.filter(organisation=world.acme).update(status=KeyStatus.INVALID)

        page = page_of(world.acme_member, "acme")

        assert (
            "Your organisation's Claude API key is invalid. Update it in Settings → AI Insights. "
            "Ask an Owner or Admin of your organisation to update it." in page
        )
        assert "Ask an Owner or Admin" not in page_of(world.acme_admin, "acme")


def key_field(page: str) -> dict[str, str | None]:
    """The attributes of the key's input, as a browser reads them (a bare attribute reads None)."""

    class Finder(HTMLParser):
        attrs: dict[str, str | None] | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "input" and ("id", "byom-key") in attrs:
                self.attrs = dict(attrs)

    finder = Finder()
    finder.feed(page)
    assert finder.attrs is not None, "no key field"
    return finder.attrs


class TestTheKeyField:
    """A masked text field, not a password field: browsers and password managers offer to save a password
    field's value as the user's Opsion password (the Anthropic key then sits in the browser's password store,
    often synced), and fill the saved Opsion password into it; they ignore autocomplete="off" on one."""

    OPT_OUTS = {
        "autocomplete": "off",
        "autocapitalize": "off",
        "autocorrect": "off",
        "spellcheck": "false",
        "data-1p-ignore": None,  # 1Password
        "data-lpignore": "true",  # LastPass
        "data-bwignore": None,  # Bitwarden
        "data-form-type": "other",  # Dashlane
    }

    def assert_masked_text_field(self, field: dict) -> None:
        assert field["type"] == "text"
        assert "secret-input" in field["class"].split()
        for name, value in self.OPT_OUTS.items():
            assert name in field and field[name] == value, (name, field)
        assert field["name"] == "api_key" and field["value"] == "" and "required" in field
        assert field["placeholder"] == "sk-ant-…"

    def test_with_no_key_stored(self, world):
        field = key_field(page_of(world.acme_admin, "acme"))

        self.assert_masked_text_field(field)
        assert field["aria-describedby"] == "byom-hint" and "aria-invalid" not in field and "autofocus" not in field

    def test_replacing_a_stored_key(self, world):
        store_key(world.acme, CANARY_KEY, by=world.acme_admin)

        page = page_of(world.acme_admin, "acme")

        assert '<label for="byom-key">New Anthropic API key</label>' in page
        self.assert_masked_text_field(key_field(page))
        assert CANARY_KEY not in page

    def test_a_refused_key_comes_back_empty_in_the_same_field_described_by_its_error(self, world):
        refused = "sk-ant-api03-this key has spaces in it and is long enough"
        response = console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": refused})
        page = response.content.decode()

        assert response.status_code == 400
        field = key_field(page)
        self.assert_masked_text_field(field)
        assert field["aria-invalid"] == "true" and field["aria-describedby"] == "byom-error byom-hint"
        assert "autofocus" in field
        assert "this key has spaces" not in page

    def test_the_key_form_holds_no_password_field_while_the_token_form_keeps_its_own(self, world):
        client = console(world.acme_admin)
        session = client.session
        session[recent_auth.SESSION_KEY] = time.time() - 16 * 60  # the token form asks for the password again
        session.save()

        page = client.get("/orgs/acme/settings/").content.decode()

        key_form = re.search(r'<form[^>]*class="key-form".*?</form>', page, re.S).group(0)
        assert 'type="password"' not in key_form
        password = re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)
        assert 'type="password"' in password and 'autocomplete="current-password"' in password
        assert "data-1p-ignore" not in password and "secret-input" not in password


class TestAuditLog:
    def test_owners_and_admins_see_saves_and_removals_with_actor_and_ip(self, world):
        client = console(world.acme_owner)
        client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY}, REMOTE_ADDR="203.0.113.5")
        console(world.acme_admin).post(
            "/orgs/acme/settings/claude-api-key/remove", {"confirm": "yes"}, REMOTE_ADDR="198.51.100.77"
        )

        for user in (world.acme_owner, world.acme_admin):
            page = page_of(user, "acme")
            assert '<h2 id="audit-heading">Audit log</h2>' in page
            rows = re.findall(r"<tr><td>.*?</tr>", page)
            assert len(rows) == 2
            assert "Claude API key removed" in rows[0]
            assert "admin@acme.test" in rows[0]
            assert "198.51.100.77" in rows[0]
            assert "Claude API key saved" in rows[1]
            assert "owner@acme.test" in rows[1]
            assert "203.0.113.5" in rows[1]

    def test_members_do_not_see_the_audit_log(self, world):
        console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})
        assert AuditEvent.objects.filter(organisation=world.acme).exists()  # there is a log to hide

        page = page_of(world.acme_member, "acme")

        assert "Audit log" not in page
        assert "Claude API key saved" not in page

    def test_it_shows_only_this_organisations_events(self, world):
        console(world.initech_admin).post("/orgs/initech/settings/claude-api-key/save", {"api_key": GOOD_KEY})

        page = page_of(world.acme_admin, "acme")

        assert "No changes recorded yet." in page
        assert "admin@initech.test" not in page

    def test_a_removal_by_opsion_staff_is_labelled_as_such(self, world):
        store_key(world.acme, GOOD_KEY)
        services.claude_api_key_remove_as_staff(org=world.acme, staff_user=world.staff, ip="10.0.0.1")

        page = page_of(world.acme_admin, "acme")

        assert "Claude API key removed (by Opsion staff)" in page
        assert "staff@opsion.test" in page
        assert "10.0.0.1" not in page  # staff's own network address stays in admin

    def test_a_change_through_the_api_is_labelled_as_such(self, world):
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_admin))
        console(world.acme_owner).post("/orgs/acme/settings/claude-api-key/remove", {"confirm": "yes"})

        page = page_of(world.acme_admin, "acme")

        assert "Claude API key saved (through the API)" in page
        assert "Claude API key removed</td>" in page  # in the console: no label


def record_events(org, count: int, *, actor_email: str = "owner@acme.test") -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(organisation=org, action=AuditAction.KEY_SAVED, actor_email=actor_email, detail=f"event {i}")
        for i in range(count)
    )


def csv_of(user, slug: str) -> list[list[str]]:
    response = console(user).get(f"/orgs/{slug}/settings/audit-log.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="opsion-{slug}-audit-log.csv"'
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))


class TestFullAuditLog:
    def test_the_settings_card_says_when_it_shows_only_the_latest_and_links_to_the_rest(self, world):
        record_events(world.acme, 51)

        page = page_of(world.acme_owner, "acme")

        assert len(re.findall(r"<tr><td>", page)) == 50
        assert "The 50 most recent changes." in page
        assert 'href="/orgs/acme/settings/audit-log/">Full audit log</a>' in page
        assert 'href="/orgs/acme/settings/audit-log.csv" download>Download as CSV</a>' in page

    @pytest.mark.parametrize("events", [3, 50])
    def test_a_log_shown_whole_is_not_called_the_most_recent_changes(self, world, events):
        record_events(world.acme, events)

        page = page_of(world.acme_owner, "acme")

        assert len(re.findall(r"<tr><td>", page)) == events
        assert "most recent changes" not in page  # exactly as many as the card holds: those are all of them

    def test_the_full_log_pages_through_every_event_newest_first(self, world):
        record_events(world.acme, 150)
        record_events(world.initech, 5, actor_email="admin@initech.test")
        client = console(world.acme_admin)

        first = client.get("/orgs/acme/settings/audit-log/").content.decode()
        second = client.get("/orgs/acme/settings/audit-log/", {"page": 2}).content.decode()
        beyond = client.get("/orgs/acme/settings/audit-log/", {"page": 99}).content.decode()

        details = [re.findall(r"event (\d+)", p) for p in (first, second)]
        assert [len(d) for d in details] == [100, 50]
        assert details[0][0] == "149" and details[1][-1] == "0"  # newest first, nothing missed
        assert "150 changes, newest first; page 1 of 2." in first
        assert 'rel="next">Older</a>' in first and 'rel="prev">Newer</a>' in second
        assert re.findall(r"event (\d+)", beyond) == details[1]  # out of range: the last page
        assert "initech" not in first + second
        # Each page is told apart in the browser's tabs and history, as a screen reader announces it.
        assert "<title>Audit log, page 1 of 2 · Acme Digital Assets · Opsion</title>" in first
        assert "<title>Audit log, page 2 of 2 · Acme Digital Assets · Opsion</title>" in second

    def test_the_csv_holds_every_event_and_keeps_staff_networks_out(self, world):
        record_events(world.acme, 120)
        console(world.acme_owner).post(
            "/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY}, REMOTE_ADDR="203.0.113.5"
        )
        services.claude_api_key_remove_as_staff(org=world.acme, staff_user=world.staff, ip="10.0.0.1")

        rows = csv_of(world.acme_admin, "acme")

        assert rows[0] == ["When (UTC)", "What", "Detail", "Who", "Through", "From"]
        assert len(rows) == 1 + 122
        assert rows[1][1:] == ["Claude API key removed", "", "staff@opsion.test", "Opsion staff", ""]
        assert rows[2][1:] == ["Claude API key saved", "", "owner@acme.test", "Opsion console", "203.0.113.5"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[1][0])
        assert "10.0.0.1" not in str(rows)

    def test_a_key_replaced_by_another_reads_replaced_not_saved_on_the_page_and_in_the_csv(self, world):
        # A compliance team tells a key set for the first time from one rotated; rows recorded before this told
        # them apart stay as they were ("saved").
        AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_SAVED, actor_email="old@acme.test")
        client = console(world.acme_owner)
        client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})
        client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY})

        rows = csv_of(world.acme_admin, "acme")
        page = console(world.acme_admin).get("/orgs/acme/settings/audit-log/").content.decode()

        assert [row[1] for row in rows[1:]] == [
            "Claude API key replaced",
            "Claude API key saved",
            "Claude API key saved",
        ]
        assert page.count("Claude API key replaced") == 1 and page.count("Claude API key saved") == 2

    def test_the_page_and_the_api_describe_each_event_in_the_same_words(self, world):
        # One description (AuditEvent.description), shown by the console's log and given by listAuditEvents.
        AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_SAVED, actor_email="o@acme.test")
        AuditEvent.objects.create(
            organisation=world.acme, action=AuditAction.PLAN_CHANGED, detail="Institutional → Professional"
        )
        described = ["Plan changed: Institutional → Professional", "Claude API key saved"]

        items = console().get("/api/v1/orgs/acme/audit-events", headers=bearer(world.acme_owner)).json()["items"]
        page = console(world.acme_owner).get("/orgs/acme/settings/audit-log/").content.decode()

        assert [event.description for event in AuditEvent.objects.filter(organisation=world.acme)] == described
        assert [item["description"] for item in items] == described
        assert all(f"<td>{words}" in page for words in described)

    def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_defused(self, world):
        AuditEvent.objects.create(
            organisation=world.acme, action=AuditAction.MEMBER_ADDED, actor_email="=cmd@x.test", detail="+SUM(A1)"
        )

        rows = csv_of(world.acme_owner, "acme")

        assert rows[1][2:4] == ["'+SUM(A1)", "'=cmd@x.test"]

    @pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
    def test_every_start_a_spreadsheet_reads_as_a_formula_is_defused(self, world, start):
        # An e-mail address may start with "-" (staff add members by address; it lands in the detail and the actor),
        # and "@", a tab or a carriage return start a formula in Excel or LibreOffice as "=" does.
        AuditEvent.objects.create(
            organisation=world.acme, action=AuditAction.MEMBER_ADDED, actor_email=f"{start}1+1@x.test", detail=start
        )

        rows = csv_of(world.acme_owner, "acme")

        assert rows[1][2:4] == [f"'{start}", f"'{start}1+1@x.test"]

    def test_the_csv_holds_only_this_organisations_events(self, world):
        record_events(world.acme, 2)
        record_events(world.initech, 3, actor_email="admin@initech.test")

        rows = csv_of(world.acme_admin, "acme")

        assert len(rows) == 1 + 2
        assert "admin@initech.test" not in str(rows)

    def test_the_csv_says_it_is_utf_8_so_a_spreadsheet_does_not_garble_plan_and_role_changes(self, world):
        # Excel reads a CSV without a byte-order mark in the machine's legacy code page: every "→" of a plan or
        # role change would read "â†’". The mark is how a spreadsheet knows the file is UTF-8.
        AuditEvent.objects.create(
            organisation=world.acme, action=AuditAction.PLAN_CHANGED, detail="Institutional → Professional"
        )

        body = b"".join(console(world.acme_owner).get("/orgs/acme/settings/audit-log.csv").streaming_content)

        assert body.startswith(b"\xef\xbb\xbfWhen (UTC),")
        assert list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[1][2] == "Institutional → Professional"

    def test_the_full_logs_heading_reads_right_for_a_name_ending_in_s(self, world):
        # "Acme Digital Assets's Claude API key" is not how anyone writes it; most organisations' names end in a plural.
        record_events(world.acme, 1)

        page = console(world.acme_owner).get("/orgs/acme/settings/audit-log/").content.decode()

        assert ">Changes to the Claude API key, plan and members of Acme Digital Assets</h2>" in page
        assert "Assets's" not in page

    @pytest.mark.parametrize("url", ["/orgs/acme/settings/audit-log/", "/orgs/acme/settings/audit-log.csv"])
    def test_only_owners_and_admins_of_the_organisation_may_read_it(self, world, url):
        record_events(world.acme, 1)

        refused = console(world.acme_member).get(url)
        assert refused.status_code == 403
        # Why, in the page (an Admin demoted since they opened the link reloads it and learns what changed).
        assert "Only an Owner or Admin of this organisation can read its audit log." in refused.content.decode()
        assert console(world.globex_owner).get(url).status_code == 404
        assert console().get(url).status_code == 302  # to sign in


class TestPlanChanges:
    def test_a_downgrade_keeps_the_key_and_hides_the_card(self, world):
        console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY})

        world.acme.plan = Plan.PROFESSIONAL
        world.acme.save()

        assert stored_key(world.acme) == CANARY_KEY
        for user in (world.acme_admin, world.acme_member):
            assert_no_card(page_of(user, "acme"))

    def test_restoring_the_plan_shows_the_stored_key_again(self, world):
        console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY})
        world.acme.plan = Plan.PROFESSIONAL
        world.acme.save()

        world.acme.plan = Plan.CUSTOM
        world.acme.save()

        page = page_of(world.acme_admin, "acme")
        assert CARD_HEADING in page
        assert f'value="{MASKED}" readonly' in page
        assert "by admin@acme.test" in page
        assert stored_key(world.acme) == CANARY_KEY

    def test_an_admin_is_told_about_a_leftover_key_and_can_remove_it(self, world):
        store_key(world.globex, CANARY_KEY, by=world.globex_owner)
        client = console(world.globex_admin)

        page = page_of(world.globex_admin, "globex")
        assert 'id="leftover-key"' in page
        assert "still stored" in page
        assert offers_removal(page, "globex")

        asked = client.post("/orgs/globex/settings/claude-api-key/remove")
        assert asked.status_code == 200
        assert "Remove the stored key?" in asked.content.decode()
        assert_no_card(asked.content.decode())
        assert stored_key(world.globex) == CANARY_KEY

        removed = client.post("/orgs/globex/settings/claude-api-key/remove", {"confirm": "yes"}, follow=True)
        page = removed.content.decode()
        assert "Claude API key removed." in page
        # Queries here were on Opsion's platform key all along: nothing "now" changes for them.
        assert "now use Opsion" not in html.unescape(page)
        assert "It was not in use on the Professional plan." in html.unescape(page)
        assert 'id="leftover-key"' not in page
        assert not ClaudeApiKey.objects.exists()
        assert AuditEvent.objects.get().action == AuditAction.KEY_REMOVED

    def test_members_are_not_offered_the_leftover_key_removal(self, world):
        store_key(world.globex, CANARY_KEY)

        page = page_of(world.globex_member, "globex")

        assert 'id="leftover-key"' not in page
        assert not offers_removal(page, "globex")

    def test_without_a_leftover_key_there_is_no_notice(self, world):
        assert 'id="leftover-key"' not in page_of(world.globex_admin, "globex")


def test_the_page_is_never_cached(world):
    response = console(world.acme_admin).get("/orgs/acme/settings/")

    assert response["Cache-Control"] == "no-store"


def test_a_long_address_may_wrap_only_after_its_at_sign_and_dots_and_is_escaped():
    from orgs.templatetags.orgs_tags import breakable_email

    assert breakable_email("admin@acme.test") == "admin@acme.test"  # short: stays whole
    assert breakable_email("alexandra.konstantinou@acme.test") == "alexandra.<wbr>konstantinou@<wbr>acme.<wbr>test"
    assert (
        breakable_email('"<b>"@long-domain-name.example') == "&quot;&lt;b&gt;&quot;@<wbr>long-domain-name.<wbr>example"
    )
