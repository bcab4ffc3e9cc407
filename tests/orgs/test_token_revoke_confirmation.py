"""Revoking an API token asks first: the Revoke button opens a confirmation (a page of its own, a GET) naming the
token and what revoking does, and only that confirmation's own form revokes; in an organisation's Settings and on
the home page of someone in no organisation."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from orgs import services
from orgs.models import ApiToken, Membership
from tests.base import GOOD_KEY
from tests.clients import console
from tests.orgs.helpers import store_key

SETTINGS = "/orgs/acme/settings/"
NOT_FOUND = "That token does not exist or was already revoked."
CONSEQUENCE = "Requests using it will be refused at once; this cannot be undone."


def revoke_url(token) -> str:
    return f"/orgs/acme/settings/tokens/{token.pk}/revoke"


def account_revoke_url(token) -> str:
    return f"/accounts/tokens/{token.pk}/revoke"


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def confirmation_of(page: str) -> str | None:
    match = re.search(r'<div class="confirm" role="alertdialog"[^>]*>.*?</form>\s*</div>', page, re.S)
    return match.group(0) if match else None


def make(user, name: str, *, expires_in: timedelta | None = timedelta(days=80), used_at=None) -> ApiToken:
    token, _ = services.api_token_create(user=user, name=name)
    at = None if expires_in is None else timezone.now() + expires_in
    ApiToken.objects.filter(pk=token.pk).update(expires_at=at, last_used_at=used_at)
    return ApiToken.objects.get(pk=token.pk)


def without_per_request_values(html: str) -> str:
    """The page without what differs on every load: the CSRF token and the token form's one-time value."""
    return re.sub(r'name="(csrfmiddlewaretoken|once)" value="[^"]+"', "", html)


def test_the_revoke_button_opens_the_confirmation_as_a_page_of_its_own(world):
    token = make(world.acme_admin, "Nightly export")

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    # A GET form to the page itself: no revocation can start from the list.
    form = re.search(r'<form method="get" action="/orgs/acme/settings/">.*?</form>', page, re.S)
    assert form, "the Revoke button is not a GET form to the settings page"
    assert f'name="revoke" value="{token.pk}"' in form.group(0)
    assert f'aria-label="Revoke token Nightly export ({token.prefix}…)"' in form.group(0)
    assert f'action="{revoke_url(token)}"' not in page
    assert confirmation_of(page) is None


def test_tokens_sharing_a_name_have_revoke_buttons_told_apart_by_their_prefix(world):
    # Rotating a token, its replacement is usually given the old one's name: a screen reader listing the buttons must
    # still tell the old one's Revoke from the new one's, as the rows' prefixes tell them apart on screen.
    old = make(world.acme_admin, "Nightly export", expires_in=timedelta(days=2))
    new = make(world.acme_admin, "Nightly export")

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    labels = re.findall(r'<button[^>]*aria-label="(Revoke token [^"]*)"', page)
    assert sorted(labels) == sorted(f"Revoke token Nightly export ({t.prefix}…)" for t in (old, new))


def test_the_confirmation_names_the_token_and_says_what_revoking_does(world):
    used = timezone.now() - timedelta(hours=5)
    token = make(world.acme_admin, "Nightly export", used_at=used)

    response = console(world.acme_admin).get(SETTINGS, {"revoke": token.pk})

    assert response.status_code == 200
    confirmation = confirmation_of(response.content.decode())
    assert confirmation, "no confirmation on the page"
    words = text_of(confirmation)
    assert "Revoke the API token “Nightly export”?" in words
    assert f"{token.prefix}…" in words
    assert f"Last used {used:%-d %b %Y, %H:%M} UTC" in words
    assert f"Expires {token.expires_at:%-d %b %Y}" in words
    assert CONSEQUENCE in words
    assert f'<form method="post" action="{revoke_url(token)}"' in confirmation
    assert '<input type="hidden" name="confirm" value="yes">' in confirmation
    assert re.search(r'<button class="button button--danger" type="submit">Revoke token</button>', confirmation)
    # Focus starts on the way out, as the key's removal does: a stray Enter must not revoke.
    assert re.search(rf'<a class="button" href="{SETTINGS}#token-{token.pk}" autofocus>Cancel</a>', confirmation)
    assert 'aria-labelledby="revoke-heading"' in confirmation
    assert 'aria-describedby="revoke-consequence"' in confirmation
    assert ApiToken.objects.filter(pk=token.pk).exists()  # nothing revoked by looking


def test_the_confirmation_of_a_token_never_used_or_without_expiry_says_so(world):
    token = make(world.acme_admin, "Old script", expires_in=None)

    words = text_of(confirmation_of(console(world.acme_admin).get(SETTINGS, {"revoke": token.pk}).content.decode()))

    assert "Last used never" in words
    assert "Expires Never (made before tokens expired)" in words


def test_the_confirmation_of_a_token_expiring_within_hours_gives_the_day_time_and_how_long_as_a_value(world):
    # The day in words begins the value beside its label ("Expires" / "Today, 14:05 UTC (in 2 hours)"), capitalised
    # as the Expires column has it; a date-time a machine can read comes with it.
    token = make(world.acme_admin, "Nightly export", expires_in=timedelta(hours=2))

    confirmation = confirmation_of(console(world.acme_admin).get(SETTINGS, {"revoke": token.pk}).content.decode())

    assert re.search(r"Expires (Today|Tomorrow), \d\d:\d\d UTC \(in 2 hours\)", text_of(confirmation))
    assert f'<time datetime="{token.expires_at.isoformat()}">' in confirmation


def test_the_confirmation_of_an_expired_token_does_not_claim_revoking_stops_requests(world):
    token = make(world.acme_admin, "Last quarter", expires_in=-timedelta(days=2, hours=1))

    words = text_of(confirmation_of(console(world.acme_admin).get(SETTINGS, {"revoke": token.pk}).content.decode()))

    assert CONSEQUENCE not in words
    assert "It has expired, so requests using it are refused already." in words
    assert "Revoking removes it from this list; this cannot be undone." in words


def test_the_row_being_confirmed_has_no_second_revoke_button(world):
    token = make(world.acme_admin, "Nightly export")
    other = make(world.acme_admin, "Backup job")

    page = console(world.acme_admin).get(SETTINGS, {"revoke": token.pk}).content.decode()

    assert 'aria-label="Revoke token Nightly export' not in page
    assert f'aria-label="Revoke token Backup job ({other.prefix}…)"' in page
    assert f'id="token-{token.pk}"' in page and f'id="token-{other.pk}"' in page


def test_the_confirmations_own_form_revokes_the_token(world):
    token = make(world.acme_admin, "Nightly export")
    client = console(world.acme_admin)

    response = client.post(revoke_url(token), {"confirm": "yes"})

    assert (response.status_code, response["Location"]) == (302, SETTINGS)
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    page = client.get(SETTINGS).content.decode()
    assert "API token “Nightly export” revoked. Requests using it are now refused." in page


def test_a_post_without_the_confirmation_shows_the_confirmation_and_revokes_nothing(world):
    # A page cached from before the confirmation existed posts straight to the revoke URL.
    token = make(world.acme_admin, "Nightly export")
    client = console(world.acme_admin)

    response = client.post(revoke_url(token))

    # Answered with the confirmation's own address, so Back and reload never post again.
    assert (response.status_code, response["Location"]) == (302, f"{SETTINGS}?revoke={token.pk}")
    assert ApiToken.objects.filter(pk=token.pk).exists()
    shown = client.get(response["Location"]).content.decode()
    assert "Revoke the API token “Nightly export”?" in text_of(confirmation_of(shown))
    assert "revoked." not in shown


def test_a_confirmation_with_another_value_revokes_nothing(world):
    token = make(world.acme_admin, "Nightly export")

    response = console(world.acme_admin).post(revoke_url(token), {"confirm": "remove"})

    assert response.status_code == 302
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_a_token_already_revoked_gets_the_not_found_message_not_a_confirmation(world):
    token = make(world.acme_admin, "Nightly export")
    client = console(world.acme_admin)
    client.post(revoke_url(token), {"confirm": "yes"})
    client.get(SETTINGS)  # the message of that revocation, read

    response = client.get(SETTINGS, {"revoke": token.pk})

    page = response.content.decode()
    assert response.status_code == 404
    assert NOT_FOUND in page
    assert confirmation_of(page) is None
    assert "Settings" in page and "API tokens" in page  # the page itself, with the message, not a bare 404


def test_someone_elses_token_is_not_found_and_nothing_of_it_is_shown(world):
    theirs = make(world.acme_owner, "Owner's secret pipeline")
    missing = make(world.acme_owner, "gone")
    missing_pk = missing.pk
    missing.delete()
    client = console(world.acme_admin)

    other = client.get(SETTINGS, {"revoke": theirs.pk})
    gone = client.get(SETTINGS, {"revoke": missing_pk})

    assert other.status_code == gone.status_code == 404
    page = other.content.decode()
    assert NOT_FOUND in page
    assert "Owner's secret pipeline" not in page and "Owner&#x27;s secret pipeline" not in page
    assert theirs.prefix not in page
    # The same page whether the token is someone else's or no one's: its existence is not revealed.
    assert without_per_request_values(page) == without_per_request_values(gone.content.decode())
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_a_confirmed_revoke_of_someone_elses_token_is_not_found_and_keeps_it(world):
    theirs = make(world.acme_owner, "Owner's")

    response = console(world.acme_admin).post(revoke_url(theirs), {"confirm": "yes"}, follow=True)

    assert NOT_FOUND in response.content.decode()
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_a_revoke_value_that_is_no_token_number_is_not_found(world):
    client = console(world.acme_admin)

    # "²" is a digit to str.isdigit() but no number to int().
    for value in ("abc", "-1", "1.5", "", "99999999999999999999999", "²"):
        response = client.get(SETTINGS, {"revoke": value})
        assert response.status_code == 404, value
        assert NOT_FOUND in response.content.decode(), value


def test_someone_in_no_organisation_confirms_on_the_home_page(world):
    token = make(world.acme_member, "leaked laptop")
    Membership.objects.filter(user=world.acme_member).delete()
    client = console(world.acme_member)

    home = client.get("/").content.decode()
    form = re.search(r'<form method="get" action="/">.*?</form>', home, re.S)
    assert form and f'name="revoke" value="{token.pk}"' in form.group(0)

    asked = client.post(account_revoke_url(token))
    assert (asked.status_code, asked["Location"]) == (302, f"/?revoke={token.pk}")
    assert ApiToken.objects.filter(pk=token.pk).exists()

    confirmation = confirmation_of(client.get("/", {"revoke": token.pk}).content.decode())
    assert "Revoke the API token “leaked laptop”?" in text_of(confirmation)
    assert f'<form method="post" action="{account_revoke_url(token)}"' in confirmation
    assert re.search(rf'<a class="button" href="/#token-{token.pk}" autofocus>Cancel</a>', confirmation)

    response = client.post(account_revoke_url(token), {"confirm": "yes"}, follow=True)
    assert "API token “leaked laptop” revoked. Requests using it are now refused." in response.content.decode()
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_on_the_home_page_someone_elses_token_is_not_found(world):
    theirs = make(world.acme_owner, "Owner's pipeline")
    Membership.objects.filter(user=world.acme_member).delete()

    response = console(world.acme_member).get("/", {"revoke": theirs.pk})

    assert response.status_code == 404
    page = response.content.decode()
    assert NOT_FOUND in page and "Owner&#x27;s pipeline" not in page and theirs.prefix not in page


def test_a_home_page_confirmation_opened_by_someone_added_to_an_organisation_since_opens_in_its_settings(world):
    # Added to an organisation as the home page stood open: the home page now leads to it, and so does the question.
    token = make(world.acme_member, "leaked laptop")

    response = console(world.acme_member).get("/", {"revoke": token.pk})

    assert (response.status_code, response["Location"]) == (302, f"{SETTINGS}?revoke={token.pk}")


def test_an_unconfirmed_revoke_from_a_settings_page_left_open_after_removal_asks_on_the_home_page(world):
    token = make(world.acme_member, "leaked laptop")
    Membership.objects.filter(user=world.acme_member).delete()  # staff remove them as the page stands open
    client = console(world.acme_member)

    asked = client.post(revoke_url(token))

    # Where they land says nothing of the organisation they are no longer in.
    assert (asked.status_code, asked["Location"]) == (302, f"/?revoke={token.pk}")
    shown = client.get(asked["Location"]).content.decode()
    assert "Revoke the API token “leaked laptop”?" in text_of(confirmation_of(shown))
    assert ApiToken.objects.filter(pk=token.pk).exists()


def autofocused(page: str) -> list[str]:
    return re.findall(r"<[^>]*\bautofocus\b[^>]*>", page)


def focus_starts_on_cancel(page: str) -> bool:
    """The page's one autofocus is on its Cancel link."""
    (first, *others) = autofocused(page) or [""]
    return first != "" and not others and page.split(first, 1)[1].startswith("Cancel</a>")


def with_a_message_waiting(user, *, revoke=revoke_url):
    """`user`'s browser, holding a message not shown yet: a token revoked in another tab, whose page never loaded
    (on acme's Settings, or with `revoke=account_revoke_url` on the home page, for a user outside acme)."""
    client = console(user)
    done = make(user, "Done with")
    assert client.post(revoke(done), {"confirm": "yes"}).status_code == 302
    return client


def test_a_message_left_from_before_does_not_take_focus_from_the_confirmations_cancel(world):
    # A message still waiting and a confirmation on the same page: the browser focuses the first autofocus, and a
    # stray Enter must land on Cancel, not on the message.
    admin = with_a_message_waiting(world.acme_admin)
    asked = make(world.acme_admin, "Nightly export")

    page = admin.get(SETTINGS, {"revoke": asked.pk}).content.decode()

    assert "API token “Done with” revoked." in page
    assert focus_starts_on_cancel(page)


def test_a_message_left_from_before_does_not_take_focus_from_the_key_removals_cancel(world):
    store_key(world.acme, GOOD_KEY)
    admin = with_a_message_waiting(world.acme_admin)

    page = admin.get(SETTINGS, {"confirm": "remove"}).content.decode()

    assert "API token “Done with” revoked." in page
    assert focus_starts_on_cancel(page)


def test_without_a_confirmation_a_message_still_takes_focus(world):
    admin = console(world.acme_admin)
    done = make(world.acme_admin, "Done with")

    page = admin.post(revoke_url(done), {"confirm": "yes"}, follow=True).content.decode()

    assert autofocused(page) == ['<div class="flash-stack" tabindex="-1" autofocus>']


def test_a_message_left_from_before_does_not_take_focus_from_a_new_tokens_copy_it_now(world):
    # The token is shown this once, on the answer to the POST: focus must start on it, not on an older message.
    admin = with_a_message_waiting(world.acme_admin)

    page = admin.post("/orgs/acme/settings/tokens/create", {"name": "Nightly export"}).content.decode()

    assert "API token “Done with” revoked." in page and 'id="new-token"' in page
    assert autofocused(page) == ['<div class="alert alert--success" role="status" tabindex="-1" autofocus>']


@pytest.mark.parametrize(
    "url, data, field",
    [
        ("/orgs/acme/settings/claude-api-key/save", {"api_key": "not a key"}, 'id="byom-key"'),
        ("/orgs/acme/settings/tokens/create", {"name": ""}, 'name="name"'),
    ],
    ids=["a refused key", "a refused token name"],
)
def test_a_message_left_from_before_does_not_take_focus_from_a_refused_field(world, url, data, field):
    admin = with_a_message_waiting(world.acme_admin)

    refused = admin.post(url, data)

    page = refused.content.decode()
    assert refused.status_code == 400 and "API token “Done with” revoked." in page
    assert len(autofocused(page)) == 1 and field in autofocused(page)[0]


@pytest.mark.parametrize(
    "who, url, data, status",
    [
        ("globex_owner", "/orgs/globex/settings/claude-api-key/save", {"api_key": GOOD_KEY}, 403),
        ("globex_owner", "/orgs/globex/settings/claude-api-key/remove", {"confirm": "yes", "saved_at": "x"}, 409),
        ("acme_member", "/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY}, 403),
        ("acme_admin", "/orgs/acme/settings/tokens/create", {"name": "Nightly export", "expires": "7"}, 400),
    ],
    ids=[
        "a key refused on a plan without BYOM",
        "a leftover key's removal refused",
        "a key refused to a Member",
        "a refused token lifetime",
    ],
)
def test_a_refusal_with_no_field_to_focus_leaves_focus_on_the_message(world, who, url, data, status):
    # The refusal is shown where no field is there to take focus: no key field on a plan without BYOM or for a Member,
    # none on a leftover key's card; the lifetime's choice is not focused. The waiting message then keeps it, or no
    # element at all would start with focus.
    store_key(world.globex, GOOD_KEY)
    user = getattr(world, who)
    client = with_a_message_waiting(user, revoke=account_revoke_url if who.startswith("globex") else revoke_url)

    refused = client.post(url, data)

    page = refused.content.decode()
    assert refused.status_code == status and "API token “Done with” revoked." in page
    assert autofocused(page) == ['<div class="flash-stack" tabindex="-1" autofocus>']


def test_on_the_home_page_a_message_left_from_before_does_not_take_focus_from_the_confirmations_cancel(world):
    done, asked = make(world.acme_member, "Done with"), make(world.acme_member, "Nightly export")
    Membership.objects.filter(user=world.acme_member).delete()
    client = console(world.acme_member)
    assert client.post(account_revoke_url(done), {"confirm": "yes"}).status_code == 302  # its message is not read yet

    page = client.get("/", {"revoke": asked.pk}).content.decode()

    assert "API token “Done with” revoked." in page
    assert focus_starts_on_cancel(page)


def test_on_the_home_page_without_a_confirmation_a_message_still_takes_focus(world):
    done = make(world.acme_member, "Done with")
    Membership.objects.filter(user=world.acme_member).delete()
    client = console(world.acme_member)

    page = client.post(account_revoke_url(done), {"confirm": "yes"}, follow=True).content.decode()

    assert autofocused(page) == ['<div class="flash-stack" tabindex="-1" autofocus>']
