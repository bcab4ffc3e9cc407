"""Saving and removing the Claude API key from the Settings console, for every role, plan and outcome."""

import html
import io
import json
import re
import warnings

import pytest
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.http import HttpRequest

from orgs import services
from orgs.models import ApiToken, AuditAction, AuditEvent, ClaudeApiKey
from tests.base import CANARY_KEY, GOOD_KEY, OTHER_KEY, PASSWORD
from tests.clients import console
from tests.insights.helpers import seed_spread
from tests.orgs.helpers import (
    ELIGIBLE,
    PLAN_REFUSAL,
    PLANS,
    ROLES,
    audit_actions,
    csrf_token_from,
    store_key,
    stored_key,
)

ROLE_REFUSAL = "Only an Owner or Admin of this organisation can change its Claude API key."
NOTHING_REMOVED = (
    "No Claude API key is stored, so nothing was removed: it had already been removed (the audit log below says "
    "by whom and when)."
)


def save_url(slug: str) -> str:
    return f"/orgs/{slug}/settings/claude-api-key/save"


def remove_url(slug: str) -> str:
    return f"/orgs/{slug}/settings/claude-api-key/remove"


def settings_url(slug: str) -> str:
    return f"/orgs/{slug}/settings/"


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ROLES)
def test_saving_a_key_obeys_role_then_plan(people, role, plan):
    org, user = people(plan, role)

    response = console(user).post(save_url(org.slug), {"api_key": CANARY_KEY})

    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    elif role == "outsider":
        assert response.status_code == 404
        assert org.name not in response.content.decode()
    elif role == "member":
        assert response.status_code == 403
        assert ROLE_REFUSAL in response.content.decode()
    elif plan not in ELIGIBLE:
        assert response.status_code == 403
        assert PLAN_REFUSAL in response.content.decode()
    else:
        assert response.status_code == 302
        assert response["Location"] == settings_url(org.slug)
        assert stored_key(org) == CANARY_KEY
        assert audit_actions(org) == [AuditAction.KEY_SAVED]
        return
    assert CANARY_KEY not in response.content.decode()
    assert not ClaudeApiKey.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ROLES)
def test_removing_a_key_is_for_owners_and_admins_on_any_plan(people, role, plan):
    org, user = people(plan, role)
    store_key(org, GOOD_KEY)

    response = console(user).post(remove_url(org.slug), {"confirm": "yes"})

    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    elif role == "outsider":
        assert response.status_code == 404
    elif role == "member":
        assert response.status_code == 403
        assert ROLE_REFUSAL in response.content.decode()
    else:
        # Removal is never plan-gated: a downgraded organisation must be able to delete its leftover key.
        assert response.status_code == 302
        assert not ClaudeApiKey.objects.filter(organisation=org).exists()
        assert audit_actions(org) == [AuditAction.KEY_REMOVED]
        return
    assert stored_key(org) == GOOD_KEY
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ROLES)
def test_viewing_settings_depends_on_membership_only(people, role, plan):
    org, user = people(plan, role)

    response = console(user).get(settings_url(org.slug))

    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={settings_url(org.slug)}"
    elif role == "outsider":
        assert response.status_code == 404
        assert org.name not in response.content.decode()
    else:
        assert response.status_code == 200
        assert org.name in response.content.decode()


def test_unknown_slug_is_a_plain_404(world):
    client = console(world.acme_admin)

    assert client.get(settings_url("no-such-org")).status_code == 404
    assert client.post(save_url("no-such-org"), {"api_key": GOOD_KEY}).status_code == 404
    assert client.post(remove_url("no-such-org"), {"confirm": "yes"}).status_code == 404


def test_an_admin_cannot_reach_another_organisations_key(world):
    store_key(world.initech, GOOD_KEY)
    client = console(world.acme_admin)

    assert client.post(save_url("initech"), {"api_key": OTHER_KEY}).status_code == 404
    assert client.post(remove_url("initech"), {"confirm": "yes"}).status_code == 404
    assert stored_key(world.initech) == GOOD_KEY
    assert not AuditEvent.objects.exists()


def test_role_is_checked_before_plan(world):
    response = console(world.globex_member).post(save_url("globex"), {"api_key": "not a key"})

    assert response.status_code == 403
    page = response.content.decode()
    assert ROLE_REFUSAL in page
    assert PLAN_REFUSAL not in page


def test_plan_is_checked_before_the_keys_form(world):
    response = console(world.globex_admin).post(save_url("globex"), {"api_key": "not a key"})

    assert response.status_code == 403
    page = response.content.decode()
    assert PLAN_REFUSAL in page
    # The documentation's words name a plan Opsion does not sell; its own resolution follows them.
    assert "Globex Payments is on the Professional plan. Upgrade to Institutional to use your own key." in page


def test_a_member_cannot_replace_an_existing_key(world):
    store_key(world.acme, GOOD_KEY, by=world.acme_admin)

    response = console(world.acme_member).post(save_url("acme"), {"api_key": OTHER_KEY})

    assert response.status_code == 403
    assert stored_key(world.acme) == GOOD_KEY
    assert ClaudeApiKey.objects.get().saved_by == world.acme_admin


def test_a_saved_key_is_announced_and_masked_but_never_shown(world):
    response = console(world.acme_admin).post(save_url("acme"), {"api_key": CANARY_KEY}, follow=True)

    page = response.content.decode()
    assert "Claude API key saved. AI Insights queries now use your organisation&#x27;s key." in page
    assert "sk-ant-••••••••••••••••" in page
    assert CANARY_KEY not in page


def test_saving_again_replaces_the_key(world):
    client = console(world.acme_admin)
    client.post(save_url("acme"), {"api_key": GOOD_KEY})

    client.post(save_url("acme"), {"api_key": OTHER_KEY})

    assert ClaudeApiKey.objects.filter(organisation=world.acme).count() == 1
    assert stored_key(world.acme) == OTHER_KEY
    # A compliance team tells a key set for the first time from one rotated (replaced by another).
    assert audit_actions(world.acme) == [AuditAction.KEY_SAVED, AuditAction.KEY_REPLACED]


def test_replacing_the_key_says_replaced_as_the_audit_log_beside_it_does(world):
    client = console(world.acme_admin)
    client.post(save_url("acme"), {"api_key": GOOD_KEY}, follow=True)  # its own message shown and gone

    page = client.post(save_url("acme"), {"api_key": OTHER_KEY}, follow=True).content.decode()

    assert "Claude API key replaced. AI Insights queries now use the new key." in page
    assert "Claude API key saved." not in page


def test_a_key_saved_after_the_last_one_was_removed_is_saved_not_replaced(world):
    client = console(world.acme_admin)
    client.post(save_url("acme"), {"api_key": GOOD_KEY})
    client.post(remove_url("acme"), {"confirm": "yes"})

    client.post(save_url("acme"), {"api_key": OTHER_KEY})

    assert audit_actions(world.acme) == [AuditAction.KEY_SAVED, AuditAction.KEY_REMOVED, AuditAction.KEY_SAVED]


def test_remove_without_confirmation_asks_first_and_keeps_the_key(world):
    store_key(world.acme, GOOD_KEY)

    response = console(world.acme_admin).post(remove_url("acme"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Remove the stored key?" in page
    assert "{#" not in page and "#}" not in page and "{%" not in page  # no template source shows
    assert 'name="confirm" value="yes"' in page
    assert "Yes, remove the key" in page
    assert stored_key(world.acme) == GOOD_KEY
    assert not AuditEvent.objects.exists()


def test_the_confirmation_says_queries_go_back_to_the_platform_key_at_20(world):
    # The documentation: removing "revert[s] to the platform default"; "the rate limit drops back to 20".
    store_key(world.acme, GOOD_KEY)

    page = console(world.acme_admin).post(remove_url("acme")).content.decode()

    said = " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())
    assert (
        "Remove the stored key? Queries will use Opsion's platform key and the limit drops to 20 per rolling "
        "60 minutes at once." in said
    )


@pytest.mark.parametrize(
    "used, wait",
    [
        (25, "21 min"),  # six must leave the window for one more to fit under 20: the sixth oldest is 2387 s old
        (20, "10 min"),  # the oldest, 3000 s old, leaves in 600 s
        (19, None),  # one more still fits: nothing to warn about
    ],
)
def test_the_confirmation_warns_when_removing_would_leave_the_organisation_at_the_lower_limit(world, used, wait):
    store_key(world.acme, GOOD_KEY)
    seed_spread(world.acme, used, oldest=3000, newest=60, source="organisation")

    page = " ".join(console(world.acme_admin).post(remove_url("acme")).content.decode().split())

    warning = (
        f"Your organisation has used {used} queries in the last 60 minutes, so no one in it can ask AI Insights "
        f"for about {wait} after removing the key."
    )
    assert (warning in page) is (wait is not None)
    assert "Remove the stored key?" in page and stored_key(world.acme) == GOOD_KEY


def test_the_remove_button_opens_the_confirmation_as_a_page_of_its_own(world):
    store_key(world.acme, GOOD_KEY)

    asked = console(world.acme_admin).get(settings_url("acme") + "?confirm=remove")
    member = console(world.acme_member).get(settings_url("acme") + "?confirm=remove").content.decode()

    page = asked.content.decode()
    assert asked.status_code == 200 and "Remove the stored key?" in page
    assert f'action="{remove_url("acme")}"' in page and 'name="confirm" value="yes"' in page
    assert stored_key(world.acme) == GOOD_KEY and not AuditEvent.objects.exists()
    assert "Remove the stored key?" not in member  # only those who may remove are asked


def test_remove_with_confirmation_deletes_the_key_and_says_so(world):
    store_key(world.acme, GOOD_KEY)

    response = console(world.acme_admin).post(remove_url("acme"), {"confirm": "yes"}, follow=True)

    page = response.content.decode()
    assert "Claude API key removed. AI Insights queries now use Opsion&#x27;s platform key." in page
    assert "No key stored." in page
    assert not ClaudeApiKey.objects.exists()


def confirmation_form(client, slug: str) -> dict:
    """The fields of the removal confirmation's form, as the page renders them."""
    page = client.get(settings_url(slug), {"confirm": "remove"}).content.decode()
    form = page.split(f'action="{remove_url(slug)}"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))


def test_the_confirmations_own_form_removes_the_key_it_showed(world):
    store_key(world.acme, GOOD_KEY)
    admin = console(world.acme_admin)

    response = admin.post(remove_url("acme"), confirmation_form(admin, "acme"))

    assert response.status_code == 302
    assert not ClaudeApiKey.objects.exists()


def test_a_confirmation_left_open_while_another_admin_replaced_the_key_keeps_the_new_key(world):
    store_key(world.acme, GOOD_KEY)
    owner = console(world.acme_owner)
    confirmation = confirmation_form(owner, "acme")
    assert console(world.acme_admin).post(save_url("acme"), {"api_key": OTHER_KEY}).status_code == 302

    response = owner.post(remove_url("acme"), confirmation)

    assert response.status_code == 409
    assert "The key was replaced after you asked to remove it, so the new key was kept." in response.content.decode()
    assert stored_key(world.acme) == OTHER_KEY
    assert audit_actions(world.acme) == [AuditAction.KEY_REPLACED]  # the Admin's rotation; no removal


def test_a_confirmation_left_open_while_another_admin_removed_the_key_says_nothing_was_removed(world):
    # Two Admins confirm at once: the second was told "Claude API key removed.", as if they had removed it, while the
    # audit log beneath names the first.
    store_key(world.acme, GOOD_KEY)
    owner = console(world.acme_owner)
    confirmation = confirmation_form(owner, "acme")
    assert console(world.acme_admin).post(remove_url("acme"), confirmation_form(console(world.acme_admin), "acme"))

    page = owner.post(remove_url("acme"), confirmation, follow=True).content.decode()

    assert NOTHING_REMOVED in html.unescape(page)
    assert "Claude API key removed." not in page
    assert audit_actions(world.acme).count(AuditAction.KEY_REMOVED) == 1  # the Admin's alone


def test_remove_pressed_on_a_page_showing_a_key_removed_since_says_there_is_none(world):
    # The confirmation step asked nothing and said nothing: the page simply showed "No key stored."
    owner = console(world.acme_owner)

    page = owner.get(settings_url("acme"), {"confirm": "remove"}, follow=True).content.decode()

    assert NOTHING_REMOVED in html.unescape(page)
    assert "Remove the stored key?" not in page


def test_another_organisations_key_does_not_stand_in_the_way_of_a_confirmed_removal(world):
    # Only this organisation's key can have been replaced since the confirmation: another's, saved at its own
    # time, is no reason to refuse (nor is it touched).
    store_key(world.initech, OTHER_KEY)
    store_key(world.acme, GOOD_KEY)
    admin = console(world.acme_admin)

    response = admin.post(remove_url("acme"), confirmation_form(admin, "acme"))

    assert response.status_code == 302
    assert stored_key(world.acme) is None
    assert stored_key(world.initech) == OTHER_KEY


def test_a_confirmation_whose_key_time_was_tampered_with_removes_nothing(world):
    store_key(world.acme, GOOD_KEY)

    response = console(world.acme_owner).post(remove_url("acme"), {"confirm": "yes", "saved_at": "yesterday"})

    assert response.status_code == 409
    assert stored_key(world.acme) == GOOD_KEY


@pytest.mark.parametrize(
    "saved_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc", "no-offset"],
)
def test_a_confirmation_with_a_key_time_we_never_write_removes_nothing_and_is_no_server_error(world, saved_at):
    # A time out of the database's range once in UTC raised OverflowError on SQLite (a 500); one without an
    # offset was read in the server's zone, with a RuntimeWarning. Neither is a time the confirmation wrote.
    store_key(world.acme, GOOD_KEY)
    client = console(world.acme_owner)
    client.raise_request_exception = False

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        response = client.post(remove_url("acme"), {"confirm": "yes", "saved_at": saved_at})

    assert response.status_code == 409
    assert stored_key(world.acme) == GOOD_KEY


def test_a_member_posting_a_confirmation_by_hand_is_refused_for_their_role(world):
    store_key(world.acme, GOOD_KEY)

    response = console(world.acme_member).post(remove_url("acme"), {"confirm": "yes", "saved_at": "junk"})

    assert response.status_code == 403 and ROLE_REFUSAL in response.content.decode()
    assert stored_key(world.acme) == GOOD_KEY


def test_a_member_asking_to_remove_is_refused_without_a_confirmation_step(world):
    store_key(world.acme, GOOD_KEY)

    response = console(world.acme_member).post(remove_url("acme"))

    assert response.status_code == 403
    page = response.content.decode()
    assert ROLE_REFUSAL in page
    assert "Remove the stored key?" not in page
    assert stored_key(world.acme) == GOOD_KEY


def test_removing_when_no_key_is_stored_changes_nothing(world):
    response = console(world.acme_admin).post(remove_url("acme"), {"confirm": "yes"})

    assert response.status_code == 302
    assert not AuditEvent.objects.exists()


def test_the_form_urls_change_nothing_on_get_and_lead_back_to_the_settings_page(world):
    # Where signing in again lands someone whose session expired as they submitted: not a 405 page.
    store_key(world.acme, GOOD_KEY)
    client = console(world.acme_admin)

    for url in (save_url("acme"), remove_url("acme"), "/orgs/acme/settings/tokens/create"):
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, "/orgs/acme/settings/"), url
        assert client.put(url).status_code == 405, url
    token, _ = services.api_token_create(user=world.acme_admin, name="kept")
    for url in (f"/orgs/acme/settings/tokens/{token.pk}/revoke", f"/accounts/tokens/{token.pk}/revoke"):
        assert client.get(url).status_code == 302, url
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert stored_key(world.acme) == GOOD_KEY
    assert not AuditEvent.objects.exists()


def test_after_a_session_expired_on_submit_signing_in_leads_back_to_settings(world):
    # A sign-in page sent to the form's own URL (loaded before the token's name was kept across sign-in, or that
    # URL opened signed out): the page, told that no token was created.
    client = console()
    sent = "/accounts/login/?next=/orgs/acme/settings/tokens/create"
    signed_in = client.post(sent, {"username": "admin@acme.test", "password": PASSWORD}, follow=True)

    assert signed_in.redirect_chain[-1] == ("/orgs/acme/settings/", 302)
    assert signed_in.status_code == 200 and "API tokens" in signed_in.content.decode()
    assert "You were signed out before this was sent, so nothing was changed: no token was created." in (
        signed_in.content.decode()
    )


def test_opening_a_form_url_while_signed_in_goes_to_the_page_without_claiming_a_sign_out(world):
    # The new-token page answers the form's POST, so the address bar shows the form's URL: Enter there, a
    # restored tab or history GETs it. Nobody was signed out, and the token was created.
    client = console(world.acme_admin)
    client.post("/orgs/acme/settings/tokens/create", {"name": "Nightly", "once": "a"})

    for url in ("/orgs/acme/settings/tokens/create", save_url("acme"), remove_url("acme")):
        again = client.get(url, follow=True)

        assert again.redirect_chain == [("/orgs/acme/settings/", 302)], url
        assert "signed out" not in again.content.decode(), url
    assert ApiToken.objects.filter(name="Nightly").count() == 1


def test_a_key_rotation_lost_to_an_expired_session_says_the_new_key_was_not_saved(world):
    # Rotating a compromised key, the Owner must not leave believing it is done.
    store_key(world.acme, GOOD_KEY)
    sent = console().post(save_url("acme"), {"api_key": OTHER_KEY})
    client = console()

    back = client.post(sent["Location"], {"username": "owner@acme.test", "password": PASSWORD}, follow=True)

    page = back.content.decode()
    assert back.redirect_chain[-1] == (settings_url("acme"), 302)
    assert '<p class="flash flash--warning" role="status">You were signed out before this was sent, so nothing' in page
    assert "your new key was not saved. Paste it again." in page
    assert stored_key(world.acme) == GOOD_KEY
    assert "your new key was not saved" not in client.get(settings_url("acme")).content.decode()  # said once


class TestCsrf:
    def test_a_save_without_the_csrf_token_is_refused(self, world):
        client = console(world.acme_admin, enforce_csrf_checks=True)

        response = client.post(save_url("acme"), {"api_key": CANARY_KEY})

        assert response.status_code == 403
        assert "CSRF check failed), so nothing was sent. Go back and copy what you typed" in response.content.decode()
        assert not ClaudeApiKey.objects.exists()
        assert not AuditEvent.objects.exists()

    def test_a_remove_without_the_csrf_token_is_refused(self, world):
        store_key(world.acme, GOOD_KEY)
        client = console(world.acme_admin, enforce_csrf_checks=True)

        response = client.post(remove_url("acme"), {"confirm": "yes"})

        assert response.status_code == 403
        assert stored_key(world.acme) == GOOD_KEY

    def test_the_forms_own_token_lets_the_save_and_remove_through(self, world):
        client = console(world.acme_admin, enforce_csrf_checks=True)
        token = csrf_token_from(client.get(settings_url("acme")).content.decode())

        saved = client.post(save_url("acme"), {"api_key": GOOD_KEY, "csrfmiddlewaretoken": token})
        removed = client.post(remove_url("acme"), {"confirm": "yes", "csrfmiddlewaretoken": token})

        assert saved.status_code == 302
        assert removed.status_code == 302
        assert audit_actions(world.acme) == [AuditAction.KEY_SAVED, AuditAction.KEY_REMOVED]
        assert not ClaudeApiKey.objects.exists()

    def test_a_save_from_a_page_loaded_before_signing_in_again_goes_back_to_the_page_saying_so(self, world):
        # Signing in again (in another tab, say) gives the browser a new CSRF secret: the form a tab still
        # shows carries the old one. Not a dead end: the page again, told the new key was not saved.
        store_key(world.acme, GOOD_KEY)
        client = console(world.acme_owner, enforce_csrf_checks=True)
        stale = csrf_token_from(client.get(settings_url("acme")).content.decode())
        client.cookies["csrftoken"] = "s" * 32  # what signing in again does to the cookie

        back = client.post(save_url("acme"), {"api_key": OTHER_KEY, "csrfmiddlewaretoken": stale}, follow=True)

        page = back.content.decode()
        assert back.redirect_chain[-1] == (settings_url("acme"), 302)
        assert '<p class="flash flash--warning" role="status">This page was out of date' in page
        assert "so nothing was changed: your new key was not saved. Paste it again." in page
        assert stored_key(world.acme) == GOOD_KEY
        assert audit_actions(world.acme) == []

    def test_a_stale_token_from_another_origin_still_gets_the_plain_refusal(self, world):
        store_key(world.acme, GOOD_KEY)
        client = console(world.acme_owner, enforce_csrf_checks=True)
        stale = csrf_token_from(client.get(settings_url("acme")).content.decode())
        client.cookies["csrftoken"] = "s" * 32

        response = client.post(
            remove_url("acme"), {"confirm": "yes", "csrfmiddlewaretoken": stale}, HTTP_ORIGIN="https://evil.example"
        )

        assert response.status_code == 403
        assert stored_key(world.acme) == GOOD_KEY


def test_the_audit_event_records_who_and_from_where(world):
    console(world.acme_owner).post(save_url("acme"), {"api_key": GOOD_KEY}, REMOTE_ADDR="203.0.113.9")

    event = AuditEvent.objects.get()
    assert (event.actor, event.actor_email, event.ip, event.via) == (
        world.acme_owner,
        "owner@acme.test",
        "203.0.113.9",
        "console",
    )


def test_saving_and_removing_never_log_the_key(world, caplog):
    caplog.set_level("DEBUG")
    client = console(world.acme_admin)

    client.post(save_url("acme"), {"api_key": CANARY_KEY})
    client.post(save_url("acme"), {"api_key": CANARY_KEY + " broken"})
    client.post(remove_url("acme"), {"confirm": "yes"})

    assert "claude api key saved org=acme" in caplog.text
    assert "claude api key removed org=acme" in caplog.text
    assert CANARY_KEY not in caplog.text


@pytest.mark.parametrize(
    "who, posted",
    [
        ("acme_admin", CANARY_KEY),  # saved
        ("acme_member", CANARY_KEY),  # refused: role
        ("globex_admin", CANARY_KEY),  # refused: plan
        ("acme_admin", CANARY_KEY + " trailing words"),  # refused: malformed
    ],
)
def test_a_key_posted_in_the_console_is_nowhere_at_rest_in_plain_text(world, who, posted):
    # Not in any table (sessions decoded, not just their encoded column), nor in the messages cookie.
    client = console(getattr(world, who))
    slug = "globex" if who.startswith("globex") else "acme"

    client.post(save_url(slug), {"api_key": posted}, follow=True)

    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    assert CANARY_KEY not in out.getvalue()
    for session in Session.objects.all():
        assert CANARY_KEY not in json.dumps(session.get_decoded(), default=str)
    if "messages" in client.cookies:
        decoded = CookieStorage(HttpRequest())._decode(client.cookies["messages"].value) or []
        assert all(CANARY_KEY not in str(message) for message in decoded)
