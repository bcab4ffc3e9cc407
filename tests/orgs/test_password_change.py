"""Changing one's own password in the console: the old one asked, guesses limited, other sessions signed out."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from orgs import guards, mailer
from orgs.models import ApiToken, Membership, OutboxMail, Role
from tests.base import PASSWORD
from tests.clients import bearer, console

URL = "/accounts/password/"
NEW = "a-New-passw0rd-for-acme"


def change(client: Client, old: str = PASSWORD, new: str = NEW, again: str | None = None, **extra):
    return client.post(URL, {"old_password": old, "new_password1": new, "new_password2": again or new, **extra})


REVOKE = {"revoke_api_tokens": "on"}


def test_every_page_links_to_it_from_the_account_menu(world):
    page = console(world.acme_member).get("/orgs/acme/insights/").content.decode()

    assert f'<a href="{URL}?next=/orgs/acme/insights/">Change password</a>' in page


def test_a_change_returns_to_the_page_it_was_opened_from_not_to_another_organisation(world):
    # Someone in several organisations changing their password from Initech's Settings was sent to the home page, which
    # is their first organisation's AI Insights (Acme's): the organisation they were working in silently changed.
    Membership.objects.create(user=world.acme_member, organisation=world.initech, role=Role.MEMBER)
    client = console(world.acme_member)
    link = re.search(r'<a href="([^"]+)">Change password</a>', client.get("/orgs/initech/settings/").content.decode())[
        1
    ]
    form = client.get(link).content.decode()
    back = re.search(r'<input type="hidden" name="next" value="([^"]*)">', form)[1]

    response = change(client, next=back)

    assert (response.status_code, response["Location"]) == (302, "/orgs/initech/settings/")
    assert "Your password was changed." in client.get(response["Location"]).content.decode()


def test_a_change_never_returns_to_another_site(world):
    client = console(world.acme_member)

    form = client.get(URL, {"next": "https://evil.example/"}).content.decode()
    response = change(client, next="https://evil.example/")

    assert 'name="next"' not in form
    assert (response.status_code, response["Location"]) == (302, "/")


def test_the_page_asks_for_the_current_password_and_the_new_one_twice(world):
    page = console(world.acme_member).get(URL).content.decode()

    assert 'name="old_password" autocomplete="current-password"' in page
    assert page.count('autocomplete="new-password"') == 2
    assert "Other browsers signed in as you will be signed out." in page


def test_a_password_manager_is_told_which_account_the_new_password_is_for(world):
    # As on a reset link's page: with several accounts saved for the site (an Owner who is also a Member elsewhere), a
    # password manager left to guess may update the wrong one.
    page = console(world.acme_member).get(URL).content.decode()

    form = page.split('<form method="post" action="/accounts/password/"', 1)[1].split("</form>", 1)[0]
    assert '<input type="email" name="username" autocomplete="username" value="member@acme.test" hidden>' in form


def test_a_change_keeps_this_session_signs_out_the_others_and_the_new_password_signs_in(world):
    here, elsewhere = console(world.acme_member), console(world.acme_member)
    token = bearer(world.acme_member)

    response = change(here)

    assert (response.status_code, response["Location"]) == (302, "/")
    page = here.get("/", follow=True).content.decode()
    assert "Your password was changed. Other browsers signed in as you were signed out." in page
    assert elsewhere.get("/orgs/acme/insights/")["Location"].startswith("/accounts/login/")
    assert Client().get("/api/v1/orgs/acme/settings", headers=token).status_code == 200  # tokens keep working
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW) and not world.acme_member.check_password(PASSWORD)


def test_a_wrong_current_password_or_a_mismatch_or_a_weak_one_changes_nothing_and_says_which(world):
    client = console(world.acme_member)
    cases = [
        (change(client, old="not-it"), "Your old password was entered incorrectly. Please enter it again."),
        (change(client, again=NEW + "x"), "The two password fields didn’t match."),
        (change(client, new="12345678"), "This password is too common."),
        (change(client, new="40718293561847"), "This password is entirely numeric."),
    ]

    for response, message in cases:
        assert response.status_code == 200
        page = response.content.decode()
        assert message in page.replace("&#x27;", "'").replace("&#39;", "'")
        assert 'aria-invalid="true"' in page
        assert PASSWORD not in page and NEW not in page  # nothing typed is sent back
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


def test_guessing_the_current_password_is_stopped_after_ten_tries(world, clock):
    # A borrowed or stolen session could otherwise try passwords here without limit and learn the one that
    # outlives it. The eleventh try within 15 minutes is not even checked.
    client = console(world.acme_member)
    for _ in range(10):
        assert change(client, old="wrong").status_code == 200

    locked = change(client)

    assert locked.status_code == 429
    assert "Too many attempts to change your password. Please try again in " in locked.content.decode()
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)  # not changed, though the old password was right


# The guess limit's window is fixed (django-ratelimit's, ending at its own second for each user): where in it the
# clock stands decides how long is left, from the whole 15 minutes at its first second to 1 second at its last.
@pytest.mark.parametrize(
    "second, wait, words",
    [(0, 900, "15 minutes"), (449, 451, "8 minutes"), (841, 59, "59 seconds"), (899, 1, "1 second")],
)
def test_a_refused_change_is_told_when_the_limit_lifts_and_goes_through_then(world, clock, second, wait, words):
    clock.to_second_of_window(f"user:{world.acme_member.pk}", guards.SIGN_IN_WINDOW_SECONDS, second)
    client = console(world.acme_member)
    for _ in range(10):
        change(client, old="wrong")

    locked = change(client)

    assert locked.status_code == 429 and locked["Retry-After"] == str(wait)
    assert f"Too many attempts to change your password. Please try again in {words}." in locked.content.decode()
    clock.advance(wait - 1)
    assert change(client).status_code == 429
    clock.advance(1)
    assert change(client).status_code == 302
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)


def test_the_too_many_attempts_page_shows_its_reference_as_the_error_pages_do(world, clock):
    client = console(world.acme_member)
    for _ in range(10):
        wrong = change(client, old="wrong")
        assert "Reference:" not in wrong.content.decode()  # a wrong password is the user's to fix, not support's

    locked = change(client)

    assert locked.status_code == 429
    page = locked.content.decode()
    assert f'<p class="reference">Reference: <code>{locked["X-Request-ID"]}</code></p>' in page
    assert page.count("Reference:") == 1


def test_a_refused_guess_says_nothing_about_whether_it_was_right(world, clock):
    # Past the limit a wrong guess and the right password get the same page: no "entered incorrectly" for one only.
    client = console(world.acme_member)
    for _ in range(10):
        change(client, old="wrong")

    wrong, right = change(client, old="still-wrong"), change(client)

    for locked in (wrong, right):
        page = locked.content.decode()
        assert locked.status_code == 429
        assert "entered incorrectly" not in page and 'aria-invalid="true"' not in page


def test_signed_out_visitors_are_sent_to_sign_in_first(db):
    response = Client().get(URL)

    assert response["Location"] == f"/accounts/login/?next={URL}"


def sign_in(client: Client, url: str, email: str):
    """The sign-in page `url` sent `client` to, filled in and sent: where it lands."""
    page = client.get(url).content.decode()
    back = re.search(r'<input type="hidden" name="next" value="([^"]*)">', page)[1]
    return client.post("/accounts/login/", {"username": email, "password": PASSWORD, "next": back})


def test_a_change_sent_after_the_session_expired_says_after_sign_in_that_nothing_was_changed(world):
    # Every other form of the console says so; here the form came back empty without a word, and someone who had just
    # typed a new password could not tell whether it was now theirs.
    client = Client()

    response = change(client, next="/orgs/acme/settings/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    landed = sign_in(client, response["Location"], world.acme_member.email)
    page = client.get(landed["Location"]).content.decode()
    assert "You were signed out before this was sent, so nothing was changed: your password was not changed." in page
    back = re.search(r'<input type="hidden" name="next" value="([^"]*)">', page)
    assert back and back[1] == "/orgs/acme/settings/", "the page it was opened from is forgotten"
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


def test_opening_the_page_signed_out_says_nothing_of_a_change_after_sign_in(world):
    client = Client()

    response = client.get(URL, {"next": "/orgs/acme/settings/"})

    landed = sign_in(client, response["Location"], world.acme_member.email)
    page = client.get(landed["Location"]).content.decode()
    assert "Change your password" in page and "nothing was changed" not in page


def test_the_hint_names_the_rules_a_new_password_is_checked_against(world):
    # The validators: length, digits alone, common passwords, likeness to the e-mail address; each one the hint
    # names refuses what it says.
    client = console(world.acme_member)
    hint = "At least 8 characters, not only digits, not a common password, not like your e-mail address."

    assert hint in client.get(URL).content.decode()
    assert change(client, new="8271934650173").status_code == 200  # digits alone
    assert change(client, new="a-New-passw0rd").status_code == 302


# --- Revoking API tokens in the same step ---------------------------------------------------------------------------


def works(token: dict) -> bool:
    return Client().get("/api/v1/orgs/acme/settings", headers=token).status_code == 200


def test_a_user_without_api_tokens_is_offered_no_revocation(world):
    page = console(world.acme_member).get(URL).content.decode()

    assert 'type="checkbox"' not in page and "revoke" not in page.lower()


def test_a_user_with_api_tokens_may_also_revoke_them_unchecked_by_default(world):
    bearer(world.acme_member)
    bearer(world.acme_member)
    expired = ApiToken.objects.filter(user=world.acme_member).first()
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))  # works no more
    bearer(world.acme_member)

    page = console(world.acme_member).get(URL).content.decode()

    assert "Other browsers signed in as you will be signed out; your API tokens keep working unless" in page
    assert '<label for="id_revoke_api_tokens">Also revoke my 2 API tokens</label>' in page  # the working ones
    checkbox = page.split('<input type="checkbox"', 1)[1].split(">", 1)[0]
    assert 'name="revoke_api_tokens"' in checkbox and "checked" not in checkbox
    assert 'aria-describedby="revoke-api-tokens-hint"' in checkbox
    assert 'id="revoke-api-tokens-hint">Integrations using them stop working at once.' in page


def test_one_token_is_named_in_the_singular(world):
    bearer(world.acme_member)

    page = console(world.acme_member).get(URL).content.decode()

    assert '<label for="id_revoke_api_tokens">Also revoke my API token</label>' in page


def test_a_change_with_revocation_revokes_every_token_of_the_user_and_says_how_many(world):
    mine = [bearer(world.acme_member), bearer(world.acme_member)]
    theirs = bearer(world.acme_admin)
    client = console(world.acme_member)

    response = change(client, **REVOKE)

    assert (response.status_code, response["Location"]) == (302, "/")
    page = client.get("/", follow=True).content.decode()
    assert (
        "Your password was changed. Other browsers signed in as you were signed out. Your 2 API tokens were revoked: "
        "integrations using them have stopped working."
    ) in page
    assert not any(works(token) for token in mine)
    assert not ApiToken.objects.filter(user=world.acme_member).exists()
    assert works(theirs)  # another user's token is untouched
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)


def test_a_change_without_revocation_keeps_the_tokens_and_says_nothing_of_them(world):
    token = bearer(world.acme_member)
    client = console(world.acme_member)

    assert change(client).status_code == 302

    page = client.get("/", follow=True).content.decode()
    assert "Your password was changed. Other browsers signed in as you were signed out.</" in page
    assert "revoked" not in page
    assert works(token)


def test_a_refused_change_revokes_nothing_and_keeps_the_box_checked(world):
    token = bearer(world.acme_member)
    client = console(world.acme_member)

    for refused in (change(client, old="not-it", **REVOKE), change(client, new="12345678", **REVOKE)):
        assert refused.status_code == 200
        checkbox = refused.content.decode().split('<input type="checkbox"', 1)[1].split(">", 1)[0]
        assert "checked" in checkbox
    unchecked = change(client, old="not-it").content.decode().split('<input type="checkbox"', 1)[1].split(">", 1)[0]
    assert "checked" not in unchecked
    assert works(token)
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


def test_a_change_refused_for_too_many_attempts_revokes_nothing_and_keeps_the_box_as_it_was(world, clock):
    token = bearer(world.acme_member)
    client = console(world.acme_member)
    for _ in range(10):
        change(client, old="wrong")

    locked = change(client, **REVOKE)

    assert locked.status_code == 429
    checkbox = locked.content.decode().split('<input type="checkbox"', 1)[1].split(">", 1)[0]
    assert "checked" in checkbox
    assert works(token)


@pytest.mark.django_db(transaction=True)  # really rolled back, or committed: a row committed would be mailed
def test_a_change_whose_revocation_fails_changes_no_password_and_mails_no_one(world, mail, token_deletes_fail):
    # The password and the revocation commit together or not at all: a new password with the tokens still working
    # would leave someone who meant to cut off a leaked token believing it was done.
    token = bearer(world.acme_member)
    client = console(world.acme_member)
    client.raise_request_exception = False
    assert mailer.wait(timeout=10)
    mail.clear()  # the token's own e-mail
    rows = OutboxMail.objects.count()

    response = change(client, **REVOKE)
    assert mailer.wait(timeout=10)

    assert response.status_code >= 500
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD) and not world.acme_member.check_password(NEW)
    assert ApiToken.objects.filter(user=world.acme_member).count() == 1
    assert mail == [] and OutboxMail.objects.count() == rows  # no "password changed" e-mail for a change not made
    assert works(token)


def test_someone_who_forgot_the_old_password_is_pointed_to_a_reset_link(world, mail):
    # Signed in but no longer sure of the password: this form cannot be used without it, and the sign-in page (where
    # "Forgot your password?" lives) sends a signed-in visitor straight back into the console.
    page = console(world.acme_member).get(URL).content.decode()

    assert '<a href="/accounts/password/reset/">Forgot your password?</a>' in page


def test_without_mail_the_page_promises_no_reset_link(world):
    page = console(world.acme_member).get(URL).content.decode()

    assert "/accounts/password/reset/" not in page


def input_tag(page: str, field_id: str) -> str:
    return re.search(rf'<input[^>]*id="{field_id}"[^>]*>', page)[0]


def test_a_weak_new_password_is_refused_beside_the_new_password_field(world):
    # Django puts the validators' messages on the confirmation: "This password is too short" under "New password
    # confirmation", while the password it is about was typed in the field above.
    page = change(console(world.acme_member), new="short1", again="short1").content.decode()

    new_password = input_tag(page, "id_new_password1")
    assert 'aria-invalid="true"' in new_password and 'aria-describedby="id_new_password1-error"' in new_password
    assert "This password is too short." in page.split('id="id_new_password1-error"', 1)[1].split("</div>", 1)[0]
    assert 'id="id_new_password2-error"' not in page
    # Every field comes back empty: focus starts on the first, Old password, which says what was refused.
    old_password = input_tag(page, "id_old_password")
    assert "autofocus" in old_password and 'aria-describedby="id_new_password1-error"' in old_password
    assert page.count("autofocus") == 1


def test_after_a_mismatch_focus_is_on_the_first_emptied_field_described_by_the_mismatch(world):
    # Focus on the confirmation, under which the mismatch is said, left Old password and New password above it empty:
    # the browser's `required` then stopped the next submit on them.
    page = change(console(world.acme_member), again=NEW + "x").content.decode()

    old_password, confirmation = input_tag(page, "id_old_password"), input_tag(page, "id_new_password2")
    assert "autofocus" in old_password and 'aria-describedby="id_new_password2-error"' in old_password
    assert 'aria-invalid="true"' not in old_password  # it was right; it only has to be typed again
    assert 'aria-invalid="true"' in confirmation and "autofocus" not in confirmation
    assert page.count("autofocus") == 1


def test_a_weak_new_password_that_also_mismatches_is_told_both_each_under_its_own_field(world):
    # Kept on purpose, unlike Django's default (which skips the validators on a mismatch): every field comes back
    # empty, so the user retypes both anyway, and hearing only "didn't match" would have them type the same weak
    # password twice just to be refused a second time. Each message sits under the field it is about.
    page = change(console(world.acme_member), new="12345678", again="12345679").content.decode()

    new_errors = page.split('id="id_new_password1-error"', 1)[1].split("</div>", 1)[0]
    confirmation_errors = page.split('id="id_new_password2-error"', 1)[1].split("</div>", 1)[0]
    assert "This password is too common." in new_errors and "match" not in new_errors
    assert "The two password fields didn’t match." in confirmation_errors and "common" not in confirmation_errors
    described = 'aria-describedby="id_new_password1-error id_new_password2-error"'
    assert described in input_tag(page, "id_old_password")


def test_a_wrong_old_password_takes_focus_described_by_its_own_message(world):
    page = change(console(world.acme_member), old="not-it").content.decode()

    old_password = input_tag(page, "id_old_password")
    assert "autofocus" in old_password and 'aria-describedby="id_old_password-error"' in old_password
    assert 'aria-invalid="true"' in old_password and page.count("autofocus") == 1


def test_the_reset_pages_lead_a_signed_in_user_back_to_change_password_not_to_sign_in(world, mail):
    # Reached from this page's "Forgot your password?": "Back to sign in" would only bounce them into the console.
    client = console(world.acme_member)
    form = client.get("/accounts/password/reset/")
    assert client.post("/accounts/password/reset/", {"email": "member@acme.test"}).status_code == 302

    for page in (form, client.get("/accounts/password/reset/sent/")):
        main = page.content.decode().split("<main", 1)[1]
        assert f'<a href="{URL}">Back to Change password</a>' in main
        assert "Back to sign in" not in main
