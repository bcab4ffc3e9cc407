"""One person in several organisations, each with its own role and plan: every surface acts in the organisation named,
with that organisation's key, limit, window, role and audit log, and never another's."""

import re

import pytest

from insights.models import InsightQuery
from orgs import services
from orgs.models import AuditEvent, Membership, Organisation, Plan, Role
from tests.base import GOOD_KEY, OTHER_KEY, make_user, organisation_admin_form
from tests.clients import api_put_key, bearer, console
from tests.conftest import PLATFORM_KEY
from tests.insights.helpers import seed
from tests.orgs.helpers import CARD_HEADING, MASKED, PLAN_REFUSAL, csrf_token_from, error_of, store_key, stored_key

QUERIES = "/api/v1/orgs/{}/insights/queries"
USAGE = "/api/v1/orgs/{}/insights/usage"
QUESTION = {"query": "What does MiCAR require of a CASP?"}


@pytest.fixture
def pat(world):
    """Owner of acme (Institutional, no key), Member of initech (Custom, OTHER_KEY stored), Admin of globex
    (Professional); not in umbrella (Starter), which has a key of its own left behind."""
    user = make_user("pat@several.test")
    Membership.objects.create(user=user, organisation=world.acme, role=Role.OWNER)
    Membership.objects.create(user=user, organisation=world.initech, role=Role.MEMBER)
    Membership.objects.create(user=user, organisation=world.globex, role=Role.ADMIN)
    services.claude_api_key_set(
        membership=world.membership(world.initech_admin, world.initech), raw_key=OTHER_KEY, ip=None
    )
    umbrella = Organisation.objects.create(name="Umbrella Tokens", slug="umbrella", plan=Plan.STARTER)
    Membership.objects.create(user=make_user("owner@umbrella.test"), organisation=umbrella, role=Role.OWNER)
    return user


def ask(client, slug):
    return client.post(QUERIES.format(slug), QUESTION, content_type="application/json")


@pytest.fixture(params=["token", "session"])
def api(request, pat):
    """One personal token, or one browser session, used in every organisation."""
    if request.param == "token":
        return console(headers=bearer(pat))
    return console(pat)


class TestOneCredentialInEachOrganisation:
    def test_each_query_runs_on_its_organisations_key_and_limit(self, world, pat, api, fake_anthropic):
        answers = {slug: ask(api, slug) for slug in ("acme", "initech", "globex")}

        assert {slug: r.status_code for slug, r in answers.items()} == {"acme": 200, "initech": 200, "globex": 200}
        assert fake_anthropic.keys_used == [PLATFORM_KEY, OTHER_KEY, PLATFORM_KEY]
        assert {slug: (r.json()["keySource"], r.json()["rateLimit"]) for slug, r in answers.items()} == {
            "acme": (
                "platform",
                {"limit": 20, "remaining": 19, "resetSeconds": answers["acme"].json()["rateLimit"]["resetSeconds"]},
            ),
            "initech": (
                "organisation",
                {
                    "limit": 200,
                    "remaining": 199,
                    "resetSeconds": answers["initech"].json()["rateLimit"]["resetSeconds"],
                },
            ),
            "globex": (
                "platform",
                {"limit": 20, "remaining": 19, "resetSeconds": answers["globex"].json()["rateLimit"]["resetSeconds"]},
            ),
        }
        assert answers["initech"]["RateLimit-Policy"] == '"insights";q=200;w=3600'
        assert answers["acme"]["RateLimit-Policy"] == answers["globex"]["RateLimit-Policy"] == '"insights";q=20;w=3600'

    def test_an_organisation_they_are_not_in_is_a_404_that_counts_nothing(self, world, pat, api, fake_anthropic):
        for response in (ask(api, "umbrella"), api.get(USAGE.format("umbrella")), api.get(QUERIES.format("umbrella"))):
            assert response.status_code == 404
            assert error_of(response)["code"] == "not_found"
            assert "RateLimit" not in response
        assert api.get("/api/v1/orgs/umbrella/settings").status_code == 404
        assert fake_anthropic.keys_used == []
        assert not InsightQuery.objects.exists()

    def test_windows_never_mix_counts_between_organisations(self, world, pat, api, fake_anthropic):
        seed(world.acme, *[60] * 19)  # acme one short of its 20
        seed(world.initech, *[60] * 5)
        seed(world.globex, *[60] * 20)  # globex full

        usage = {slug: api.get(USAGE.format(slug)).json() for slug in ("acme", "initech", "globex")}
        assert {slug: (u["used"], u["limit"], u["keySource"]) for slug, u in usage.items()} == {
            "acme": (19, 20, "platform"),
            "initech": (5, 200, "organisation"),
            "globex": (20, 20, "platform"),
        }
        assert ask(api, "acme").status_code == 200
        refused = ask(api, "globex")
        assert refused.status_code == 429
        assert error_of(refused)["message"] == "Rate limit reached (20/hour)"
        assert refused["RateLimit-Policy"] == '"insights";q=20;w=3600'
        assert ask(api, "acme").status_code == 429  # now full too
        assert ask(api, "initech").status_code == 200  # its own window, untouched by the others
        assert api.get(USAGE.format("initech")).json()["used"] == 6

    def test_history_in_each_organisation_is_their_own_there_only(self, world, pat, api):
        mine = {slug: seed(org, 100, user=pat)[0] for slug, org in (("acme", world.acme), ("initech", world.initech))}
        seed(world.initech, 50, user=world.initech_member)
        seed(world.globex, 50, user=world.globex_owner)

        ids = {
            slug: [i["id"] for i in api.get(QUERIES.format(slug)).json()["items"]]
            for slug in ("acme", "initech", "globex")
        }

        assert ids == {"acme": [mine["acme"].pk], "initech": [mine["initech"].pk], "globex": []}
        # An id of their own from another organisation is not an item of this one's list.
        assert api.get(QUERIES.format("globex"), {"after": mine["acme"].pk}).status_code == 400

    def test_settings_say_their_role_and_plan_in_each(self, world, pat, api):
        got = {slug: api.get(f"/api/v1/orgs/{slug}/settings").json() for slug in ("acme", "initech", "globex")}

        assert {s: (g["role"], g["byomAvailable"], g["claudeApiKeySet"]) for s, g in got.items()} == {
            "acme": ("owner", True, False),
            "initech": ("member", True, True),
            "globex": ("admin", False, False),
        }

    def test_audit_log_only_where_they_manage(self, world, pat, api):
        statuses = {
            slug: api.get(f"/api/v1/orgs/{slug}/audit-events").status_code
            for slug in ("acme", "initech", "globex", "umbrella")
        }

        assert statuses == {"acme": 200, "initech": 403, "globex": 200, "umbrella": 404}


class TestKeyWritesAcrossOrganisations:
    def test_writes_are_judged_by_the_role_and_plan_of_the_organisation_named(self, world, pat):
        client = console(headers=bearer(pat))

        member = api_put_key(client, "initech", {"apiKey": GOOD_KEY})
        plan = api_put_key(client, "globex", {"apiKey": GOOD_KEY})
        outsider = api_put_key(client, "umbrella", {"apiKey": GOOD_KEY})
        owner = api_put_key(client, "acme", {"apiKey": GOOD_KEY})

        assert (member.status_code, error_of(member)["code"]) == (403, "forbidden_role")
        assert (plan.status_code, error_of(plan)["code"]) == (403, "byom_plan_required")
        assert (outsider.status_code, error_of(outsider)["code"]) == (404, "not_found")
        assert owner.status_code == 200
        assert (stored_key(world.acme), stored_key(world.initech), stored_key(world.globex)) == (
            GOOD_KEY,
            OTHER_KEY,
            None,
        )
        assert client.delete("/api/v1/orgs/initech/settings/claude-api-key").status_code == 403
        assert stored_key(world.initech) == OTHER_KEY

    def test_the_console_refuses_the_same_way(self, world, pat):
        client = console(pat)
        save = "/orgs/{}/settings/claude-api-key/save"

        member = client.post(save.format("initech"), {"api_key": GOOD_KEY})
        plan = client.post(save.format("globex"), {"api_key": GOOD_KEY})
        outsider = client.post(save.format("umbrella"), {"api_key": GOOD_KEY})

        assert (member.status_code, plan.status_code, outsider.status_code) == (403, 403, 404)
        assert PLAN_REFUSAL in plan.content.decode()
        assert "Globex Payments is on the Professional plan" in plan.content.decode()
        assert (stored_key(world.initech), stored_key(world.globex)) == (OTHER_KEY, None)


class TestSettingsPages:
    def test_each_page_shows_that_organisations_card_and_state(self, world, pat):
        client = console(pat)
        acme, initech, globex = (
            client.get(f"/orgs/{s}/settings/").content.decode() for s in ("acme", "initech", "globex")
        )

        # acme: Owner, Institutional, no key: the form.
        assert CARD_HEADING in acme and 'name="api_key"' in acme and MASKED not in acme
        assert "<dd>Owner</dd>" in acme
        # initech: Member, Custom, key stored: read-only.
        assert CARD_HEADING in initech and MASKED in initech and 'name="api_key"' not in initech
        assert "Only an Owner or Admin can change this key. Your role is Member." in initech
        assert 'id="byom-remove"' not in initech and "Audit log" not in initech
        # globex: Admin, Professional: no card, no leftover notice.
        assert CARD_HEADING not in globex and 'id="leftover-key"' not in globex and "<dd>Admin</dd>" in globex
        assert client.get("/orgs/umbrella/settings/").status_code == 404

    def test_a_leftover_key_is_removable_only_where_they_manage(self, world, pat):
        store_key(world.globex, GOOD_KEY)
        client = console(pat)

        page = client.get("/orgs/globex/settings/").content.decode()
        assert 'id="leftover-key-remove"' in page
        confirm = client.get("/orgs/globex/settings/?confirm=remove").content.decode()
        token = csrf_token_from(confirm)
        saved_at = re.search(r'name="saved_at" value="([^"]+)"', confirm).group(1)
        removed = client.post(
            "/orgs/globex/settings/claude-api-key/remove",
            {"confirm": "yes", "saved_at": saved_at, "csrfmiddlewaretoken": token},
        )
        assert removed.status_code == 302
        assert (stored_key(world.globex), stored_key(world.initech)) == (None, OTHER_KEY)

    def test_the_switcher_lists_each_organisation_with_its_role_and_home_goes_to_the_first(self, world, pat):
        client = console(pat)

        assert client.get("/")["Location"] == "/orgs/acme/insights/"  # by name: Acme, Globex, Initech
        page = client.get("/orgs/initech/insights/").content.decode()
        switcher = re.search(r'<details class="switcher">.*?</details>', page, re.S).group(0)
        entries = re.findall(r'<a href="/orgs/([a-z]+)/insights/"[^>]*>[^<]+<span class="muted">· (\w+)', switcher)
        assert entries == [("acme", "Owner"), ("globex", "Admin"), ("initech", "Member")]
        assert 'href="/orgs/initech/insights/" aria-current="true"' in switcher
        assert "umbrella" not in switcher.lower()

    @pytest.mark.parametrize(
        ("page", "expected"),
        [
            ("/orgs/initech/insights/", {"acme": "insights/", "globex": "insights/", "initech": "insights/"}),
            ("/orgs/initech/settings/", {s: "settings/" for s in ("acme", "globex", "initech")}),
            ("/orgs/initech/settings/?revoke=TOKEN", {s: "settings/" for s in ("acme", "globex", "initech")}),
            # An Owner and an Admin may read the audit log; a Member may not, so there the nearest page is Settings.
            (
                "/orgs/acme/settings/audit-log/",
                {"acme": "settings/audit-log/", "globex": "settings/audit-log/", "initech": "settings/"},
            ),
            ("/accounts/password/?next=/orgs/acme/settings/", {s: "insights/" for s in ("acme", "globex", "initech")}),
        ],
    )
    def test_the_switcher_keeps_the_kind_of_page_where_their_role_allows(self, world, pat, page, expected):
        token, _ = services.api_token_create(user=pat, name="ci")
        response = console(pat).get(page.replace("TOKEN", str(token.pk)))
        assert response.status_code == 200

        switcher = re.search(r'<details class="switcher[^"]*">.*?</details>', response.content.decode(), re.S).group(0)
        links = dict(re.findall(r'<a href="/orgs/([a-z]+)/([^"]*)"', switcher))
        assert links == expected
        for slug, rest in links.items():
            assert console(pat).get(f"/orgs/{slug}/{rest}").status_code == 200

    def test_the_insights_meter_shows_each_organisations_own_window(self, world, pat):
        seed(world.acme, *[60] * 3)
        seed(world.initech, *[60] * 7)
        client = console(pat)

        meters = {}
        for slug in ("acme", "initech", "globex"):
            response = client.get(f"/orgs/{slug}/insights/")
            page = response.content.decode()
            used = re.search(r'id="usage-used">(\d+)<', page).group(1)
            limit = re.search(r'id="usage-limit">(\d+)<', page).group(1)
            meters[slug] = (int(used), int(limit), response["RateLimit-Policy"])
        assert meters == {
            "acme": (3, 20, '"insights";q=20;w=3600'),
            "initech": (7, 200, '"insights";q=200;w=3600'),
            "globex": (0, 20, '"insights";q=20;w=3600'),
        }

    def test_a_console_question_runs_on_the_organisation_of_the_page(self, world, pat, fake_anthropic):
        client = console(pat)

        for slug in ("globex", "initech", "acme"):
            response = client.post(f"/orgs/{slug}/insights/", QUESTION)
            assert response.status_code == 302, slug
        assert fake_anthropic.keys_used == [PLATFORM_KEY, OTHER_KEY, PLATFORM_KEY]
        rows = InsightQuery.objects.filter(user=pat).values_list("organisation__slug", "key_source")
        assert sorted(rows) == [("acme", "platform"), ("globex", "platform"), ("initech", "organisation")]


class TestChangesInOneOrganisationOnly:
    def test_a_role_change_in_admin_changes_that_organisation_only_at_the_next_request(self, world, pat):
        client = console(pat)
        staff = console(world.staff)
        assert client.get("/orgs/acme/settings/audit-log/").status_code == 200

        data = organisation_admin_form(world.acme)
        row = next(k for k, v in data.items() if k.endswith("-user") and v == str(pat.pk)).removesuffix("-user")
        data[f"{row}-role"] = Role.MEMBER
        assert staff.post(f"/admin/orgs/organisation/{world.acme.pk}/change/", data).status_code == 302

        assert client.get("/orgs/acme/settings/audit-log/").status_code == 403
        assert client.get("/orgs/globex/settings/audit-log/").status_code == 200
        page = client.get("/orgs/globex/settings/").content.decode()
        switcher = re.search(r'<details class="switcher">.*?</details>', page, re.S).group(0)
        assert re.findall(r'<span class="muted">· (\w+)', switcher) == ["Member", "Admin", "Member"]
        assert api_put_key(console(headers=bearer(pat)), "acme", {"apiKey": GOOD_KEY}).status_code == 403

    def test_a_plan_change_in_admin_changes_that_organisations_key_only(self, world, pat, fake_anthropic):
        staff = console(world.staff)
        store_key(world.acme, GOOD_KEY)
        client = console(headers=bearer(pat))

        data = organisation_admin_form(world.initech, plan=Plan.PROFESSIONAL)
        assert staff.post(f"/admin/orgs/organisation/{world.initech.pk}/change/", data).status_code == 302

        for slug in ("initech", "acme"):
            assert ask(client, slug).status_code == 200
        assert fake_anthropic.keys_used == [PLATFORM_KEY, GOOD_KEY]
        assert client.get(USAGE.format("initech")).json()["limit"] == 20
        assert client.get(USAGE.format("acme")).json()["limit"] == 200

    def test_removal_from_one_organisation_leaves_the_token_working_in_the_others(self, world, pat, fake_anthropic):
        client = console(headers=bearer(pat))
        Membership.objects.filter(user=pat, organisation=world.globex).delete()

        assert ask(client, "globex").status_code == 404
        assert ask(client, "acme").status_code == 200
        assert console(pat).get("/")["Location"] == "/orgs/acme/insights/"


class TestStaffWhoAreAlsoMembers:
    def test_staff_status_gives_no_customer_rights_beyond_the_role(self, world, fake_anthropic):
        Membership.objects.create(user=world.staff, organisation=world.acme, role=Role.MEMBER)
        store_key(world.acme, GOOD_KEY)
        client = console(world.staff)
        token = console(headers=bearer(world.staff))

        assert client.get("/orgs/acme/settings/audit-log/").status_code == 403
        assert token.get("/api/v1/orgs/acme/audit-events").status_code == 403
        assert api_put_key(token, "acme", {"apiKey": OTHER_KEY}).status_code == 403
        assert token.delete("/api/v1/orgs/acme/settings/claude-api-key").status_code == 403
        page = client.get("/orgs/acme/settings/").content.decode()
        assert 'name="api_key"' not in page and 'id="byom-remove"' not in page
        # Not a member of globex: staff or not, the console and the API know of no such organisation.
        assert client.get("/orgs/globex/settings/").status_code == 404
        assert token.get("/api/v1/orgs/globex/settings").status_code == 404
        assert ask(token, "globex").status_code == 404
        assert ask(token, "acme").json()["keySource"] == "organisation"
        assert stored_key(world.acme) == GOOD_KEY
        assert not AuditEvent.objects.filter(organisation=world.acme).exists()


def test_an_answer_link_from_another_organisation_shows_nothing_there(world, pat):
    acme_query = seed(world.acme, 100, user=pat)[0]
    client = console(pat)

    page = client.get(f"/orgs/globex/insights/?answered={acme_query.pk}").content.decode()

    assert "seeded 0" not in page
    assert "seeded 0" in client.get(f"/orgs/acme/insights/?answered={acme_query.pk}").content.decode()


def test_what_they_change_in_one_organisation_is_in_that_audit_log_only(world, pat):
    client = console(headers=bearer(pat))
    assert api_put_key(client, "acme", {"apiKey": GOOD_KEY}).status_code == 200

    acme = client.get("/api/v1/orgs/acme/audit-events").json()["items"]
    globex = client.get("/api/v1/orgs/globex/audit-events").json()["items"]
    csv = console(pat).get("/orgs/globex/settings/audit-log.csv")

    assert [(e["action"], e["actorEmail"]) for e in acme] == [("claude_api_key.saved", "pat@several.test")]
    assert globex == []
    assert "pat@several.test" not in b"".join(csv.streaming_content).decode()
