"""A Claude API key or an API token typed into a console address's query string is not sent back.

Nothing Opsion links to puts one there, but a script or a hand-made form can (a key posted as a GET to the URL its
form posts to). Left alone, the address came back whole: in the sign-in redirect's `next` (its Location header and
the sign-in page's form) and, signed in, in each redirect that keeps the query string (a missing trailing slash).

A key pasted into the address bar lands in the path instead (`/orgs/acme/sk-ant-…`, or in the slug's place), and came
back the same ways, and on admin's own sign-in redirect and the DEBUG 404 page: a path holding one is refused too, on
every surface."""

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.test import Client

from orgs import services
from orgs.drafts import typed_by
from orgs.models import Membership, Organisation, Plan, Role
from tests.base import CANARY_KEY, PASSWORD
from tests.orgs.helpers import csrf_token_from
from tests.security.conftest import base_env, run_python

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
    # The API refuses a parameter an operation does not take by its name, never its value.
    refused = client.get(f"/api/v1/orgs/acme/settings?apiKey={CANARY_KEY}")
    assert refused.status_code == 400 and "apiKey" in refused.content.decode()
    for secret in (CANARY_KEY, CANARY_KEY[13:45]):
        assert secret not in _shown(refused)


@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
@pytest.mark.parametrize("draft", ["", "A question typed before the session expired"], ids=["no-draft", "draft"])
@pytest.mark.parametrize(
    "next_url", [f"{SAVE}?api_key={CANARY_KEY}", f"/orgs/{CANARY_KEY}/insights/"], ids=["query", "path"]
)
def test_a_stale_sign_in_form_whose_next_address_holds_a_key_does_not_send_it_back(world, signed_in, draft, next_url):
    """The sign-in form gone stale (another tab signed in, or signed in and out) is turned into a GET of the sign-in
    page with its `next`, or the sign-in page again: a `next` holding a key came back in its Location or its form."""
    client = Client(enforce_csrf_checks=True)
    token = csrf_token_from(client.get("/accounts/login/").content.decode())
    client.cookies["csrftoken"] = "s" * 32  # what signing in in another tab does to the cookie
    if signed_in:
        client.force_login(world.acme_admin)
    form = {"username": "admin@acme.test", "password": PASSWORD, "csrfmiddlewaretoken": token}
    form |= {"next": next_url, "draft": draft, "draft_by": typed_by(world.acme_admin)}

    response = client.post("/accounts/login/", form)

    assert response.status_code in (200, 302)
    assert CANARY_KEY not in _shown(response) and CANARY_KEY[13:45] not in _shown(response)
    if response.status_code == 302:
        assert client.get(response["Location"]).status_code in (200, 302)  # an address that opens, not the 400


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
@pytest.mark.parametrize(
    "path",
    [
        "/orgs/acme/{key}",  # pasted after the organisation's address: a 404, whose DEBUG page printed the path
        "/orgs/{key}/settings/",  # in the slug's place: the sign-in redirect's `next` carried it
        "/orgs/{key}/settings",  # …and a missing slash's redirect
        "/admin/orgs/organisation/{key}/change/",  # admin's own sign-in redirect
        "/orgs/acme/insights/{token}/",  # an API token, as its query string is screened
        "/orgs/acme/settings/{encoded_key}",  # percent-encoded: the path Django reads is decoded
    ],
)
def test_a_key_or_token_typed_into_an_address_path_is_refused_and_sent_back_nowhere(
    world, token, caplog, settings, debug, signed_in, path
):
    settings.DEBUG = debug
    client = Client()
    if signed_in:
        client.force_login(world.acme_admin)

    with caplog.at_level(logging.DEBUG):
        response = client.get(path.format(key=CANARY_KEY, token=token, encoded_key=CANARY_KEY.replace("-", "%2D")))

    assert response.status_code == 400
    shown = _shown(response)
    for secret in (CANARY_KEY, CANARY_KEY[13:45], token, token[12:]):
        assert secret not in shown
        assert secret not in caplog.text
    assert "looks like a Claude API key or an API token" in shown
    # Nothing on the page loads with the address as its Referer (a proxy's log in front of Opsion keeps those).
    assert response["Referrer-Policy"] == "no-referrer"
    assert "a key or token in the path of GET /" in caplog.text  # the operator is told what was refused


def test_a_key_typed_into_an_api_path_is_refused_in_the_apis_shape(world, token, caplog):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    with caplog.at_level(logging.DEBUG):
        response = client.get(f"/api/v1/orgs/{CANARY_KEY}/settings")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "looks like a Claude API key or an API token" in response.json()["error"]["message"]
    assert CANARY_KEY[13:45] not in _shown(response) and CANARY_KEY[13:45] not in caplog.text


def test_a_sign_in_whose_next_address_holds_a_key_in_its_path_does_not_send_it_on(world):
    """A `next` naming a path with a key in it (typed by hand, or kept from before this check): opened, the sign-in
    page is refused; posted, signing in lands on the default page, without it."""
    assert Client().get(f"/accounts/login/?next=/orgs/{CANARY_KEY}/settings/").status_code == 400
    form = {"username": "admin@acme.test", "password": PASSWORD, "next": f"/orgs/{CANARY_KEY}/settings/"}

    response = Client().post("/accounts/login/", form)

    assert response.status_code == 302 and response["Location"] == "/"
    assert CANARY_KEY[13:45] not in _shown(response)


def test_an_organisation_whose_slug_looks_like_a_key_is_refused_naming_nothing(world):
    """A slug may not have a key's form (admin refuses it: log lines blank such text wherever it appears), but one
    saved before that rule has addresses that look like a pasted key: they are refused like one, echoing nothing, and
    staff rename it in admin (its change page is addressed by number)."""
    org = Organisation.objects.create(
        slug="sk-ant-capital-markets", name="SK Ant Capital Markets", plan=Plan.INSTITUTIONAL
    )
    Membership.objects.create(user=world.acme_admin, organisation=org, role=Role.OWNER)
    client = Client()

    response = client.get("/orgs/sk-ant-capital-markets/insights/")

    assert response.status_code == 400 and "sk-ant-capital-markets" not in _shown(response)
    client.force_login(world.staff)
    assert client.get(f"/admin/orgs/organisation/{org.pk}/change/").status_code == 200


def test_migrate_names_each_organisation_whose_slug_now_refuses_every_one_of_its_pages(world):
    """Refused like a pasted key, such an organisation's members met 'Not opened' at every page and the API, and staff
    could not tell which one from the log (its WARNING line names the path redacted). The checks `migrate` runs (with
    the database) name each, by the number its admin change page is addressed by."""
    assert [m for m in run_checks(databases=["default"]) if m.id == "opsion.W008"] == []
    org = Organisation.objects.create(slug="sk-ant-capital-markets", name="SK Ant Capital Markets", plan=Plan.CUSTOM)

    (warning,) = [m for m in run_checks(databases=["default"]) if m.id == "opsion.W008"]

    assert f"/admin/orgs/organisation/{org.pk}/change/" in warning.msg + warning.hint
    assert "sk-ant-capital" not in warning.msg + warning.hint  # log lines would blank it: the number is enough
    assert [m for m in run_checks() if m.id == "opsion.W008"] == []  # without the database, as start-up runs them


def test_migrate_runs_that_check_on_a_database_it_is_about_to_create(tmp_path):
    # The checks run before the migrations: on a new database there is no organisation table to read yet.
    env = base_env(
        DEBUG="1",
        SECRET_KEY="test-secret-key-not-for-production",
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'new.sqlite3'}",
    )

    result = run_python(["manage.py", "migrate", "--noinput"], env, timeout=180)

    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "address",
    [
        "/orgs/{key}/settings/",  # a key in the path
        "/orgs/acme/settings/{encoded_key}",  # …percent-encoded
        "/orgs/acme/settings/?api_key={key}",  # in a console address's query string
        "/api/v1/orgs/acme/settings?apiKey={encoded_key}",  # in an API query string, which HTTPS would have served
        "/orgs/acme/insights/?access_token={token}",  # an API token
    ],
)
def test_over_plain_http_a_key_in_the_address_is_refused_not_echoed_in_the_https_redirect(
    world, token, settings, caplog, address
):
    # With HTTPS=1 Django's SecurityMiddleware, above the refusal, redirected to https:// with the address whole.
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000  # as HTTPS=1 sets it: the header the refusal must not carry over HTTP
    url = address.format(key=CANARY_KEY, token=token, encoded_key=CANARY_KEY.replace("-", "%2D"))

    with caplog.at_level(logging.DEBUG):
        response = Client().get(url)

    assert response.status_code == 400, response.get("Location")
    shown = _shown(response)
    for secret in (CANARY_KEY[13:45], token[12:]):
        assert secret not in shown and secret not in caplog.text
    assert "looks like a Claude API key or an API token" in shown
    # Every layer's headers, as on the refusal over HTTPS: the request's ID, the security and no-store headers.
    assert response["X-Request-ID"] and response["X-Frame-Options"] == "DENY"
    assert response["Cache-Control"] == "no-store" and response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response
    assert "Strict-Transport-Security" not in response  # never sent over plain HTTP


def test_over_plain_http_an_ordinary_address_is_still_redirected_to_https(world, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = Client().get("/api/v1/orgs/acme/settings?limit=1")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/api/v1/orgs/acme/settings?limit=1"


def test_over_https_an_address_holding_a_key_is_refused_with_the_hsts_header_as_ever(world, settings):
    # Only a plain-HTTP request is told it is secure while it passes (its HSTS header, untrue there, dropped): one
    # already over HTTPS is refused below, as before, and keeps every header HTTPS adds.
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000

    response = Client().get(f"/orgs/acme/settings/?api_key={CANARY_KEY}", secure=True)

    assert response.status_code == 400
    assert "looks like a Claude API key or an API token" in _shown(response)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
