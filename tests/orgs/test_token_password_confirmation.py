"""A new API token asks for the password again once the session's last proof of it is over 15 minutes old: a stolen
or left-open session must not mint a credential that outlives it (and a password change)."""

import re
import time

import pytest
from django.test import Client

from orgs import recent_auth
from orgs.models import ApiToken
from tests.base import PASSWORD
from tests.clients import console, token_client

CREATE = "/orgs/acme/settings/tokens/create"
SETTINGS = "/orgs/acme/settings/"
WRONG_CHANGE = {"old_password": "wrong", "new_password1": "x", "new_password2": "x"}
PASSWORD_FIELD = 'name="password"'
ASKED = "Enter your password to create a token: you last entered it more than 15 minutes ago."
WRONG = "Your password was entered incorrectly. Please enter it again."
LOCKED = "Too many attempts to confirm your password. Please try again in "


def signed_in(email: str = "admin@acme.test") -> Client:
    """Signed in through the real sign-in form, as a person is."""
    client = Client()
    response = client.post("/accounts/login/", {"username": email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def password_last_entered(client: Client, *, minutes_ago: float) -> Client:
    """The session as it stands that long after its user last typed their password."""
    session = client.session
    session[recent_auth.SESSION_KEY] = time.time() - minutes_ago * 60
    session.save()
    return client


def tokens(user) -> list[str]:
    return list(ApiToken.objects.filter(user=user).values_list("name", flat=True))


def test_a_fresh_sign_in_creates_a_token_without_being_asked_for_the_password(world):
    client = signed_in()

    page = client.get(SETTINGS).content.decode()
    response = client.post(CREATE, {"name": "Nightly export"})

    assert PASSWORD_FIELD not in page
    assert response.status_code == 200 and 'id="new-token"' in response.content.decode()
    assert tokens(world.acme_admin) == ["Nightly export"]


def test_fourteen_minutes_after_sign_in_the_form_is_as_it_was(world):
    client = password_last_entered(signed_in(), minutes_ago=14)

    assert PASSWORD_FIELD not in client.get(SETTINGS).content.decode()
    assert client.post(CREATE, {"name": "Nightly export"}).status_code == 200
    assert tokens(world.acme_admin) == ["Nightly export"]


def test_past_fifteen_minutes_the_form_asks_to_confirm_the_password(world):
    client = password_last_entered(signed_in(), minutes_ago=16)

    page = client.get(SETTINGS).content.decode()

    field = re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)
    assert 'type="password"' in field and 'autocomplete="current-password"' in field and "required" in field
    assert '<label for="id_password">Confirm your password</label>' in page
    assert 'id="id_password"' in field and 'aria-describedby="token-password-hint"' in field
    assert "You last entered your password more than 15 minutes ago. Enter it again to create a token." in page


def test_a_stale_page_posting_without_the_password_creates_nothing_and_keeps_the_name(world):
    # The page was loaded within the window and sent after it: the server asks, whatever the page showed.
    client = password_last_entered(signed_in(), minutes_ago=16)

    response = client.post(CREATE, {"name": "Nightly export", "once": "a-fresh-form"})

    page = response.content.decode()
    assert response.status_code == 400
    assert ASKED in page
    assert 'value="Nightly export"' in page
    field = re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in field and 'aria-describedby="token-password-error"' in field
    assert "autofocus" in field
    assert 'id="new-token"' not in page
    assert tokens(world.acme_admin) == []


def test_a_wrong_password_creates_nothing_and_is_not_sent_back(world):
    client = password_last_entered(signed_in(), minutes_ago=16)

    response = client.post(CREATE, {"name": "Nightly export", "password": "not-the-password"})

    page = response.content.decode()
    assert response.status_code == 400
    assert WRONG in page
    assert 'value="Nightly export"' in page
    assert "not-the-password" not in page
    assert tokens(world.acme_admin) == []
    assert PASSWORD_FIELD in client.get(SETTINGS).content.decode()  # still asked: the window was not renewed


def test_the_right_password_creates_the_token_and_renews_the_window(world):
    client = password_last_entered(signed_in(), minutes_ago=16)

    response = client.post(CREATE, {"name": "Nightly export", "password": PASSWORD})

    assert response.status_code == 200 and 'id="new-token"' in response.content.decode()
    assert PASSWORD_FIELD not in response.content.decode()
    assert PASSWORD_FIELD not in client.get(SETTINGS).content.decode()
    assert client.post(CREATE, {"name": "Second"}).status_code == 200
    assert sorted(tokens(world.acme_admin)) == ["Nightly export", "Second"]


def test_confirming_the_password_gives_the_session_a_new_key_so_a_copy_of_the_old_cookie_gains_nothing(world):
    # As a sign-in and a password change do: a session's rights grow here, so whoever holds a copy of its cookie
    # (taken before, from another machine) must not grow with it. The old key then names no session at all.
    client = password_last_entered(signed_in(), minutes_ago=16)
    copied = Client()
    copied.cookies["sessionid"] = client.cookies["sessionid"].value

    assert client.post(CREATE, {"name": "Nightly export", "password": PASSWORD}).status_code == 200

    assert client.cookies["sessionid"].value != copied.cookies["sessionid"].value
    assert copied.get(SETTINGS).status_code == 302  # to the sign-in page
    assert '<form method="post" action="/accounts/login/"' in copied.post(CREATE, {"name": "Thief's"}).content.decode()
    assert client.post(CREATE, {"name": "Second"}).status_code == 200  # the user's own session goes on, confirmed
    assert sorted(tokens(world.acme_admin)) == ["Nightly export", "Second"]


def test_a_wrong_password_leaves_the_session_key_as_it_was(world):
    client = password_last_entered(signed_in(), minutes_ago=16)
    before = client.cookies["sessionid"].value

    client.post(CREATE, {"name": "Nightly export", "password": "not-the-password"})

    assert client.cookies["sessionid"].value == before


def test_the_right_password_with_a_refused_name_renews_the_window_but_creates_nothing(world):
    client = password_last_entered(signed_in(), minutes_ago=16)

    response = client.post(CREATE, {"name": "   ", "password": PASSWORD})

    assert response.status_code == 400
    assert "Give the token a name, e.g. “CI pipeline”." in response.content.decode()
    assert PASSWORD_FIELD not in response.content.decode()  # the password was proved: only the name is asked again
    assert tokens(world.acme_admin) == []


def test_a_session_that_never_recorded_a_password_is_asked(world):
    # Sessions signed in before this check existed carry no time: they are asked once, like a stale one.
    client = signed_in()
    session = client.session
    del session[recent_auth.SESSION_KEY]
    session.save()

    assert PASSWORD_FIELD in client.get(SETTINGS).content.decode()
    assert client.post(CREATE, {"name": "Nightly export"}).status_code == 400
    assert tokens(world.acme_admin) == []


def test_a_time_ahead_of_the_clock_is_no_proof_and_is_asked(world):
    # A server's clock set back (or a session written by another server ahead of this one) leaves a time in the
    # future: it must not count as recent until the clock catches up with it.
    client = password_last_entered(signed_in(), minutes_ago=-60)

    assert PASSWORD_FIELD in client.get(SETTINGS).content.decode()
    assert client.post(CREATE, {"name": "Nightly export"}).status_code == 400
    assert tokens(world.acme_admin) == []


def test_signing_in_records_the_moment_the_password_was_typed(world):
    before = time.time()
    client = signed_in()
    after = time.time()

    assert before <= client.session[recent_auth.SESSION_KEY] <= after


def test_a_password_with_spaces_around_it_is_confirmed_as_typed(world):
    spaced = f"  {PASSWORD}  "
    world.acme_admin.set_password(spaced)
    world.acme_admin.save(update_fields=["password"])
    client = Client()
    assert client.post("/accounts/login/", {"username": "admin@acme.test", "password": spaced}).status_code == 302
    password_last_entered(client, minutes_ago=16)

    response = client.post(CREATE, {"name": "Nightly export", "password": spaced})

    assert response.status_code == 200 and 'id="new-token"' in response.content.decode()
    assert tokens(world.acme_admin) == ["Nightly export"]


def test_changing_the_password_renews_the_window(world):
    client = password_last_entered(signed_in(), minutes_ago=16)
    new = "a-New-passw0rd-for-acme"
    changed = client.post("/accounts/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert changed.status_code == 302

    assert PASSWORD_FIELD not in client.get(SETTINGS).content.decode()
    assert client.post(CREATE, {"name": "Nightly export"}).status_code == 200


def test_the_window_is_a_setting_and_the_page_names_it(world, settings):
    settings.RECENT_AUTHENTICATION_SECONDS = 60
    client = password_last_entered(signed_in(), minutes_ago=2)

    page = client.get(SETTINGS).content.decode()
    refused = client.post(CREATE, {"name": "Nightly export"}).content.decode()

    assert "You last entered your password more than 1 minute ago. Enter it again to create a token." in page
    assert "Enter your password to create a token: you last entered it more than 1 minute ago." in refused
    settings.RECENT_AUTHENTICATION_SECONDS = 3600
    assert PASSWORD_FIELD not in client.get(SETTINGS).content.decode()


def test_a_window_of_0_asks_every_time_without_naming_a_time(world, settings):
    settings.RECENT_AUTHENTICATION_SECONDS = 0
    client = signed_in()

    page = client.get(SETTINGS).content.decode()
    refused = client.post(CREATE, {"name": "Nightly export"}).content.decode()

    assert PASSWORD_FIELD in page
    assert "Enter your password to create a token." in page
    assert "Enter your password to create a token." in refused
    assert "more than 0" not in page and "more than 0" not in refused
    assert tokens(world.acme_admin) == []


# --- The guess limit, shared with the password change --------------------------------------------------


def test_the_eleventh_confirmation_in_fifteen_minutes_is_refused_unchecked_with_429(world, clock):
    client = password_last_entered(signed_in(), minutes_ago=16)
    for _ in range(10):
        assert client.post(CREATE, {"name": "Nightly export", "password": "wrong"}).status_code == 400

    response = client.post(CREATE, {"name": "Nightly export", "password": PASSWORD})

    page = response.content.decode()
    assert response.status_code == 429
    assert LOCKED in page
    assert f'<p class="reference">Reference: <code>{response["X-Request-ID"]}</code></p>' in page
    assert 'value="Nightly export"' in page  # the name typed stays
    assert WRONG not in page  # not checked: the right password gets the same refusal as a wrong one
    assert tokens(world.acme_admin) == []
    assert PASSWORD_FIELD in client.get(SETTINGS).content.decode()  # the right password renewed nothing


@pytest.mark.parametrize("second, wait, words", [(0, 900, "15 minutes"), (449, 451, "8 minutes"), (899, 1, "1 second")])
def test_a_refused_confirmation_is_told_when_the_limit_lifts_and_goes_through_then(world, clock, second, wait, words):
    clock.to_second_of_window(f"user:{world.acme_admin.pk}", 900, second)  # the limit's window, fixed per user
    client = password_last_entered(signed_in(), minutes_ago=16)
    for _ in range(10):
        client.post(CREATE, {"name": "Nightly export", "password": "wrong"})

    response = client.post(CREATE, {"name": "Nightly export", "password": PASSWORD})

    assert response.status_code == 429 and response["Retry-After"] == str(wait)
    assert f"Too many attempts to confirm your password. Please try again in {words}." in response.content.decode()
    clock.advance(wait - 1)
    assert client.post(CREATE, {"name": "Nightly export", "password": PASSWORD}).status_code == 429
    clock.advance(1)
    assert client.post(CREATE, {"name": "Nightly export", "password": PASSWORD}).status_code == 200
    assert tokens(world.acme_admin) == ["Nightly export"]


def test_wrong_confirmations_count_against_the_password_changes_limit(world, clock):
    client = password_last_entered(signed_in(), minutes_ago=16)
    for _ in range(10):
        client.post(CREATE, {"name": "Nightly export", "password": "wrong"})

    change = client.post(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": "a-New-passw0rd", "new_password2": "a-New-passw0rd"},
    )

    assert change.status_code == 429


def test_password_change_attempts_count_against_the_confirmations_limit(world, clock):
    client = password_last_entered(signed_in(), minutes_ago=16)
    for _ in range(10):
        client.post("/accounts/password/", WRONG_CHANGE)

    response = client.post(CREATE, {"name": "Nightly export", "password": PASSWORD})

    assert response.status_code == 429
    assert tokens(world.acme_admin) == []


def test_a_stale_form_sent_without_a_password_guesses_nothing_and_uses_up_no_attempt(world):
    client = password_last_entered(signed_in(), minutes_ago=16)
    for _ in range(12):
        assert client.post(CREATE, {"name": "Nightly export"}).status_code == 400

    assert client.post(CREATE, {"name": "Nightly export", "password": PASSWORD}).status_code == 200


def test_within_the_window_no_password_is_checked_so_none_is_counted(world, clock):
    client = signed_in()
    for i in range(5):
        assert client.post(CREATE, {"name": f"Token {i}", "password": "anything"}).status_code == 200

    for _ in range(10):
        wrong = client.post("/accounts/password/", WRONG_CHANGE)
        assert wrong.status_code == 200  # refused for being wrong, not locked out
    assert len(tokens(world.acme_admin)) == 5


# --- No other way to a token ----------------------------------------------------------------------------


def test_an_api_token_cannot_create_another_token(world):
    # Tokens are created only in the console: the form's URL takes no token, and the API has no such operation.
    client = token_client(world.acme_admin)

    response = client.post(CREATE, {"name": "Offspring"})
    schema = Client().get("/api/v1/openapi.json").json()

    assert '<form method="post" action="/accounts/login/"' in response.content.decode()  # asked to sign in
    assert not [path for path in schema["paths"] if "token" in path.lower()]
    assert tokens(world.acme_admin) == ["tests"]


def test_the_test_clients_forced_sign_in_starts_the_window_as_a_sign_in_does(world):
    # tests.clients.console() signs in with force_login, which runs Django's login(): the window starts there too.
    client = console(world.acme_admin)
    assert PASSWORD_FIELD not in client.get(SETTINGS).content.decode()
    password_last_entered(client, minutes_ago=16)

    assert PASSWORD_FIELD in client.get(SETTINGS).content.decode()
