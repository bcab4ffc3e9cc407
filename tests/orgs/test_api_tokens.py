"""Personal API tokens: created in the console and shown once, listed, used, revoked; stored only as a hash."""

import hashlib
import logging
import re
import sys
import warnings
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.cache.backends.base import CacheKeyWarning
from django.core.signals import got_request_exception
from django.db import connection
from django.utils import timezone
from django.views.debug import ExceptionReporter, get_exception_reporter_class

from orgs import selectors, services
from orgs.models import ApiToken, Membership, Role
from tests.base import GOOD_KEY
from tests.clients import api_put_key, console
from tests.orgs.helpers import csrf_token_from, error_of

CREATE = "/orgs/acme/settings/tokens/create"


def create_in_console(client, name: str = "Reporting pipeline") -> str:
    response = client.post(CREATE, {"name": name})
    assert response.status_code == 200
    match = re.search(r'<code class="token" id="new-token">([^<]+)</code>', response.content.decode())
    assert match, "the new token is not on the page"
    return match.group(1)


def api_get(raw: str, slug: str = "acme"):
    return console().get(f"/api/v1/orgs/{slug}/settings", headers={"Authorization": f"Bearer {raw}"})


def test_a_new_token_is_shown_once_with_a_warning(world):
    client = console(world.acme_admin)

    response = client.post(CREATE, {"name": "Reporting pipeline"})

    page = response.content.decode()
    assert "Token “Reporting pipeline” created. Copy it now: it will not be shown again." in page
    raw = create_in_console(client, "Second")
    assert raw.startswith("opsn_")
    assert raw not in client.get("/orgs/acme/settings/").content.decode()


def test_reloading_the_page_that_showed_a_new_token_does_not_create_another(world):
    client = console(world.acme_admin)
    settings_page = client.get("/orgs/acme/settings/").content.decode()
    once = re.search(r'name="once" value="([^"]+)"', settings_page).group(1)

    first = client.post(CREATE, {"name": "Nightly export", "once": once})
    again = client.post(CREATE, {"name": "Nightly export", "once": once})  # the browser's reload re-posts

    assert first.status_code == 200 and 'id="new-token"' in first.content.decode()
    assert again.status_code == 409
    assert "This form already created its token, which was shown only once." in again.content.decode()
    assert 'id="new-token"' not in again.content.decode()
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 1
    # A fresh form (each page carries a new one-time value) creates the next token as usual.
    fresh = re.search(r'name="once" value="([^"]+)"', again.content.decode()).group(1)
    assert fresh != once
    assert client.post(CREATE, {"name": "Second", "once": fresh}).status_code == 200
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 2


def test_a_double_click_on_create_makes_one_token(world):
    # Two clicks race: the second request reads the session before the first one has saved its
    # used-form list. Only the atomic claim in the shared cache can tell the second one apart.
    client = console(world.acme_admin)
    settings_page = client.get("/orgs/acme/settings/").content.decode()
    once = re.search(r'name="once" value="([^"]+)"', settings_page).group(1)
    first = client.post(CREATE, {"name": "Nightly export", "once": once})
    session = client.session
    del session["token_forms_used"]  # what the racing second request saw
    session.save()

    second = client.post(CREATE, {"name": "Nightly export", "once": once})

    assert first.status_code == 200
    assert second.status_code == 409
    assert "This form already created its token, which was shown only once." in second.content.decode()
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 1


def test_the_new_token_works_against_the_api(world):
    raw = create_in_console(console(world.acme_admin))

    response = api_get(raw)

    assert response.status_code == 200
    assert response.json()["role"] == "admin"


def test_tokens_are_listed_with_name_prefix_created_and_last_used_but_never_in_full(world):
    client = console(world.acme_admin)
    raw = create_in_console(client, "Nightly export")

    page = client.get("/orgs/acme/settings/").content.decode()

    row = re.search(r"<tr>\s*<td[^>]*>Nightly export<.*?</tr>", page, re.S).group(0)
    assert f"<code>{raw[:12]}…</code>" in row
    created = ApiToken.objects.get(name="Nightly export").created_at  # its own date, even across midnight
    assert created.strftime("%-d %b %Y") in row
    assert "never" in row
    assert raw not in page
    assert raw[12:] not in page


def test_using_a_token_records_when_it_was_last_used(world):
    client = console(world.acme_admin)
    raw = create_in_console(client)

    api_get(raw)

    token = ApiToken.objects.get()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)
    row = re.search(
        r"<tr>\s*<td[^>]*>Reporting pipeline<.*?</tr>", client.get("/orgs/acme/settings/").content.decode(), re.S
    )
    assert "never" not in row.group(0)


def test_token_times_say_they_are_utc_like_every_other_time_on_the_page(world):
    # The audit log and the key's card beside this table say "UTC"; a bare time reads as the viewer's own.
    client = console(world.acme_admin)
    raw = create_in_console(client, "Nightly export")
    api_get(raw)

    page = client.get("/orgs/acme/settings/").content.decode()

    row = re.search(r"<tr>\s*<td[^>]*>Nightly export<.*?</tr>", page, re.S).group(0)
    times = re.findall(r"\d{1,2} \w{3} \d{4}, \d{2}:\d{2}[^<]*", row)
    assert len(times) == 2, row  # created, last used
    assert all(t.endswith(" UTC") for t in times), times


def test_last_used_is_written_at_most_once_a_minute(world):
    _, raw = services.api_token_create(user=world.acme_admin, name="busy")
    recent = timezone.now() - timedelta(seconds=10)
    ApiToken.objects.update(last_used_at=recent)

    api_get(raw)
    assert ApiToken.objects.get().last_used_at == recent

    stale = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.update(last_used_at=stale)
    api_get(raw)
    assert ApiToken.objects.get().last_used_at > stale


def test_tokens_are_stored_only_as_a_hash(world):
    raw = create_in_console(console(world.acme_admin))

    token = ApiToken.objects.get()
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM orgs_apitoken")
        columns = [str(value) for value in cursor.fetchone()]
    assert not any(raw in value or raw[12:] in value for value in columns)


def test_a_revoked_token_is_refused(world):
    client = console(world.acme_admin)
    raw = create_in_console(client)
    token = ApiToken.objects.get()

    response = client.post(f"/orgs/acme/settings/tokens/{token.pk}/revoke", {"confirm": "yes"}, follow=True)

    assert f"API token “{token.name}” revoked. Requests using it are now refused." in response.content.decode()
    assert not ApiToken.objects.exists()
    refused = api_get(raw)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "unauthenticated"


def test_you_cannot_revoke_someone_elses_token(world):
    _, raw = services.api_token_create(user=world.acme_owner, name="owner's")
    token = ApiToken.objects.get()

    response = console(world.acme_admin).post(
        f"/orgs/acme/settings/tokens/{token.pk}/revoke", {"confirm": "yes"}, follow=True
    )

    assert "That token does not exist or was already revoked." in response.content.decode()
    assert api_get(raw).status_code == 200


def test_someone_removed_from_every_organisation_can_still_revoke_their_tokens(world):
    token, raw = services.api_token_create(user=world.acme_member, name="leaked laptop")
    services.api_token_create(user=world.acme_owner, name="not yours")
    Membership.objects.filter(user=world.acme_member).delete()
    client = console(world.acme_member)

    home = client.get("/").content.decode()
    assert "You are not in an organisation yet" in home
    assert "leaked laptop" in home and "not yours" not in home
    assert raw not in home

    response = client.post(f"/accounts/tokens/{token.pk}/revoke", {"confirm": "yes"}, follow=True)

    page = response.content.decode()
    assert "API token “leaked laptop” revoked. Requests using it are now refused." in page
    assert page.count("leaked laptop") == 1  # in that message only: no longer listed
    # Added back later, the revoked token stays refused.
    Membership.objects.create(user=world.acme_member, organisation=world.acme, role=Role.MEMBER)
    assert api_get(raw).status_code == 401


def test_a_token_revoked_from_a_settings_page_left_open_after_removal_from_the_organisation_is_revoked(world):
    client = console(world.acme_member)
    raw = create_in_console(client, "leaked laptop")
    token = ApiToken.objects.get()
    Membership.objects.filter(user=world.acme_member).delete()  # staff remove them as the page stands open

    response = client.post(f"/orgs/acme/settings/tokens/{token.pk}/revoke", {"confirm": "yes"}, follow=True)

    assert response.status_code == 200
    assert "API token “leaked laptop” revoked. Requests using it are now refused." in response.content.decode()
    assert not ApiToken.objects.exists()
    Membership.objects.create(user=world.acme_member, organisation=world.acme, role=Role.MEMBER)
    assert api_get(raw).status_code == 401  # added back, the token stays revoked


def test_revoking_your_token_through_an_organisation_you_are_not_in_says_nothing_of_it(world):
    token, raw = services.api_token_create(user=world.outsider, name="mine")
    exists = console(world.outsider).post(f"/orgs/acme/settings/tokens/{token.pk}/revoke", {"confirm": "yes"})
    token, raw = services.api_token_create(user=world.outsider, name="mine")
    missing = console(world.outsider).post(f"/orgs/no-such-org/settings/tokens/{token.pk}/revoke", {"confirm": "yes"})

    assert (exists.status_code, exists["Location"]) == (missing.status_code, missing["Location"]) == (302, "/")
    assert not ApiToken.objects.exists()


def test_revoking_from_the_account_page_is_only_for_your_own_tokens_and_needs_csrf(world):
    token, raw = services.api_token_create(user=world.acme_owner, name="owner's")

    other = console(world.acme_admin).post(f"/accounts/tokens/{token.pk}/revoke", {"confirm": "yes"}, follow=True)
    forged = console(world.acme_owner, enforce_csrf_checks=True).post(
        f"/accounts/tokens/{token.pk}/revoke", {"confirm": "yes"}
    )
    anonymous = console().post(f"/accounts/tokens/{token.pk}/revoke", {"confirm": "yes"})

    assert "That token does not exist or was already revoked." in other.content.decode()
    assert forged.status_code == 403
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert api_get(raw).status_code == 200


def test_the_list_shows_only_your_own_tokens(world):
    services.api_token_create(user=world.acme_owner, name="owner-only token")

    page = console(world.acme_admin).get("/orgs/acme/settings/").content.decode()

    assert "owner-only token" not in page
    assert "You have no API tokens." in page


def test_a_token_acts_as_its_user_in_their_organisations_only(world):
    _, raw = services.api_token_create(user=world.acme_member, name="member")

    assert api_get(raw, "acme").status_code == 200
    assert api_get(raw, "initech").status_code == 404
    refused = api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, Authorization=f"Bearer {raw}")
    assert error_of(refused)["code"] == "forbidden_role"


def test_a_deactivated_users_token_is_refused(world):
    _, raw = services.api_token_create(user=world.acme_admin, name="gone")
    world.acme_admin.is_active = False
    world.acme_admin.save()

    assert api_get(raw).status_code == 401


def test_deactivation_refuses_a_users_sessions_and_tokens_at_once_and_reactivation_brings_them_back(world):
    # As the README says: deactivating deletes nothing; a compromised account also needs a new password (which
    # ends its sessions) and its tokens deleted.
    _, raw = services.api_token_create(user=world.acme_admin, name="ci")
    session = console(world.acme_admin)
    assert session.get("/api/v1/orgs/acme/settings").status_code == 200
    world.acme_admin.is_active = False
    world.acme_admin.save()

    assert session.get("/orgs/acme/settings/").status_code == 302
    assert session.get("/api/v1/orgs/acme/settings").status_code == 401
    assert api_get(raw).status_code == 401

    world.acme_admin.is_active = True
    world.acme_admin.save()
    assert session.get("/orgs/acme/settings/").status_code == 200
    assert api_get(raw).status_code == 200


def test_a_malformed_authorization_header_is_unauthenticated(world):
    for header in ("Bearer", "Bearer ", "Token opsn_abc", "bearer opsn_" + "x" * 300):
        response = console().get("/api/v1/orgs/acme/settings", headers={"Authorization": header})
        assert response.status_code == 401, header


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_a_token_sent_under_another_scheme_is_refused_and_never_logged(world, settings, caplog, debug):
    settings.DEBUG = debug  # ninja's own bearer check logs such a header whole when DEBUG is on
    _, raw = services.api_token_create(user=world.acme_admin, name="ci")

    with caplog.at_level(logging.DEBUG):
        for header in (f"Token {raw}", f"Basic {raw}", raw):
            response = console().get("/api/v1/orgs/acme/settings", headers={"Authorization": header})
            assert response.status_code == 401
            assert error_of(response)["code"] == "unauthenticated"

    assert raw not in caplog.text
    assert api_get(raw).status_code == 200
    lower = console().get("/api/v1/orgs/acme/settings", headers={"Authorization": f"bearer {raw}"})
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 9110)


def test_a_token_needs_a_name(world):
    response = console(world.acme_admin).post(CREATE, {"name": ""})

    assert response.status_code == 400
    assert 'id="token-name-error"' in response.content.decode()
    assert not ApiToken.objects.exists()


NAME_MISSING = "Give the token a name, e.g. “CI pipeline”."


@pytest.mark.parametrize("typed", ["", "   ", " \t "])
def test_a_name_of_only_spaces_is_refused_with_what_to_type_and_the_spaces_are_not_kept(world, typed):
    # Django's "This field is required." under a box that visibly holds something, still holding it: the next
    # Create token sends the same spaces. The page says what is wanted, in the words the service uses, and the box
    # comes back empty so the browser's `required` stops an empty name there.
    response = console(world.acme_admin).post(CREATE, {"name": typed})

    assert response.status_code == 400
    page = response.content.decode()
    assert f'<p class="field-error" id="token-name-error">{NAME_MISSING}</p>' in page
    assert "This field is required." not in page
    name_box = re.search(r'<input type="text" name="name" id="id_name"[^>]*>', page)[0]
    assert 'value=""' in name_box and "autofocus" in name_box
    assert not ApiToken.objects.exists()


def test_a_refused_name_is_kept_as_it_would_be_stored_without_the_spaces_around_it(world):
    page = console(world.acme_admin).post(CREATE, {"name": "  " + "n" * 101 + "  "}).content.decode()

    name_box = re.search(r'<input type="text" name="name" id="id_name"[^>]*>', page)[0]
    assert f'value="{"n" * 101}"' in name_box


def test_a_token_name_may_not_be_too_long(world):
    response = console(world.acme_admin).post(CREATE, {"name": "n" * 101})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


NAME_HOLDS_SECRET = (
    "Token names are shown in lists and e-mails, and this one holds what looks like a Claude API key or an API "
    "token, so no token was created. Choose another name."
)


@pytest.mark.parametrize(
    "typed",
    [
        GOOD_KEY,  # longer than a name may be: refused for what it holds, not for its length
        "sk-ant-api03-half-of-a-pasted",  # part of a key, short enough to be a name
        "CI " + GOOD_KEY[:40],
        "opsn_" + "x" * 30,  # another token pasted as this one's name
    ],
)
def test_a_name_holding_a_key_or_a_token_is_refused_and_not_shown_back(world, typed):
    # The Anthropic key pasted into the wrong box of Settings (the token's name sits below the key's): a name is
    # listed, mailed to its user and kept in the table as typed, so it would carry the key out of the server.
    response = console(world.acme_admin).post(CREATE, {"name": typed})

    assert response.status_code == 400
    page = response.content.decode()
    assert f'<p class="field-error" id="token-name-error">{NAME_HOLDS_SECRET}</p>' in page
    assert typed not in page and typed[:20] not in page
    name_box = re.search(r'<input type="text" name="name" id="id_name"[^>]*>', page)[0]
    assert 'value=""' in name_box and "autofocus" in name_box
    assert not ApiToken.objects.exists()


def test_the_service_refuses_a_name_holding_a_key_whoever_calls_it(world):
    # create_api_token --name and any other caller meet the same rule as the console.
    with pytest.raises(services.InvalidRequest) as refused:
        services.api_token_create(user=world.acme_admin, name="pipeline sk-ant-api03-abcdefghijkl")

    assert refused.value.message == NAME_HOLDS_SECRET
    assert not ApiToken.objects.exists()


def test_creating_tokens_needs_the_csrf_token(world):
    client = console(world.acme_admin, enforce_csrf_checks=True)

    refused = client.post(CREATE, {"name": "sneaky"})
    csrf = csrf_token_from(client.get("/orgs/acme/settings/").content.decode())
    accepted = client.post(CREATE, {"name": "mine", "csrfmiddlewaretoken": csrf})

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["mine"]


def test_revoking_needs_the_csrf_token(world):
    services.api_token_create(user=world.acme_admin, name="keep")
    token = ApiToken.objects.get()

    response = console(world.acme_admin, enforce_csrf_checks=True).post(
        f"/orgs/acme/settings/tokens/{token.pk}/revoke", {"confirm": "yes"}
    )

    assert response.status_code == 403
    assert ApiToken.objects.exists()


def test_token_pages_are_for_members_only(world):
    assert console(world.outsider).post(CREATE, {"name": "x"}).status_code == 404
    signed_out = console().post(CREATE, {"name": "x"})
    # Answered by the sign-in page, which carries the name back to Settings (orgs.drafts).
    assert '<form method="post" action="/accounts/login/"' in signed_out.content.decode()
    assert not ApiToken.objects.exists()


def test_creating_many_tokens_quickly_is_refused_in_words(world, clock):
    clock.to_second_of_window(f"user:{world.acme_admin.pk}", 3600, 1000)  # the limit's hour, fixed per user
    client = console(world.acme_admin)
    for n in range(10):
        assert client.post(CREATE, {"name": f"t{n}"}).status_code == 200

    response = client.post(CREATE, {"name": "one too many"})

    assert response.status_code == 429
    assert ApiToken.objects.count() == 10
    # When the user's fixed hour ends, not a whole hour from now; the page says it in minutes, rounded up.
    retry_after = int(response["Retry-After"])
    assert retry_after == 2600
    assert "Too many new API tokens in a short time. Please try again in 44 minutes." in response.content.decode()
    clock.advance(retry_after - 1)
    assert client.post(CREATE, {"name": "still too many"}).status_code == 429
    clock.advance(1)
    assert client.post(CREATE, {"name": "one more"}).status_code == 200


def test_a_name_refused_for_too_many_new_tokens_is_still_in_the_box(world):
    client = console(world.acme_admin)
    for n in range(10):
        create_in_console(client, f"t{n}")

    refused = client.post(CREATE, {"name": "Nightly compliance export"}).content.decode()
    after = client.get("/orgs/acme/settings/").content.decode()

    # Typed text survives a refusal, as a question does on the insights page; a fresh page starts empty.
    assert re.search(r'<input type="text" name="name" id="id_name"[^>]* value="Nightly compliance export"', refused)
    assert "Nightly compliance export" not in after


def test_reloading_a_new_token_page_after_the_cache_claim_expired_creates_nothing(world):
    # The session's list of used forms refuses the reload on its own: the shared cache's claim is gone
    # (days later, or Redis restarted).
    client = console(world.acme_admin)
    form = {"name": "CI", "once": "form-value-1"}
    assert client.post("/orgs/acme/settings/tokens/create", form).status_code == 200
    cache.clear()

    assert client.post("/orgs/acme/settings/tokens/create", form).status_code == 409
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 1


def test_a_token_forms_one_time_value_of_any_length_is_kept_short_in_the_cache_and_the_session(world):
    # `once` comes from the request: kept whole in the shared cache's key for a day (Redis also holds the
    # sign-in guards' counters) and in the session's list of twenty, a user could park tens of kilobytes
    # per post in each.
    client = console(world.acme_admin)
    form = {"name": "CI", "once": "x" * 50_000}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = client.post(CREATE, form)
        again = client.post(CREATE, form)  # a reload: still refused

    assert first.status_code == 200 and again.status_code == 409
    assert not [w for w in caught if issubclass(w.category, CacheKeyWarning)]
    assert all(len(value) <= 64 for value in client.session["token_forms_used"])
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 1


def test_an_error_report_raised_while_authenticating_a_token_hides_the_token(world):
    # Any error inside (a database failure, a bug; here a clock that is no time) puts the frame's variables in the
    # error report, e-mailed to ADMINS or logged: the bearer token must show there as Django's stars.
    _, raw = services.api_token_create(user=world.acme_admin, name="CI")

    with pytest.raises(TypeError) as raised:
        services.api_token_authenticate(raw, now="not a time")

    frames = ExceptionReporter(None, raised.type, raised.value, raised.tb).get_traceback_frames()
    authenticating = [f for f in frames if f["filename"].endswith("orgs/services.py")]
    assert authenticating, "the report has no frame of api_token_authenticate"
    for frame in authenticating:
        assert raw not in str(frame["vars"])  # its prefix may show: Settings lists it


@contextmanager
def reported(reporter=ExceptionReporter):
    """The text and HTML of the error report of each request failing inside the block, as `reporter` writes it
    (Django's own by default, whose frames show what the filter leaves of their variables)."""
    reports = []

    def report(sender, request, **kwargs) -> None:
        made = (reporter or get_exception_reporter_class(request))(request, *sys.exc_info(), is_email=True)
        reports.append(made.get_traceback_text() + made.get_traceback_html())

    got_request_exception.connect(report)
    try:
        yield reports
    finally:
        got_request_exception.disconnect(report)


@pytest.fixture
def broken_expiry_check(monkeypatch):
    """A bug inside token authentication, once the token is read from the request."""

    def broken(self, now) -> bool:
        raise RuntimeError("a bug while checking the token")

    monkeypatch.setattr(ApiToken, "is_expired", broken)


def test_the_error_report_of_an_api_request_failing_in_token_authentication_hides_the_token(world, broken_expiry_check):
    # The report Django e-mails to ADMINS (and shows with DEBUG on) lists every frame's variables: the request's own
    # reading of its Authorization header included, not only the service's.
    _, raw = services.api_token_create(user=world.acme_admin, name="CI")

    with reported() as reports:
        client = console(raise_request_exception=False)
        response = client.get("/api/v1/orgs/acme/settings", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 500
    assert reports and "a bug while checking the token" in reports[0]  # the report of this failure
    assert raw not in reports[0] and raw[12:] not in reports[0]  # the token, nor its secret part past the prefix


def test_the_error_report_of_a_console_page_failing_after_creating_a_token_hides_the_token(world, monkeypatch):
    # The token is made and stored; drawing the page that was to show it once fails. The view, the page's context and
    # the template's frames all hold it, and the report lists them.
    listed = selectors.api_tokens_listed

    def broken(user, **kwargs):
        if ApiToken.objects.filter(user=user).exists():
            raise RuntimeError("a bug while listing the tokens")
        return listed(user, **kwargs)

    monkeypatch.setattr(selectors, "api_tokens_listed", broken)

    with reported() as reports:
        response = console(world.acme_admin, raise_request_exception=False).post(CREATE, {"name": "CI"})

    assert response.status_code == 500 and ApiToken.objects.filter(user=world.acme_admin).count() == 1
    assert reports and "a bug while listing the tokens" in reports[0]
    prefix = ApiToken.objects.get(user=world.acme_admin).prefix
    assert not re.findall(re.escape(prefix) + r"[\w-]+", reports[0])  # its prefix may show; nothing past it


def test_a_log_line_holding_a_token_shows_only_its_prefix(world, caplog):
    _, raw = services.api_token_create(user=world.acme_admin, name="CI")

    with caplog.at_level(logging.WARNING):
        logging.getLogger("opsion").warning("GET /api/v1/orgs/acme/settings?access_token=%s", raw)

    assert raw not in caplog.text and raw[12:] not in caplog.text
    assert "access_token=opsn_[redacted]" in caplog.text


def test_a_log_line_naming_a_token_by_its_listed_prefix_keeps_the_prefix(world, caplog):
    # The prefix is what Settings, admin and support name a token by: hiding it would leave nobody able to tell
    # which token a log line was about.
    token, _ = services.api_token_create(user=world.acme_admin, name="CI")

    with caplog.at_level(logging.WARNING):
        logging.getLogger("opsion").warning("token %s refused: expired", token.prefix)

    assert f"token {token.prefix} refused" in caplog.text


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_an_error_report_hides_a_token_or_key_sent_in_the_url_or_a_header_of_the_clients_own(
    world, broken_expiry_check, settings, debug
):
    # Clients put credentials where they should not: a query string (`?access_token=…`), a header of their own. The
    # report lists the request's URL, its GET parameters and every header, none of them a frame's variable; with
    # DEBUG on, the failing request's own answer is that report.
    settings.DEBUG = debug
    _, raw = services.api_token_create(user=world.acme_admin, name="CI")

    with reported(reporter=None) as reports:  # the reporter Opsion is set up with
        response = console(raise_request_exception=False).get(
            f"/api/v1/orgs/acme/settings?access_token={raw}&anthropic={GOOD_KEY}",
            headers={"Authorization": f"Bearer {raw}", "X-Api-Token": raw, "X-Anthropic-Key": GOOD_KEY},
        )

    assert response.status_code == 500
    assert reports and "a bug while checking the token" in reports[0]
    for text in (reports[0], response.content.decode()):
        assert raw not in text and raw[12:] not in text and GOOD_KEY not in text
    assert "access_token=opsn_[redacted]" in reports[0]  # where it was sent still shows


def test_revoking_all_deletes_every_token_of_the_user_expired_too_and_counts_the_working_ones(world):
    now = timezone.now()
    services.api_token_create(user=world.acme_admin, name="CI", now=now)
    services.api_token_create(user=world.acme_admin, name="Export", now=now)
    services.api_token_create(user=world.acme_admin, name="Old", expires_in_days=1, now=now - timedelta(days=3))
    services.api_token_create(user=world.acme_member, name="Theirs", now=now)

    assert services.api_tokens_revoke_all(user=world.acme_admin, now=now) == 2  # the expired one worked no more

    assert not ApiToken.objects.filter(user=world.acme_admin).exists()
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["Theirs"]
    assert services.api_tokens_revoke_all(user=world.acme_admin, now=now) == 0


def test_the_service_refuses_a_long_name_for_the_key_it_holds_not_for_its_length(world):
    # create_api_token --name given a whole pasted key and more: told what is wrong with it, as the console says.
    name = f"CI pipeline {GOOD_KEY} for the nightly build"
    assert len(name) > services.TOKEN_NAME_MAX

    with pytest.raises(services.InvalidRequest) as refused:
        services.api_token_create(user=world.acme_admin, name=name)

    assert refused.value.message == NAME_HOLDS_SECRET
    assert not ApiToken.objects.exists()
