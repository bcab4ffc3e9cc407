"""A Settings form posted after the session expired: the new token's name is kept across sign-in (orgs.drafts), and
the Claude API key never is."""

import html
import re

from django.contrib.sessions.models import Session
from django.test import Client

from orgs.drafts import typed_by
from orgs.models import ApiToken, ClaudeApiKey
from tests.base import CANARY_KEY, PASSWORD
from tests.orgs.helpers import csrf_token_from

LOGIN = "/accounts/login/"
CREATE = "/orgs/acme/settings/tokens/create"
SETTINGS = "/orgs/acme/settings/"
NAME = "Nightly export <b>&</b> “reports”"
SIGNED_OUT = "You were signed out before your token was created, so nothing was created."
KEPT = "You were signed out before this token was created: nothing was created yet. Press Create token to create it."


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def name_box(page: str) -> str:
    match = re.search(r'<input type="text" name="name" id="id_name"[^>]*>', page)
    assert match, "the page has no token name box"
    return match.group(0)


def selected_expiry(page: str) -> str:
    match = re.search(r'<option value="(\d+)" selected>', page)
    assert match, "no lifetime is selected"
    return match.group(1)


def test_a_token_name_posted_after_the_session_expired_comes_back_after_signing_in(world):
    client = Client()
    by = typed_by(world.acme_admin)  # the mark the Admin's Settings form carries
    # The session expired as the form stood open: what it posts, a stale password field included.
    expired = client.post(
        CREATE, {"name": NAME, "expires": "365", "once": "form-1", "password": "old-typed", "draft_by": by}
    )

    assert expired.status_code == 200  # the sign-in page answers the post itself: a redirect would drop the name
    page = expired.content.decode()
    assert SIGNED_OUT in text_of(page)
    assert f'<input type="hidden" name="draft" value="{html.escape(NAME)}">' in page
    assert '<input type="hidden" name="next" value="/orgs/acme/settings/">' in page
    assert "old-typed" not in page  # a password is never carried along
    wrong = {"username": "admin@acme.test", "password": "wrong", "next": SETTINGS}
    retry = client.post(
        LOGIN, {**wrong, "draft": NAME, "draft_by": typed_by(world.acme_admin), "draft_choice": "365"}
    ).content.decode()
    assert f'name="draft" value="{html.escape(NAME)}"' in retry and 'name="draft_choice" value="365"' in retry

    signed_in = client.post(
        LOGIN,
        {**wrong, "password": PASSWORD, "draft": NAME, "draft_by": typed_by(world.acme_admin), "draft_choice": "365"},
        follow=True,
    )

    assert signed_in.redirect_chain == [(SETTINGS, 302)]
    back = signed_in.content.decode()
    assert f'value="{html.escape(NAME)}"' in name_box(back)
    assert selected_expiry(back) == "365"  # the lifetime chosen, not the default
    assert KEPT in text_of(back)
    assert not ApiToken.objects.exists()  # it waits for Create token
    again = client.get(SETTINGS).content.decode()  # once only
    assert 'value=""' in name_box(again) and selected_expiry(again) == "90" and "signed out before" not in again


def test_the_kept_name_is_created_only_by_the_members_own_click_on_a_fresh_form(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.acme_admin)
    stale = csrf_token_from(client.get(SETTINGS).content.decode())
    del client.cookies["sessionid"]  # the session expired (the CSRF cookie outlives it)
    expired = client.post(CREATE, {"name": NAME, "expires": "30", "once": "form-1", "csrfmiddlewaretoken": stale})
    fresh = csrf_token_from(expired.content.decode())
    login = {"username": "admin@acme.test", "password": PASSWORD, "next": SETTINGS, "csrfmiddlewaretoken": fresh}
    back = client.post(
        LOGIN, {**login, "draft": NAME, "draft_by": typed_by(world.acme_admin), "draft_choice": "30"}, follow=True
    ).content.decode()

    # The form as it stood, posted again: signing in gave the browser a new CSRF secret, so it creates nothing.
    replayed = client.post(CREATE, {"name": NAME, "expires": "30", "once": "form-1", "csrfmiddlewaretoken": stale})
    assert not ApiToken.objects.exists()
    assert replayed.status_code in (302, 403)
    # The page it came back to creates it, as the member sees it.
    once = re.search(r'name="once" value="([^"]+)"', back).group(1)
    form = {"name": NAME, "expires": "30", "once": once, "csrfmiddlewaretoken": csrf_token_from(back)}
    created = client.post(CREATE, form)
    assert created.status_code == 200 and "Copy it now: it will not be shown again." in created.content.decode()
    token = ApiToken.objects.get()
    lifetime = round((token.expires_at - token.created_at).total_seconds() / 86400)
    assert (token.name, token.user, lifetime) == (NAME, world.acme_admin, 30)


def test_a_kept_name_goes_only_to_its_organisations_settings_page(world):
    client = Client()
    client.post(
        LOGIN,
        {
            "username": "admin@acme.test",
            "password": PASSWORD,
            "next": SETTINGS,
            "draft": NAME,
            "draft_by": typed_by(world.acme_admin),
        },
    )

    elsewhere = client.get("/orgs/globex/settings/")
    confirmation = client.get(SETTINGS, {"confirm": "remove"})  # a page of its own, with Cancel back to Settings
    insights = client.get("/orgs/acme/insights/")
    assert client.head(SETTINGS).status_code == 200  # a link checker's HEAD shows nothing
    page = client.get(SETTINGS)

    assert elsewhere.status_code == 404  # not a member there
    assert html.escape(NAME) not in confirmation.content.decode() + insights.content.decode()
    assert f'value="{html.escape(NAME)}"' in name_box(page.content.decode())


def test_a_kept_lifetime_that_is_no_choice_gives_the_default(world):
    client = Client()
    login = {"username": "admin@acme.test", "password": PASSWORD, "next": SETTINGS}
    client.post(LOGIN, {**login, "draft": NAME, "draft_by": typed_by(world.acme_admin), "draft_choice": "0"})

    page = client.get(SETTINGS).content.decode()

    assert f'value="{html.escape(NAME)}"' in name_box(page) and selected_expiry(page) == "90"


def test_a_key_posted_after_the_session_expired_is_kept_nowhere(world):
    # A key is a secret of the organisation's: never a draft, not in the session, a cookie, an address or a page.
    # The Owner is told to paste it again instead.
    client = Client()
    seen = []

    def keep(response):
        headers = " ".join(f"{name}: {value}" for name, value in response.items())  # the redirect's address too
        seen.append(f"{response.content.decode()} {headers} {response.cookies}")
        return response

    expired = keep(client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY}))
    sign_in_page = keep(client.get(expired["Location"])) if expired.status_code == 302 else expired
    fields = {"username": "owner@acme.test", "password": PASSWORD}
    for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', sign_in_page.content.decode()):
        fields[name] = html.unescape(value)  # what the browser would post: the sign-in form as it stands
    landed = keep(client.post(LOGIN, fields))
    while landed.status_code == 302:  # on to the page signing in returns to, as a browser follows
        landed = keep(client.get(landed["Location"]))

    assert [CANARY_KEY in response for response in seen] == [False] * len(seen)
    assert CANARY_KEY[7:30] not in " ".join(seen)  # nor a part of it
    assert not any(CANARY_KEY[7:30] in cookie.value for cookie in client.cookies.values())
    assert not any(CANARY_KEY[7:30] in str(s.get_decoded()) for s in Session.objects.all())
    assert not ClaudeApiKey.objects.exists()
    assert landed.status_code == 200 and "your new key was not saved. Paste it again." in landed.content.decode()
    assert 'name="api_key"' in landed.content.decode()


def hidden_fields(page: str, action: str) -> dict:
    """The hidden fields of the form posting to `action`, as a browser would send them."""
    form = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.S)
    assert form, f"the page has no form posting to {action}"
    found = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(0))
    return {name: html.unescape(value) for name, value in found}


def sign_in_page_after_expiry(world) -> tuple[Client, str]:
    """The Admin's Settings, its session expired as they typed a token's name and pressed Create token: the sign-in
    page that answers, and the browser it is in."""
    client = Client()
    client.force_login(world.acme_admin)
    form = hidden_fields(client.get(SETTINGS).content.decode(), CREATE)
    client.logout()  # the session ends (expired, or signed out in another tab); the page stays open
    expired = client.post(CREATE, {**form, "name": NAME, "expires": "365"})
    assert SIGNED_OUT in text_of(expired.content.decode())
    return client, expired.content.decode()


def test_a_kept_name_is_not_given_to_another_member_who_signs_in_on_that_page(world):
    # A shared computer: the Admin walked away from the sign-in page that carries their token's name; the Owner, a
    # member of the same organisation, signs in on it. What the Admin typed is theirs, not the next user's.
    client, sign_in_page = sign_in_page_after_expiry(world)
    fields = hidden_fields(sign_in_page, LOGIN) | {"username": "owner@acme.test", "password": PASSWORD}

    landed = client.post(LOGIN, fields, follow=True)

    assert landed.redirect_chain == [(SETTINGS, 302)]
    page = landed.content.decode()
    assert html.escape(NAME) not in page and "signed out before" not in page
    assert 'value=""' in name_box(page)


def test_a_kept_name_comes_back_to_the_member_who_typed_it(world):
    client, sign_in_page = sign_in_page_after_expiry(world)
    fields = hidden_fields(sign_in_page, LOGIN) | {"username": "admin@acme.test", "password": PASSWORD}

    page = client.post(LOGIN, fields, follow=True).content.decode()

    assert f'value="{html.escape(NAME)}"' in name_box(page) and selected_expiry(page) == "365"
    assert KEPT in text_of(page)


def test_a_stale_sign_in_form_does_not_give_a_kept_name_to_whoever_signed_in_meanwhile(world):
    # Two tabs: the Admin's sign-in page carrying the name stays open; someone else signs in in the other tab, then
    # the first tab's form is sent. Its CSRF token is stale (opsion.views._sign_in_again): the name stays the Admin's.
    client, sign_in_page = sign_in_page_after_expiry(world)
    client.handler.enforce_csrf_checks = True
    fields = hidden_fields(sign_in_page, LOGIN) | {"username": "admin@acme.test", "password": PASSWORD}
    other_tab = hidden_fields(client.get(LOGIN).content.decode(), LOGIN)
    client.post(LOGIN, other_tab | {"username": "owner@acme.test", "password": PASSWORD})  # a new CSRF secret

    stale = client.post(LOGIN, fields)
    assert stale.status_code == 302  # the stale form's user is signed in already: sent on (opsion.views)
    page = client.get(SETTINGS).content.decode()

    assert html.escape(NAME) not in page and "signed out before" not in page


STALE_KEPT = (
    "This page was out of date (you signed in again since it was loaded): nothing was created yet. "
    "Press Create token to create it."
)


def stale_settings_form(user) -> tuple[Client, dict]:
    """`user`'s Settings form, left open in a tab while they signed in again in another (a new CSRF secret)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    form = hidden_fields(client.get(SETTINGS).content.decode(), CREATE)
    client.cookies["csrftoken"] = "s" * 32  # what signing in again does to the cookie
    return client, form


def test_a_token_name_from_a_page_loaded_before_signing_in_again_comes_back(world):
    client, form = stale_settings_form(world.acme_admin)

    back = client.post(CREATE, {**form, "name": NAME, "expires": "365"}, follow=True)

    assert back.redirect_chain[-1] == (SETTINGS, 302)
    page = back.content.decode()
    assert f'value="{html.escape(NAME)}"' in name_box(page) and selected_expiry(page) == "365"
    assert STALE_KEPT in text_of(page) and "signed out before" not in page
    assert "Create it again" not in page  # the name is there: nothing to type again
    assert not ApiToken.objects.exists()
    again = client.get(SETTINGS).content.decode()  # once only
    assert 'value=""' in name_box(again) and "out of date" not in again


def test_a_stale_token_form_typed_by_someone_else_gives_its_name_to_no_one(world):
    # The Admin's tab stayed open; the Owner signed in on that browser in another tab, then the Admin's form was sent.
    client, form = stale_settings_form(world.acme_owner)
    form["draft_by"] = typed_by(world.acme_admin)

    back = client.post(CREATE, {**form, "name": NAME, "expires": "365"}, follow=True)

    page = back.content.decode()
    assert back.redirect_chain[-1] == (SETTINGS, 302)
    assert html.escape(NAME) not in page and 'value=""' in name_box(page)
    assert "so nothing was changed: no token was created. Create it again." in text_of(page)
    assert not ApiToken.objects.exists()


def test_a_stale_token_form_from_another_origin_keeps_nothing(world):
    client, form = stale_settings_form(world.acme_admin)

    refused = client.post(CREATE, {**form, "name": NAME, "expires": "365"}, HTTP_ORIGIN="https://evil.example")

    assert refused.status_code == 403
    assert html.escape(NAME) not in client.get(SETTINGS).content.decode()


def test_a_token_name_holding_a_key_posted_after_the_session_expired_is_carried_without_it(world):
    # The key pasted into the name box below the key's: the sign-in page answering the post, left open on what may be
    # a shared computer, carries the name in a hidden field, and sends it again with a mistyped password.
    client, by = Client(), typed_by(world.acme_admin)

    expired = client.post(CREATE, {"name": CANARY_KEY, "expires": "30", "draft_by": by}).content.decode()
    wrong = {"username": "admin@acme.test", "password": "wrong", "next": SETTINGS}
    retry = client.post(LOGIN, {**wrong, "draft": CANARY_KEY, "draft_by": by}).content.decode()

    assert SIGNED_OUT in text_of(expired)
    for page in (expired, retry):
        assert '<input type="hidden" name="draft" value="sk-ant-[redacted]">' in page
        assert CANARY_KEY[7:30] not in page
