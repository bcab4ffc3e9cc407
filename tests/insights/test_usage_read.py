"""The insights page's read of the window (insights:usage): what its script shows once a query frees up."""

import html
import re

import pytest
from cryptography.fernet import Fernet
from django.test import Client

from .helpers import seed_spread

pytestmark = pytest.mark.django_db

PAGE = "/orgs/{}/insights/"
USAGE = "/orgs/{}/insights/usage"


def beside_ask(page: str) -> str:
    notice = re.search(r'<p id="ask-limit"([^>]*)>(.*?)</p>', page, re.DOTALL)
    return "" if " hidden" in notice[1] else " ".join(html.unescape(re.sub(r"<[^>]+>", "", notice[2])).split())


def test_at_the_limit_it_says_what_the_page_says_beside_ask(world, fake_anthropic, console):
    seed_spread(world.globex, 20, oldest=1800, newest=60)
    client = console(world.globex_member)

    usage = client.get(USAGE.format("globex"))
    page = client.get(PAGE.format("globex")).content.decode()

    assert usage.status_code == 200
    body = usage.json()
    assert body["used"] == 20 and body["limit"] == 20 and body["remaining"] == 0
    assert (
        re.sub(r"<[^>]+>", "", body["limitReached"])
        == beside_ask(page)
        == "Rate limit reached (20/hour). Try again in 30 min."
    )
    assert abs(body["resetSeconds"] - 1800) <= 2
    assert usage["RateLimit"].startswith('"insights";r=0;t=')


def test_below_the_limit_it_says_no_refusal(world, console):
    seed_spread(world.globex, 19, oldest=1800, newest=60)

    body = console(world.globex_member).get(USAGE.format("globex")).json()

    assert body["used"] == 19 and body["remaining"] == 1
    assert "limitReached" not in body


def test_at_the_limit_with_an_unreadable_key_it_says_no_limit_as_the_page_says_none(
    world, fake_anthropic, console, acme_key, settings
):
    seed_spread(world.acme, 200, oldest=1800, newest=60)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    body = console(world.acme_member).get(USAGE.format("acme")).json()

    assert body["remaining"] == 0 and "limitReached" not in body


def test_it_is_for_members_only(world, console):
    seed_spread(world.acme, 3, oldest=1800, newest=60)

    assert console(world.globex_member).get(USAGE.format("acme")).status_code == 404
    assert console(world.acme_member).post(USAGE.format("acme")).status_code == 405


def test_signed_out_it_answers_401_in_json_not_the_sign_in_page(world):
    # The script reads it with fetch, which followed the redirect to the sign-in page: a 200 of HTML that it could
    # not tell from any other failed read, so it enabled Ask beside the old count, saying a query had freed up.
    seed_spread(world.acme, 3, oldest=1800, newest=60)

    signed_out = Client().get(USAGE.format("acme"), headers={"Accept": "application/json"})

    assert signed_out.status_code == 401
    assert "Location" not in signed_out
    assert signed_out["Content-Type"].startswith("application/json")
    assert signed_out.json()["error"]["code"] == "unauthenticated"
    assert "used" not in signed_out.json()  # nothing of the organisation's window
    assert Client().get(USAGE.format("nowhere")).status_code == 401  # nor whether an organisation exists


def test_signed_out_its_401_names_how_to_authenticate_without_a_browser_dialog(world):
    # RFC 9110 (11.6.1): a 401 MUST carry a challenge applicable to the resource. Only the session signs in here (an
    # API token is read by the API's getUsage, not this page's read), so not Bearer; and not Basic, whose challenge
    # makes a browser open its own sign-in dialog.
    signed_out = Client().get(USAGE.format("acme"))

    assert signed_out.status_code == 401
    assert signed_out["WWW-Authenticate"] == 'Cookie form-action="/accounts/login/"'
