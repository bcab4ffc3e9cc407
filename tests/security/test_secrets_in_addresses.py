"""A Claude API key or an API token typed into a console address's query string is not sent back.

Nothing Opsion links to puts one there, but a script or a hand-made form can (a key posted as a GET to the URL its
form posts to). Left alone, the address came back whole: in the sign-in redirect's `next` (its Location header and
the sign-in page's form) and, signed in, in each redirect that keeps the query string (a missing trailing slash)."""

import pytest
from django.test import Client

from orgs import services
from orgs.drafts import typed_by
from orgs.models import Membership, Organisation, Plan, Role
from tests.base import CANARY_KEY, PASSWORD
from tests.orgs.helpers import csrf_token_from

SAVE = "/orgs/acme/settings/claude-api-key/save"


def _shown(response) -> str:
    """Everything a response sends back: its headers and its body."""
    headers = "\n".join(f"{name}: {value}" for name, value in response.items())
    return headers + "\n" + response.content.decode()


@pytest.fixture
def token(world) -> str:
    return services.api_token_create(user=world.acme_admin, name="Script")[1]


@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
@pytest.mark.parametrize(
    "address",
    [f"{SAVE}?api_key={{key}}", "/orgs/acme/settings?api_key={key}", "/orgs/acme/insights/?access_token={token}"],
)
def test_a_key_or_token_in_a_console_address_is_refused_and_sent_back_nowhere(world, token, signed_in, address):
    client = Client()
    if signed_in:
        client.force_login(world.acme_admin)
    url = address.format(key=CANARY_KEY, token=token)

    response = client.get(url)

    assert response.status_code == 400
    shown = _shown(response)
    for secret in (CANARY_KEY, CANARY_KEY[13:45], token, token[12:]):
        assert secret not in shown
    assert "looks like a Claude API key or an API token" in shown


def test_a_sign_in_whose_next_address_holds_a_key_does_not_send_it_on(world):
    """A `next` typed by hand (or kept from before this check) holding a key: signing in lands without it."""
    form = {"username": "admin@acme.test", "password": PASSWORD, "next": f"{SAVE}?api_key={CANARY_KEY}"}

    response = Client().post("/accounts/login/", form)

    assert response.status_code == 302 and response["Location"] == SAVE  # the page itself, without the key
    assert CANARY_KEY not in _shown(response)


def test_ordinary_console_addresses_with_query_strings_still_work(world, acme_key):
    client = Client()
    client.force_login(world.acme_admin)
    assert client.get("/orgs/acme/settings/?confirm=remove").status_code == 200
    assert client.get("/orgs/acme/settings/audit-log/?page=1").status_code == 200
    # The API never sends a query string back (an unknown parameter is named redacted): it is left as it was.
    assert client.get(f"/api/v1/orgs/acme/settings?apiKey={CANARY_KEY}").status_code == 200


@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
@pytest.mark.parametrize("draft", ["", "A question typed before the session expired"], ids=["no-draft", "draft"])
def test_a_stale_sign_in_form_whose_next_address_holds_a_key_does_not_send_it_back(world, signed_in, draft):
    """The sign-in form gone stale (another tab signed in, or signed in and out) is turned into a GET of the sign-in
    page with its `next`, or the sign-in page again: a `next` holding a key came back in its Location or its form."""
    client = Client(enforce_csrf_checks=True)
    token = csrf_token_from(client.get("/accounts/login/").content.decode())
    client.cookies["csrftoken"] = "s" * 32  # what signing in in another tab does to the cookie
    if signed_in:
        client.force_login(world.acme_admin)
    form = {"username": "admin@acme.test", "password": PASSWORD, "csrfmiddlewaretoken": token}
    form |= {"next": f"{SAVE}?api_key={CANARY_KEY}", "draft": draft, "draft_by": typed_by(world.acme_admin)}

    response = client.post("/accounts/login/", form)

    assert response.status_code in (200, 302)
    assert CANARY_KEY not in _shown(response) and CANARY_KEY[13:45] not in _shown(response)
    if response.status_code == 302:
        assert client.get(response["Location"]).status_code in (200, 302)  # an address that opens, not the 400


def test_an_organisation_whose_slug_looks_like_a_key_is_still_reached_through_the_sign_in(world):
    """A slug is no secret, though one may have a key's form (an organisation named SK Ant Capital Markets): the
    sign-in page the organisation's pages send a signed-out member to names it in `next`, and was refused."""
    org = Organisation.objects.create(
        slug="sk-ant-capital-markets", name="SK Ant Capital Markets", plan=Plan.INSTITUTIONAL
    )
    Membership.objects.create(user=world.acme_admin, organisation=org, role=Role.OWNER)
    client = Client()

    sign_in = client.get("/orgs/sk-ant-capital-markets/insights/", follow=True)

    assert sign_in.status_code == 200 and sign_in.redirect_chain[-1][0].startswith("/accounts/login/?next=")
    form = {"username": "admin@acme.test", "password": PASSWORD, "next": "/orgs/sk-ant-capital-markets/insights/"}
    assert client.post("/accounts/login/", form)["Location"] == "/orgs/sk-ant-capital-markets/insights/"
    assert (
        client.get(f"/accounts/login/?next=/orgs/sk-ant-capital-markets/settings/%3Fapi_key%3D{CANARY_KEY}").status_code
        == 400
    )
