"""`GET /api/v1/orgs` (listOrganisations): the caller's own organisations, so a token holder can find the slugs the
other operations take."""

import pytest
from django.test import Client

from orgs.models import ApiToken, Membership, Organisation, Plan, Role
from tests.base import make_user
from tests.clients import bearer, console, token_client
from tests.orgs.helpers import error_of

ORGS = "/api/v1/orgs"


@pytest.fixture
def pat(world):
    """Owner of acme (Institutional), Member of initech (Custom), Admin of globex (Professional), Member of umbrella
    (Starter); not in hooli, which only its own owner belongs to."""
    user = make_user("pat@several.test")
    umbrella = Organisation.objects.create(name="Umbrella Tokens", slug="umbrella", plan=Plan.STARTER)
    hooli = Organisation.objects.create(name="Hooli Ledger", slug="hooli", plan=Plan.INSTITUTIONAL)
    Membership.objects.create(user=make_user("owner@hooli.test"), organisation=hooli, role=Role.OWNER)
    for org, role in (
        (world.initech, Role.MEMBER),
        (umbrella, Role.MEMBER),
        (world.acme, Role.OWNER),
        (world.globex, Role.ADMIN),
    ):
        Membership.objects.create(user=user, organisation=org, role=role)
    return user


@pytest.fixture(params=["token", "session"])
def api(request, pat):
    """Pat's personal token, or Pat's browser session."""
    return token_client(pat) if request.param == "token" else console(pat)


def test_it_lists_the_callers_own_organisations_whatever_their_plan_by_name(world, pat, api):
    response = api.get(ORGS)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "items": [
            {
                "slug": "acme",
                "name": "Acme Digital Assets",
                "plan": "institutional",
                "role": "owner",
                "byomAvailable": True,
            },
            {
                "slug": "globex",
                "name": "Globex Payments",
                "plan": "professional",
                "role": "admin",
                "byomAvailable": False,
            },
            {"slug": "initech", "name": "Initech Custody", "plan": "custom", "role": "member", "byomAvailable": True},
            {
                "slug": "umbrella",
                "name": "Umbrella Tokens",
                "plan": "starter",
                "role": "member",
                "byomAvailable": False,
            },
        ]
    }


def test_each_slug_listed_opens_that_organisations_settings(world, pat, api):
    for organisation in api.get(ORGS).json()["items"]:
        settings = api.get(f"{ORGS}/{organisation['slug']}/settings")
        assert settings.status_code == 200, organisation
        assert settings.json()["organisation"] == {k: organisation[k] for k in ("slug", "name", "plan")}
        assert settings.json()["role"] == organisation["role"]


def test_organisations_of_one_name_keep_one_order_by_slug(world, pat, api):
    # Names are not unique: two of the same name come in the order of their slugs, never as the database happens to
    # return them.
    for slug in ("zeta-acme", "acme-eu", "acme-uk"):
        org = Organisation.objects.create(name="Acme Digital Assets", slug=slug, plan=Plan.PROFESSIONAL)
        Membership.objects.create(user=pat, organisation=org, role=Role.MEMBER)

    slugs = [organisation["slug"] for organisation in api.get(ORGS).json()["items"]]

    assert slugs == ["acme", "acme-eu", "acme-uk", "zeta-acme", "globex", "initech", "umbrella"]


def test_someone_in_no_organisation_gets_an_empty_list(world):
    for user in (world.outsider, world.staff):  # Opsion staff see their own memberships too: none
        response = token_client(user).get(ORGS)
        assert (response.status_code, response.json()) == (200, {"items": []}), user


def test_it_needs_credentials_as_every_operation_does(world):
    response = Client().get(ORGS)

    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_head_answers_as_get_without_a_body(world, pat):
    client = token_client(pat)

    got, head = client.get(ORGS), client.head(ORGS)

    assert (head.status_code, head.content, head["Content-Type"]) == (200, b"", got["Content-Type"])
    assert head["X-Request-ID"] and head["X-Request-ID"] != got["X-Request-ID"]


def test_a_write_is_a_json_405_naming_get_and_head(world, pat):
    response = token_client(pat).post(ORGS, {}, content_type="application/json")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


def test_the_address_has_no_trailing_slash(world, pat):
    response = token_client(pat).get(ORGS + "/")

    assert response.status_code == 404
    assert "no trailing slash" in error_of(response)["message"]


def test_it_costs_two_queries_however_many_organisations(world, pat, django_assert_num_queries):
    # The token, then every membership with its organisation; the token's last use is written on its first call only.
    headers = bearer(pat)
    client = console()
    client.get(ORGS, headers=headers)
    for slug in ("one", "two", "three"):
        org = Organisation.objects.create(name=slug, slug=slug, plan=Plan.STARTER)
        Membership.objects.create(user=pat, organisation=org, role=Role.MEMBER)

    with django_assert_num_queries(2):
        assert len(client.get(ORGS, headers=headers).json()["items"]) == 7
    assert ApiToken.objects.get(user=pat).last_used_at is not None


@pytest.mark.parametrize("query", ["?limit=1", "?page=2", "?cursor=abc", "?slug=acme"])
def test_a_query_string_parameter_is_refused_by_name_not_ignored(world, pat, query):
    # The list is not paged and takes no filter: answered with every organisation again, a client that asked for one
    # page, or one organisation, would take what it got for what it asked for.
    response = token_client(pat).get(ORGS + query)

    assert response.status_code == 400
    name = query[1:].split("=")[0]
    assert error_of(response) == {
        "code": "invalid_request",
        "message": f"The parameter `{name}` is unknown: this list takes no parameter (it is not paged: every "
        "organisation you belong to is in one answer).",
    }


def test_a_key_in_a_parameters_name_is_not_sent_back(world, pat):
    key = "sk-ant-api03-CANARY0canary1CANARY2canary3CANARY4canary5-NEVER-LEAK-ME_0123456789"

    response = token_client(pat).get(f"{ORGS}?{key}=1")

    assert response.status_code == 400 and "sk-ant-[redacted]" in error_of(response)["message"]
    assert key[13:] not in response.content.decode()
