"""FIELD_ENCRYPTION_KEYS no longer holds the key a stored Claude API key was written with, or its ciphertext was
copied from another organisation's row (by someone with write access to the database but no entry), so acme's queries
would run and bill on initech's key.

Owners see "the stored key cannot be read; save it again" on the settings page, in the settings
API and when they query; operators get a log line; nobody gets a 500; and nothing, least of all
the ciphertext, is sent to Anthropic.
"""

import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.urls import reverse
from django.utils.html import escape

from insights import services
from insights.models import InsightQuery, Outcome
from orgs.models import ClaudeApiKey
from tests.base import CANARY_KEY, GOOD_KEY, OTHER_KEY
from tests.orgs.helpers import store_key

UNREADABLE = (
    "Your organisation's stored Claude API key cannot be read. An Owner or Admin should save it again "
    "in Settings → AI Insights."
)
OPERATOR_LOG = "stored claude api key for org=acme cannot be decrypted with FIELD_ENCRYPTION_KEYS"


@pytest.fixture
def key_lost(acme_key, settings):
    """Acme's key was saved under the test key; the deployment now lists only a new, different one."""
    old = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return old


@pytest.fixture(params=["entry-dropped", "copied-from-another-organisation"])
def key_unreadable(request, world, acme_key, settings):
    """Acme's stored key is one no configured entry opens for acme."""
    if request.param == "entry-dropped":
        settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        return
    store_key(world.initech, CANARY_KEY)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orgs_claudeapikey SET secret = (SELECT secret FROM orgs_claudeapikey WHERE organisation_id = %s) "
            "WHERE organisation_id = %s",
            [world.initech.pk, world.acme.pk],
        )


def ask(client):
    return client.post(
        "/api/v1/orgs/acme/insights/queries",
        data=json.dumps({"query": "MiCAR Article 59?"}),
        content_type="application/json",
    )


def test_the_settings_page_says_the_stored_key_cannot_be_read(world, key_unreadable, console, caplog):
    with caplog.at_level(logging.ERROR, logger="opsion"):
        response = console(world.acme_owner).get(reverse("orgs:settings", args=["acme"]))

    assert response.status_code == 200
    body = response.content.decode()
    assert UNREADABLE in body
    assert "Key saved" not in body  # no green indicator for a key that cannot be used
    # Nor a promise that queries run on it: they are refused until the key is saved again.
    assert "Queries use your organisation's key" not in body
    assert "AI Insights queries are refused until the key is saved again." in body
    # Saving it again is the way out: the form for it is open, not behind "Replace with a new key".
    assert '<details class="replace" open>' in body
    assert OPERATOR_LOG in caplog.text


def test_the_settings_api_reports_the_key_as_unreadable(world, key_unreadable, api_client):
    response = api_client(world.acme_member).get("/api/v1/orgs/acme/settings")

    assert response.status_code == 200
    assert response.json()["claudeApiKeySet"] is True
    assert response.json()["claudeApiKeyStatus"] == "unreadable"


def test_a_query_says_save_it_again_and_sends_nothing_to_anthropic(
    world, key_unreadable, api_client, fake_anthropic, caplog
):
    ciphertext = ClaudeApiKey.objects.get(organisation=world.acme).secret.ciphertext

    with caplog.at_level(logging.ERROR, logger="opsion"):
        response = ask(api_client(world.acme_member))

    assert response.status_code == 400
    assert response.json()["error"] == {"code": "claude_api_key_unreadable", "message": UNREADABLE}
    assert fake_anthropic.requests == []
    assert ciphertext not in caplog.text and ciphertext not in response.content.decode()
    assert OPERATOR_LOG in caplog.text
    # Nothing was asked, so nothing counts against the limit.
    assert not InsightQuery.objects.filter(organisation=world.acme).exists()


def test_the_console_query_page_says_save_it_again(world, key_unreadable, console, fake_anthropic):
    response = console(world.acme_member).post(reverse("insights:query", args=["acme"]), {"query": "MiCAR Article 59?"})

    assert response.status_code == 400
    assert escape(UNREADABLE) in response.content.decode()
    assert fake_anthropic.requests == []


def test_saving_the_key_again_makes_queries_work(world, key_unreadable, console, api_client, fake_anthropic):
    saved = console(world.acme_admin).post(reverse("orgs:byom_save", args=["acme"]), {"api_key": OTHER_KEY})
    assert saved.status_code == 302

    response = ask(api_client(world.acme_member))

    assert response.status_code == 200
    assert fake_anthropic.keys_used == [OTHER_KEY]
    page = console(world.acme_owner).get(reverse("orgs:settings", args=["acme"]))
    assert UNREADABLE not in page.content.decode()


def test_putting_the_old_encryption_key_back_heals_it_without_a_save(
    world, key_lost, settings, api_client, fake_anthropic
):
    settings.FIELD_ENCRYPTION_KEYS = [*settings.FIELD_ENCRYPTION_KEYS, *key_lost]
    client = api_client(world.acme_member)

    assert client.get("/api/v1/orgs/acme/settings").json()["claudeApiKeyStatus"] == "unverified"
    assert ask(client).status_code == 200
    assert fake_anthropic.keys_used == [GOOD_KEY]


def test_a_key_that_became_unreadable_after_the_query_was_counted_reads_as_unreadable(
    world, acme_key, settings, fake_anthropic
):
    # The encryption keys changed (a deploy) between the query being let through and the call to Claude.
    pending = services.start(membership=world.membership(world.acme_member, world.acme), text="MiCAR Article 59?")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(services.KeyUnreadable):
        pending.answer()

    row = InsightQuery.objects.get()
    assert (row.outcome, row.error_code) == (Outcome.FAILED, "claude_api_key_unreadable")
    assert fake_anthropic.requests == []  # nothing, least of all the ciphertext, was sent
