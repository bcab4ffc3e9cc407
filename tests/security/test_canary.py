"""The standing guard: an organisation's Claude API key never leaves the server.

A canary key is planted as acme's key. Then every URL the project serves (found by walking the URL
resolver, so a new URL is guarded the day it is added) is requested by every kind of visitor, every
failure path of a query is taken on every surface, and the error pages are rendered with DEBUG on and
off — while the project's, Django's and the SDK's loggers record at DEBUG. The canary must appear in no
response body, no header, no cookie, no log record, no `dumpdata` output and no admin history.
"""

import html
import itertools
import json
import logging
import re
import uuid
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.contrib import admin
from django.contrib.admin import site
from django.contrib.admin.models import LogEntry
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.tokens import default_token_generator
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.decorators.debug import sensitive_variables

from insights import claude, keys
from insights.models import InsightQuery
from opsion.reporting import KeySafeExceptionReporterFilter, redact
from orgs import mailer, services
from orgs.models import ApiToken, ClaudeApiKey, Organisation, OutboxMail
from tests.base import CANARY_KEY, GOOD_KEY, PASSWORD, make_user, organisation_admin_form
from tests.conftest import PLATFORM_KEY
from tests.security.conftest import base_env, run_python
from tests.security.urls import DB_PASSWORD

# Any sizeable piece of the key is as bad as the whole of it.
FRAGMENTS = [CANARY_KEY, CANARY_KEY[13:45], "NEVER-LEAK-ME"]

QUERY_FAILURES = [
    "ok",
    "auth_error",
    "permission_error",
    "rate_limited",
    "billing_error",
    "credit_exhausted",
    "spend_limit",
    "server_error",
    "overloaded",
    "slow",
    "midstream_error",
    "dropped",
]


class Guard:
    """Reads every response and, at the end, every log record, for any fragment of the canary."""

    def __init__(self, logs) -> None:
        self.logs = logs
        self.responses = 0

    def check(self, label: str, response) -> bytes:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        self.responses += 1
        for fragment in FRAGMENTS:
            assert fragment.encode() not in body, f"{label}: the key is in the response body"
            for name, value in response.items():
                assert fragment not in f"{name}: {value}", f"{label}: the key is in the {name} header"
            for cookie in response.cookies.values():
                assert fragment not in cookie.OutputString(), f"{label}: the key is in a cookie"
        return body

    def check_logs(self) -> None:
        assert self.logs.texts, "nothing was logged: the log capture is not working"
        for fragment in FRAGMENTS:
            leaked = [text for text in self.logs.texts if fragment in text]
            assert not leaked, f"the key is in a log record:\n{leaked[0][:2000]}"


@pytest.fixture
def guard(world, fake_anthropic, debug_logs):
    membership = world.membership(world.acme_owner, world.acme)
    services.claude_api_key_set(membership=membership, raw_key=CANARY_KEY, ip="198.51.100.7")
    g = Guard(debug_logs)
    yield g
    g.check_logs()


def _client(user=None, **defaults) -> Client:
    client = Client(raise_request_exception=False, **defaults)
    if user is not None:
        client.force_login(user)
    return client


def _visitors(world, api_token: str) -> dict[str, Client]:
    viewer = make_user("viewer@opsion.test", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return {
        "anonymous": _client(),
        "member": _client(world.acme_member),
        "admin": _client(world.acme_admin),
        "staff": _client(viewer),
        "superuser": _client(world.staff),
        "token": _client(HTTP_AUTHORIZATION=f"Bearer {api_token}"),
    }


# --- Walking the URL resolver -------------------------------------------------------------------------


def _leaves(patterns, chain=()):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _leaves(pattern.url_patterns, (*chain, pattern))
        else:
            yield (*chain, pattern)


def _values(name: str, choices: list[str], model_admin, world) -> list[str]:
    """Real values for a URL parameter, so each URL reaches its view instead of a 404."""
    if choices:
        return choices
    if name in ("object_id", "pk") and model_admin is not None:
        obj = model_admin.model._default_manager.order_by("pk").first()
        assert obj is not None, f"create a {model_admin.model.__name__} so its admin pages are exercised"
        return [str(obj.pk)]
    known = {
        "slug": [world.acme.slug],
        "token_id": [str(ApiToken.objects.filter(user=world.acme_admin).first().pk)],
        "query_id": [str(pk) for pk in InsightQuery.objects.values_list("pk", flat=True)[:1]] or ["1"],
        "id": [str(world.acme_member.pk)],
        "object_id": [str(world.acme.pk)],
        "content_type_id": [str(ContentType.objects.get_for_model(world.acme).pk)],
        "url": ["no/such/page/"],
        # A password reset link that works (its page then redirects to the form, the token kept in the session).
        "uidb64": [urlsafe_base64_encode(force_bytes(world.acme_member.pk))],
        "token": [default_token_generator.make_token(world.acme_member)],
    }
    assert name in known, f"teach the canary guard a real value for the URL parameter `{name}`"
    return known[name]


_ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")
_REGEX_PARAM = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^)]*)\)")


def _expand(chain, world) -> list[str]:
    """Every concrete URL for one resolver leaf (several when a parameter is a choice, like admin's app_label)."""
    model_admin = getattr(chain[-1].callback, "model_admin", None)
    template, params = "", []
    for part in chain:
        pattern = part.pattern
        if isinstance(pattern, RoutePattern):
            text = str(pattern)
            for m in _ROUTE_PARAM.finditer(text):
                params.append((m["name"], []))
            template += _ROUTE_PARAM.sub(lambda m: "{" + m["name"] + "}", text)
        else:
            assert isinstance(pattern, RegexPattern), f"unexpected URL pattern {pattern!r}"
            text = pattern.regex.pattern
            for m in _REGEX_PARAM.finditer(text):
                body = m["body"]
                choices = body.split("|") if re.fullmatch(r"[\w|]+", body) else []
                params.append((m["name"], choices))
            text = _REGEX_PARAM.sub(lambda m: "{" + m["name"] + "}", text)
            template += text.removeprefix("^").removesuffix("$").removesuffix(r"\Z")
    options = [_values(name, choices, model_admin, world) for name, choices in params]
    urls = []
    for combo in itertools.product(*options):
        url = "/" + template.format(**dict(zip([n for n, _ in params], combo, strict=True)))
        route = "".join(str(part.pattern) for part in chain)
        assert resolve(url).route.replace("^", "") == route.replace("^", ""), f"{url} does not reach {route}"
        urls.append(url)
    return urls


def every_url(world) -> list[str]:
    urls = []
    for chain in _leaves(get_resolver().url_patterns):
        urls.extend(_expand(chain, world))
    return list(dict.fromkeys(urls))  # ninja adds one pattern per method for a shared path


def _admin_history(world) -> None:
    """An admin edit of acme, so admin history has an entry for the organisation holding the key."""
    data = organisation_admin_form(world.acme, name="Acme Digital Assets Ltd")
    response = _client(world.staff).post(f"/admin/orgs/organisation/{world.acme.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]


# --- The tests ----------------------------------------------------------------------------------------


def test_the_key_is_in_no_response_and_no_log_line_for_any_url_and_any_visitor(guard, world, api_token, settings):
    """GET every URL as every kind of visitor, plus the API's write error paths."""
    settings.EMAIL_CONFIGURED = True  # the password reset pages themselves, not "ask Opsion support"
    # The key replaced: its security e-mails are outbox rows, whose list and pages every visitor is crawled to.
    membership = world.membership(world.acme_admin, world.acme)
    services.claude_api_key_set(membership=membership, raw_key=CANARY_KEY, ip="198.51.100.7")
    mailed = OutboxMail.objects.order_by("pk").first()
    assert mailed is not None and mailed.subject == "Claude API key replaced for Acme Digital Assets"
    # The settings page's "invalid" state too.
    ClaudeApiKey.objects.filter(organisation=world.acme).update(status="invalid")
    Group.objects.create(name="Support")
    _admin_history(world)
    assert InsightQuery.objects.count() == 0
    _client(world.acme_admin).post("/api/v1/orgs/acme/insights/queries", {"query": "Seed a row"}, "application/json")

    urls = every_url(world)
    assert "/api/v1/openapi.json" in urls and "/api/v1/docs" in urls
    assert "/api/v1/orgs" in urls  # listOrganisations, an operation naming no organisation
    assert f"/admin/orgs/organisation/{world.acme.pk}/change/" in urls
    assert f"/admin/orgs/organisation/{world.acme.pk}/history/" in urls
    # The organisations list sorted by its key column, with the filter's counts and each choice that checks the keys.
    column = site._registry[Organisation].list_display.index("claude_api_key_state") + 1  # after the checkbox
    urls += [f"/admin/orgs/organisation/?o={column}&_facets=1&claude_api_key={c}" for c in ("", "in_use", "unreadable")]
    assert f"/admin/orgs/outboxmail/{mailed.pk}/change/" in urls
    urls += [f"/admin/orgs/outboxmail/?_facets=1&state={s}&q=acme" for s in ("waiting", "sent", "failing", "given_up")]
    for role, client in _visitors(world, api_token).items():
        for url in urls:
            if role == "token" and not url.startswith("/api/"):
                continue  # a token is only ever read by the API
            response = client.get(url)
            guard.check(f"GET {url} as {role}", response)
            assert response.status_code < 500, f"GET {url} as {role}: {response.status_code}"

    key_url = "/api/v1/orgs/{}/settings/claude-api-key"
    writes = [
        (world.acme_admin, "put", "acme", {"apiKey": CANARY_KEY + "!"}),  # malformed
        (world.acme_admin, "put", "acme", {"apiKey": [CANARY_KEY]}),  # wrong type
        (world.acme_admin, "put", "acme", {"apiKey": CANARY_KEY + " " + CANARY_KEY}),  # a space inside
        (world.acme_member, "put", "acme", {"apiKey": CANARY_KEY}),  # not an Owner or Admin
        (world.acme_member, "delete", "acme", None),
        (world.globex_admin, "put", "globex", {"apiKey": CANARY_KEY}),  # plan without BYOM
        (world.globex_admin, "put", "acme", {"apiKey": CANARY_KEY}),  # someone else's organisation
    ]
    for user, method, slug, body in writes:
        client = _client(user)
        response = getattr(client, method)(key_url.format(slug), json.dumps(body), "application/json")
        guard.check(f"{method.upper()} key for {slug} as {user}", response)
        assert 400 <= response.status_code < 500, (user, method, slug, response.status_code)
    admin = _client(world.acme_admin)
    response = admin.post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY + "\u0430"})
    assert response.status_code == 400
    guard.check("console save of a malformed key", response)
    assert guard.responses > 300


def _with_the_key_typed_in(url: str) -> list[str]:
    """`url` with the canary where someone pasting into the address bar might put it: after the address, in the
    organisation's place, and as the whole path."""
    typed = [f"{url.split('?')[0].rstrip('/')}/{CANARY_KEY}", f"/{CANARY_KEY}/"]
    if "/acme/" in url:
        typed.append(url.replace("/acme/", f"/{CANARY_KEY}/"))
    return typed


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_the_key_is_in_no_response_and_no_log_line_when_typed_into_any_address(
    guard, world, api_token, settings, debug
):
    """A key pasted into the address bar (`/orgs/acme/sk-ant-…`, or in the slug's place) came back in the sign-in
    redirect's `next`, in a missing slash's redirect, in admin's own sign-in redirect and on the DEBUG 404 page. Every
    address the project serves, with the key typed into its path, by every visitor: refused, echoing nothing."""
    settings.DEBUG, settings.EMAIL_CONFIGURED = debug, True
    # Rows for every admin page to walk: a replaced key's e-mail, a group, a query.
    services.claude_api_key_set(membership=world.membership(world.acme_admin, world.acme), raw_key=CANARY_KEY, ip=None)
    Group.objects.create(name="Support")
    _client(world.acme_admin).post("/api/v1/orgs/acme/insights/queries", {"query": "Seed a row"}, "application/json")
    urls = list(dict.fromkeys(typed for url in every_url(world) for typed in _with_the_key_typed_in(url)))
    urls += [f"/accounts/login/?next=/orgs/{CANARY_KEY}/settings/", f"/static/{CANARY_KEY}.css"]
    for role, client in _visitors(world, api_token).items():
        for url in urls:
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                guard.check(f"{method.upper()} {url} as {role}", response)
                assert response.status_code == 400, f"{method.upper()} {url} as {role}: {response.status_code}"


@pytest.mark.parametrize("surface", ["api", "console", "sse"])
def test_the_key_is_in_no_response_and_no_log_line_when_a_query_fails(
    guard, world, fake_anthropic, settings, monkeypatch, surface
):
    """Every way Anthropic can fail, plus a refused connection, on the API, the console and the stream."""
    settings.ANTHROPIC_TIMEOUT_SECONDS = 0.3
    monkeypatch.setattr(fake_anthropic, "delay", 0.6)
    client = _client(world.acme_member)
    for behaviour in [*QUERY_FAILURES, "connection_refused"]:
        if behaviour == "connection_refused":
            settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
        else:
            fake_anthropic.behave(CANARY_KEY, behaviour)
        label = f"{surface} query, Anthropic {behaviour}"
        if surface == "api":
            response = client.post("/api/v1/orgs/acme/insights/queries", {"query": label}, "application/json")
        else:
            accept = "text/event-stream" if surface == "sse" else "text/html"
            response = client.post("/orgs/acme/insights/", {"query": label}, HTTP_ACCEPT=accept)
        guard.check(label, response)
        assert response.status_code < 500 or response.status_code == 503, (label, response.status_code)
    assert CANARY_KEY in fake_anthropic.keys_used  # the queries really ran on the planted key
    assert InsightQuery.objects.filter(organisation=world.acme).count() == len(QUERY_FAILURES) + 1


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_the_key_is_in_no_error_page(guard, world, settings, debug):
    """400, 403, 404 and 500 pages, the technical ones with DEBUG on and the templates with it off."""
    settings.DEBUG = debug
    admin = _client(world.acme_admin)
    oversize = {"api_key": CANARY_KEY * 1000}
    pages = {
        "404 unknown page": admin.get("/no/such/page/"),
        "404 unknown API path": admin.get("/api/v1/no/such/thing"),
        "404 other organisation": admin.get("/orgs/globex/settings/"),
        "400 bad host": admin.get("/orgs/acme/settings/", HTTP_HOST="evil.example"),
        "400 oversize console save": admin.post("/orgs/acme/settings/claude-api-key/save", oversize),
        "413 oversize API save": admin.put(
            "/api/v1/orgs/acme/settings/claude-api-key", json.dumps({"apiKey": oversize["api_key"]}), "application/json"
        ),
        "403 CSRF": _client(world.acme_admin, enforce_csrf_checks=True).post(
            "/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY}
        ),
        "403 staff without permission": _client(make_user("nobody@opsion.test", is_staff=True)).get(
            f"/admin/orgs/organisation/{world.acme.pk}/change/"
        ),
    }
    # An operator's mistyped ANTHROPIC_BASE_URL fails inside the SDK, in frames holding the key as a local
    # variable: it must end as "unavailable", not as an error page printing those frames.
    settings.ANTHROPIC_BASE_URL = "http://[::1"
    query = {"query": "What is a CASP?"}
    pages["503 bad base URL, API"] = admin.post("/api/v1/orgs/acme/insights/queries", query, "application/json")
    pages["503 bad base URL, console"] = admin.post("/orgs/acme/insights/", query)
    pages["200 bad base URL, stream"] = admin.post("/orgs/acme/insights/", query, HTTP_ACCEPT="text/event-stream")
    # A view failing with the key revealed in one frame and sealed in another.
    settings.ROOT_URLCONF = "tests.security.urls"
    pages["500 in a view holding the key"] = admin.get("/boom/acme/")

    bodies = {}
    for label, response in pages.items():
        bodies[label] = guard.check(label, response)
        assert response.status_code == int(label[:3]), (label, response.status_code)
    assert b'"code": "insights_unavailable"' in bodies["503 bad base URL, API"]
    assert b"event: error" in bodies["200 bad base URL, stream"]
    assert b"RuntimeError" in bodies["500 in a view holding the key"] or not debug  # the technical page


@pytest.mark.parametrize("accept", ["text/html", "text/plain"], ids=["html-page", "text-page"])
def test_a_key_sent_in_an_innocently_named_header_is_in_no_technical_error_page(world, settings, accept):
    """The filter hides META values by name (KEY, TOKEN…) only: a key pasted into a header called anything else is
    hidden by the reporter's pass over the whole report, the HTML page and the text one (a client not asking for
    HTML, the report e-mailed to ADMINS) alike."""
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.security.urls"
    services.claude_api_key_set(membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None)

    response = _client(world.acme_admin).get("/boom/acme/", HTTP_ACCEPT=accept, HTTP_X_CLIENT_NOTE=CANARY_KEY)

    body = response.content.decode()
    assert response.status_code == 500
    assert "RuntimeError" in body and "HTTP_X_CLIENT_NOTE" in body  # the technical page, listing the header
    for fragment in FRAGMENTS:
        assert fragment not in body


def test_passwords_inside_urls_and_connection_parameters_are_in_no_error_page(world, settings):
    """Django hides values by name (KEY, PASS…); these hide inside innocently named URLs, or in a
    driver's frame. With DEBUG on the technical page shows settings, request.META and locals."""
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.security.urls"
    settings.REDIS_URL = f"redis://:{DB_PASSWORD}@cache.internal:6379/0"
    settings.CACHES = {**settings.CACHES, "reports": {"BACKEND": "x", "LOCATION": settings.REDIS_URL}}
    client = Client(raise_request_exception=False)

    # runserver copies the process environment, DATABASE_URL included, into request.META.
    response = client.get("/boom-with-credentials/", DATABASE_URL=f"postgres://opsion:{DB_PASSWORD}@db/opsion")

    assert response.status_code == 500
    page = response.content.decode()
    assert "RuntimeError" in page and "REDIS_URL" in page and "DATABASE_URL" in page and "conn_params" in page
    assert "redis://:********************@cache.internal:6379/0" in page
    assert DB_PASSWORD not in page


def test_the_mail_servers_password_is_in_no_error_page(world, settings):
    """EMAIL_URL carries the SMTP password inside a URL (runserver copies it into request.META), and django-environ
    sets it as EMAIL_HOST_PASSWORD. A generated password may hold an "@" nobody percent-encoded: urllib splits
    user information at the last "@", so that is how much must be hidden."""
    mail_password = "mail-p@ssword-canary-51d0"
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.security.urls"
    settings.EMAIL_HOST_PASSWORD = mail_password
    email_url = f"smtp+tls://opsion%40mail.example:{mail_password}@smtp.mail.example:587"

    response = Client(raise_request_exception=False).get("/boom-with-credentials/", EMAIL_URL=email_url)

    assert response.status_code == 500
    page = response.content.decode()
    assert "EMAIL_URL" in page and "EMAIL_HOST_PASSWORD" in page
    assert "smtp+tls://opsion%40mail.example:********************@smtp.mail.example:587" in page
    assert "mail-p" not in page and "ssword-canary" not in page
    # A user name holding an "@" (some mail services' user names are addresses) hides the password too.
    hidden = KeySafeExceptionReporterFilter().cleanse_setting("URL", "smtp://apikey@mail.example:pw-canary@smtp")
    assert hidden == "smtp://apikey@mail.example:********************@smtp"


def test_posted_secrets_are_in_no_error_page_when_the_view_behind_the_form_fails(world, settings, monkeypatch):
    """With DEBUG on the technical page lists the request's POST: the key and the password must show
    as hidden (by name), not as typed, when something fails after they arrive."""
    settings.DEBUG = True
    password = "Correct-Horse-" + uuid.uuid4().hex  # built, so the test's own source shown on the page lacks it
    admin = Client(raise_request_exception=False)
    admin.force_login(world.acme_admin)
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]  # an operator's mistake: saving fails mid-view
    saved = admin.post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY})

    def unreachable_user_store(*args, **kwargs):
        raise RuntimeError("the user store is unreachable")

    monkeypatch.setattr(auth_forms, "authenticate", unreachable_user_store)
    signed_in = Client(raise_request_exception=False).post(
        "/accounts/login/", {"username": "owner@acme.test", "password": password}
    )

    for response, field, secret in ((saved, "api_key", CANARY_KEY), (signed_in, "password", password)):
        page = response.content.decode()
        assert response.status_code == 500 and "POST" in page and field in page  # the technical page, POST listed
        for fragment in (secret, secret[-12:]):
            assert fragment not in page


def test_passwords_typed_to_change_or_reset_one_are_in_no_error_page_when_checking_them_fails(
    world, settings, monkeypatch
):
    """The console's password change and the reset link's page take passwords too: the technical page lists them
    hidden, by name, when something fails once they arrived (here a password validator's service)."""
    settings.DEBUG = True
    settings.EMAIL_CONFIGURED = True
    old = "Old-Horse-" + uuid.uuid4().hex
    new = "New-Horse-" + uuid.uuid4().hex  # built, so the test's own source shown on the page lacks them

    def unreachable_validator(password, user=None, password_validators=None):
        raise RuntimeError("the password validator's service is unreachable")

    monkeypatch.setattr(auth_forms.password_validation, "validate_password", unreachable_validator)
    changer = Client(raise_request_exception=False)
    changer.force_login(world.acme_member)
    changed = changer.post("/accounts/password/", {"old_password": old, "new_password1": new, "new_password2": new})
    resetter = Client(raise_request_exception=False)
    uid, token = (
        urlsafe_base64_encode(force_bytes(world.acme_owner.pk)),
        default_token_generator.make_token(world.acme_owner),
    )
    form_url = resetter.get(f"/accounts/password/reset/{uid}/{token}/")["Location"]  # the token moves to the session
    reset = resetter.post(form_url, {"new_password1": new, "new_password2": new})

    for response in (changed, reset):
        page = response.content.decode()
        assert response.status_code == 500 and "POST" in page and "new_password1" in page  # the technical page
        for secret in (old, new):
            assert secret not in page and secret[-12:] not in page


def test_a_password_typed_to_confirm_a_new_token_is_in_no_error_page_when_checking_it_fails(
    world, settings, monkeypatch
):
    """Past the recent-authentication window, the token form takes the password too: hidden, by name, on the
    technical page when checking it fails (here the user's password check, whose own frame hides its locals as
    Django's hashers do not: this is about the form's and the view's frames)."""
    settings.DEBUG = True
    settings.RECENT_AUTHENTICATION_SECONDS = 0  # always asked
    typed = "Typed-Horse-" + uuid.uuid4().hex

    @sensitive_variables()
    def hasher_fails(self, raw_password):
        raise RuntimeError("the password hasher failed")

    monkeypatch.setattr(world.acme_admin.__class__, "check_password", hasher_fails)
    client = Client(raise_request_exception=False)
    client.force_login(world.acme_admin)
    response = client.post("/orgs/acme/settings/tokens/create", {"name": "Nightly", "password": typed})

    page = response.content.decode()
    assert response.status_code == 500 and "POST" in page and "password" in page  # the technical page
    assert typed not in page and typed[-12:] not in page
    assert not ApiToken.objects.exists()


def test_dumpdata_and_admin_history_never_contain_the_key(guard, world):
    _admin_history(world)
    services.claude_api_key_set(membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None)
    services.claude_api_key_set(membership=world.membership(world.acme_admin, world.acme), raw_key=CANARY_KEY, ip=None)
    out = StringIO()
    call_command("dumpdata", stdout=out)
    dump = out.getvalue()
    assert '"model": "orgs.claudeapikey"' in dump  # the row is dumped, as ciphertext
    for fragment in FRAGMENTS:
        assert fragment not in dump
    entries = list(LogEntry.objects.all())
    assert entries, "the admin edit left no history"
    for entry in entries:
        for fragment in FRAGMENTS:
            assert fragment not in entry.change_message and fragment not in entry.object_repr
    # The key model stays out of admin altogether, so no form or change message can ever hold it.
    assert not admin.site.is_registered(ClaudeApiKey)


def test_the_encryption_keys_are_in_no_error_page(world, acme_key, settings):
    """A frame building the cipher holds every FIELD_ENCRYPTION_KEYS entry, the ones opening every stored key too.
    (Start-up refuses a malformed entry; this is what the page would show if one got past it.)"""
    valid = settings.FIELD_ENCRYPTION_KEYS[0]
    typo = Fernet.generate_key().decode().rstrip("=")
    settings.DEBUG = True
    settings.FIELD_ENCRYPTION_KEYS = [typo, valid]
    settings.ROOT_URLCONF = "tests.security.urls"

    page = _client(world.acme_admin).get("/boom/acme/")

    assert page.status_code == 500 and b"ImproperlyConfigured" in page.content
    assert valid.encode() not in page.content and typo.encode() not in page.content


# Logged the way an HTTP library might: a refused header, and an exception quoting the request.
THIRD_PARTY_LOGGING = """
import logging
from django.conf import settings
log = logging.getLogger("some.http.library")
log.debug("refused header %s", "Authorization: Bearer " + settings.ANTHROPIC_API_KEY)
log.debug("using %s", settings.FIELD_ENCRYPTION_KEYS[0])
try:
    raise ValueError("Illegal header value b'Bearer %s'" % settings.ANTHROPIC_API_KEY)
except ValueError:
    log.exception("send failed")
log.warning("an org key %s", "sk-ant-api03-" + "Z" * 40)
print("done")
"""


def test_a_log_line_holding_a_key_is_written_redacted_whoever_logs_it():
    fernet_key = Fernet.generate_key().decode()
    env = base_env(
        DEBUG="0",
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEYS=fernet_key,
        ANTHROPIC_API_KEY=PLATFORM_KEY,
        LOG_LEVEL="DEBUG",
    )

    result = run_python(["manage.py", "shell", "-c", THIRD_PARTY_LOGGING], env)

    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]
    logged = result.stderr
    assert "refused header Authorization: Bearer sk-ant-[redacted]" in logged, logged
    assert "send failed" in logged and "ValueError: Illegal header value" in logged, logged
    assert "an org key sk-ant-[redacted]" in logged, logged
    assert PLATFORM_KEY not in logged and fernet_key not in logged and "Z" * 40 not in logged, logged


# What `make run` (DEBUG on, runserver) logs for a request whose URL or error text holds a key: Django's own
# handlers write these, not ours.
DJANGO_OWN_LOGGERS = """
import logging
from django.conf import settings
key = settings.ANTHROPIC_API_KEY
logging.getLogger("django.request").warning("Not Found: /%s", key)
logging.getLogger("django.server").info('"GET /?apiKey=%s HTTP/1.1" 401 132', key)
logging.getLogger("some.library").warning("%d items", "three")  # a library's malformed call
print("done")
"""


def test_djangos_own_log_handlers_write_keys_redacted_and_a_malformed_call_raises_nothing():
    env = base_env(
        DEBUG="1",
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ANTHROPIC_API_KEY=PLATFORM_KEY,
    )

    result = run_python(["manage.py", "shell", "-c", DJANGO_OWN_LOGGERS], env)

    assert "done" in result.stdout, result.stderr[-2000:]
    assert "Not Found: /sk-ant-[redacted]" in result.stderr and "apiKey=sk-ant-[redacted]" in result.stderr
    assert "unformattable log call: '%d items' ('three',)" in result.stderr
    assert PLATFORM_KEY not in result.stderr, result.stderr


def test_a_malformed_exc_info_never_raises_into_the_caller(caplog):
    # The standard library reports a bad exc_info through Handler.handleError and returns; so must the redaction.
    logging.getLogger("some.library").error("failed", exc_info=(ValueError, "not an exception", None))

    assert "unformattable exc_info" in caplog.records[-1].exc_text


@pytest.mark.parametrize(
    "msg, args",
    [
        ("using key %.12s…", (CANARY_KEY,)),  # a prefix in the message, the whole key in the arguments
        ("saved for %(org)s", ({"org": "acme", "key": CANARY_KEY},)),  # a mapping, one of its values not printed
        # gunicorn's access log: its arguments hold every request header and the WSGI environ, whatever it prints.
        ('%(h)s "%(r)s"', ({"h": "127.0.0.1", "r": "GET / HTTP/1.1", "{x-api-key}i": CANARY_KEY},)),
    ],
    ids=["precision", "unused-mapping-value", "gunicorn-access-atoms"],
)
def test_a_key_in_a_log_calls_arguments_is_redacted_even_when_its_message_does_not_print_it(caplog, msg, args):
    # Handlers other than a plain formatter read a record's arguments as they are (an error tracker sends them as the
    # message's parameters): what the message leaves out of the key must not stay behind in them.
    logging.getLogger("some.library").warning(msg, *args)

    record = caplog.records[-1]
    assert record.getMessage() in ("using key sk-ant-api03…", "saved for acme", '127.0.0.1 "GET / HTTP/1.1"')
    for fragment in FRAGMENTS:
        assert fragment not in repr(record.args) and fragment not in record.getMessage()


@pytest.mark.parametrize(
    "encoded",
    [CANARY_KEY.replace("-", "%2D"), CANARY_KEY.replace("-", "%2d"), "%73%6B-ant-" + CANARY_KEY[7:]],
    ids=["upper-hex", "lower-hex", "every-letter"],
)
def test_a_percent_encoded_key_in_a_log_line_is_redacted_as_the_server_would_decode_it(caplog, encoded):
    # gunicorn's access log writes the request line (%(r)s) and query string (%(q)s) as sent: a key typed encoded
    # into an address reached it whole, though the path Django reads (decoded) is refused.
    logging.getLogger("gunicorn.access").info(
        '%(h)s "%(r)s" %(s)s', {"h": "h", "r": f"GET /x/{encoded} HTTP/1.1", "s": 400}
    )

    message = caplog.records[-1].getMessage()
    assert message == 'h "GET /x/sk-ant-[redacted] HTTP/1.1" 400'
    assert caplog.records[-1].args is None


def test_decoding_a_log_line_to_redact_its_key_writes_no_control_character_it_was_sent_encoded(caplog):
    # The access log writes the request line as sent, so an encoded line break or escape stays one there. Decoded
    # whole to blank the key beside it, the line forged a second one (and a terminal's colours) into the log.
    line = f'GET /x/{CANARY_KEY.replace("-", "%2D")}%0D%0A1.2.3.4 "GET /forged HTTP/1.1" 200%1B[2J HTTP/1.1'

    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', {"h": "h", "r": line, "s": 400})

    message = caplog.records[-1].getMessage()
    assert message == 'h "GET /x/sk-ant-[redacted]%0D%0A1.2.3.4 "GET /forged HTTP/1.1" 200%1B[2J HTTP/1.1" 400'


def test_a_key_in_the_source_line_a_log_calls_stack_shows_is_redacted(caplog, tmp_path, monkeypatch):
    # stack_info=True prints each frame's source line: a script or module holding a key literal (a developer's
    # scratch file, a hard-coded test key) puts it in the log line unless the stack is redacted too.
    (tmp_path / "scratch_with_a_key.py").write_text(
        "import logging\n\n\ndef call():\n"
        f"    logging.getLogger('some.library').warning('calling', stack_info=True); key = '{CANARY_KEY}'\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    from scratch_with_a_key import call

    call()

    assert "scratch_with_a_key.py" in caplog.text  # the stack was written
    for fragment in FRAGMENTS:
        assert fragment not in caplog.text


# A platform-key query through the real SDK and its HTTP stack, every logger at DEBUG.
PLATFORM_QUERY = """
from insights import claude, keys
for _ in claude.stream_answer(secret=keys.PlatformKey(), query="What is MiCAR?"):
    pass
print("answered")
"""


def test_a_platform_key_mounted_with_a_newline_works_and_stays_out_of_debug_logs(fake_anthropic):
    # A key mounted from a secret file usually ends in a newline; no HTTP header may carry one, and the
    # HTTP stack would log the refused header whole.
    env = base_env(
        DEBUG="0",
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ANTHROPIC_API_KEY=PLATFORM_KEY + "\n",
        ANTHROPIC_BASE_URL=fake_anthropic.base_url,
        LOG_LEVEL="DEBUG",
    )

    result = run_python(["manage.py", "shell", "-c", PLATFORM_QUERY], env)

    assert "answered" in result.stdout, result.stderr[-2000:]
    assert fake_anthropic.requests[-1]["key"] == PLATFORM_KEY
    assert PLATFORM_KEY not in result.stdout + result.stderr


def test_an_error_page_whose_request_holds_an_encoded_key_decodes_no_markup_into_its_html(world, settings):
    # The report's HTML lists the request's headers as sent, a Referer's address among them. Decoded whole to blank
    # the key there, its other escapes became markup: a %3Cscript%3E ran in the DEBUG page, and stood in the HTML
    # e-mail ADMINS are sent.
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.security.urls"
    markup = "%3Cscript%3Ealert(1)%3C/script%3E%22%27%26"
    referer = f"https://elsewhere.example/?a={markup}&b={CANARY_KEY.replace('-', '%2D')}"

    response = Client(raise_request_exception=False).get("/boom-with-credentials/", HTTP_REFERER=referer)

    assert response.status_code == 500
    page = response.content.decode()
    assert "<script>alert(1)" not in page and "alert(1)</script>" not in page
    assert markup in page  # as sent, as on any other error page
    assert CANARY_KEY[13:45] not in page and CANARY_KEY.replace("-", "%2D")[15:45] not in page


def test_error_reports_hide_the_platform_key_and_the_encryption_keys_by_value_whatever_their_form(settings):
    # An operator's platform key need not look like sk-ant-… (a proxy's token, say): the pattern cannot catch it.
    settings.ANTHROPIC_API_KEY = "platform-canary-of-another-form-0123456789"
    reporter = KeySafeExceptionReporterFilter()
    request = RequestFactory().get("/")

    for secret in (settings.ANTHROPIC_API_KEY, settings.FIELD_ENCRYPTION_KEYS[0]):
        assert reporter.cleanse_special_types(request, f"headers: {secret}") == reporter.cleansed_substitute
        assert redact(f"headers: {secret}") == "headers: [redacted]"
    assert reporter.cleanse_special_types(request, "nothing secret here") == "nothing secret here"


def test_the_streaming_generator_holds_no_local_that_shows_the_key(world, acme_key, fake_anthropic):
    # Django's error reports show every frame's locals and cannot filter a generator's (sensitive_variables
    # wraps only ordinary functions): the plain key must live only in `claude._client`'s frame and the client.
    answer = claude.stream_answer(secret=keys.resolve(world.acme).secret, query="What is MiCAR?")
    next(answer)  # suspended mid-answer, the SDK's stream open

    shown = {name: repr(value) for name, value in answer.gi_frame.f_locals.items()}
    answer.close()

    assert "client" in shown  # the frame looked at is the one talking to Anthropic
    assert not [name for name, text in shown.items() if GOOD_KEY in text], shown


def test_the_key_is_in_no_answer_and_no_e_mail_when_the_password_and_admin_forms_are_posted(
    guard, world, settings, mailoutbox
):
    """The crawl above only GETs: the forms added since (password change and reset, admin's Memberships page and
    its refusals, the query log's refused deletions) are posted here, accepted and refused, as acme's Owner and
    Admin and as staff, with acme's key stored. A reset e-mail leaves the server too: it must not carry the key."""
    settings.EMAIL_CONFIGURED = True
    owner = world.acme_owner
    new = "a-New-passw0rd-for-acme"
    posted = []

    changer = _client(owner)
    for data in (
        {"old_password": "wrong", "new_password1": new, "new_password2": new},
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new + "x"},
        {"old_password": PASSWORD, "new_password1": "12345678", "new_password2": "12345678"},
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    ):
        posted.append(("password change", changer.post("/accounts/password/", data, follow=True)))

    resetter = _client()
    for i in range(6):  # the sixth is refused by the address's limit
        posted.append(("reset request", resetter.post("/accounts/password/reset/", {"email": owner.email})))
    assert mailer.wait(timeout=10)  # the e-mails go on the mail thread
    assert posted[-1][1].status_code == 429 and len(mailoutbox) == 5
    uid, token = (
        urlsafe_base64_encode(force_bytes(world.acme_admin.pk)),
        default_token_generator.make_token(world.acme_admin),
    )
    form_url = resetter.get(f"/accounts/password/reset/{uid}/{token}/")["Location"]
    posted.append(("reset mismatch", resetter.post(form_url, {"new_password1": new, "new_password2": new + "x"})))
    posted.append(("reset", resetter.post(form_url, {"new_password1": new, "new_password2": new}, follow=True)))

    staff = _client(world.staff)
    memberships = "/admin/orgs/membership/"
    world.membership(world.acme_admin, world.acme).delete()
    last = world.membership(owner, world.acme)
    newcomer = make_user("new@acme.test")
    for label, url, data in (
        ("demote the last manager", f"{memberships}{last.pk}/change/", {"role": "member"}),
        ("delete the last manager", f"{memberships}{last.pk}/delete/", {"post": "yes"}),
        ("add a member twice", f"{memberships}add/", {"user": world.acme_member.pk, "organisation": world.acme.pk}),
        ("add a member", f"{memberships}add/", {"user": newcomer.pk, "organisation": world.acme.pk, "role": "admin"}),
    ):
        posted.append((label, staff.post(url, data | {"role": data.get("role", "member")}, follow=True)))
    query = InsightQuery.objects.create(organisation=world.acme, user=owner, key_source="organisation", query="q")
    queries = "/admin/insights/insightquery/"
    posted.append(("delete a counted query", staff.post(f"{queries}{query.pk}/delete/", {"post": "yes"})))
    bulk = {"action": "delete_selected", "_selected_action": [query.pk], "post": "yes"}
    posted.append(("bulk-delete a counted query", staff.post(queries, bulk, follow=True)))

    for label, response in posted:
        guard.check(f"POST {label}", response)
    # Each form was answered as meant (refusals re-shown or redirected with why), not failed early.
    assert [response.status_code for _, response in posted] == [200] * 4 + [302] * 5 + [429] + [200] * 6 + [403, 200]
    assert "without an active Owner or Admin" in html.unescape(posted[-6][1].content.decode())
    assert "already exists" in posted[-4][1].content.decode()
    assert "inside the rolling window" in posted[-1][1].content.decode()
    for message in mailoutbox:
        for fragment in FRAGMENTS:
            assert fragment not in message.subject and fragment not in message.body


@pytest.mark.django_db(transaction=True)  # each change committed, as in production, and mailed from its rows
def test_the_key_is_in_no_security_e_mail_of_its_saves_and_removals(guard, world, settings, mailoutbox):
    """Every save and removal of the key is mailed to the organisation's Owners and Admins (orgs.notifications),
    from the console, the API and admin, first saves and replacements, beside a password change and a new token:
    no fragment of the key in any of them, headers included, nor in the answers and log lines around them."""
    settings.EMAIL_CONFIGURED = True
    owner, admin, staff = _client(world.acme_owner), _client(world.acme_admin), _client(world.staff)
    api = _client(HTTP_AUTHORIZATION=f"Bearer {services.api_token_create(user=world.acme_admin, name='canary')[1]}")
    key_url, console_url = "/api/v1/orgs/acme/settings/claude-api-key", "/orgs/acme/settings/claude-api-key/"
    posted = []
    posted.append(("console removal", admin.post(console_url + "remove", {"confirm": "yes"})))
    posted.append(("API first save", api.put(key_url, json.dumps({"apiKey": CANARY_KEY}), "application/json")))
    posted.append(("console replacement", owner.post(console_url + "save", {"api_key": CANARY_KEY})))
    posted.append(("API removal", api.delete(key_url)))
    posted.append(("console first save", admin.post(console_url + "save", {"api_key": CANARY_KEY})))
    remove = {"action": "remove_claude_api_key", "_selected_action": [world.acme.pk], "confirm": "yes"}
    posted.append(("staff removal", staff.post("/admin/orgs/organisation/", remove)))
    new = "a-New-passw0rd-for-acme"
    changed = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    posted.append(("password change", owner.post("/accounts/password/", changed)))
    posted.append(("new token", admin.post("/orgs/acme/settings/tokens/create", {"name": "canary token"})))
    assert mailer.wait(timeout=10)

    for label, response in posted:
        guard.check(f"{label} (mailed)", response)
    assert [response.status_code for _, response in posted] == [302, 200, 302, 200, 302, 302, 302, 200]
    # Six key changes to acme's Owner and Admin, one password change, two tokens (the API's, the console's).
    assert len(mailoutbox) == 6 * 2 + 1 + 2, [message.subject for message in mailoutbox]
    for message in mailoutbox:
        wire = message.message().as_string()
        for fragment in FRAGMENTS:
            assert fragment not in wire and fragment not in message.body, message.subject


@pytest.mark.parametrize(
    "key, redacted",
    [("sk-ant-api03-" + "zZ09y_-" * 8, "sk-ant-[redacted]"), ("opsn_" + "Az9-_" * 9, "opsn_[redacted]")],
    ids=["anthropic-key", "api-token"],
)
def test_a_key_every_character_of_which_is_percent_encoded_is_redacted_in_a_log_line(caplog, key, redacted):
    # Each character a key or token is written in may be typed escaped into an address (%30 for "0", %7A for "z"):
    # every one is decoded to find it, or the access log would keep it whole.
    encoded = "".join(f"%{ord(character):02X}" for character in key)
    request_line = f"GET /x/{encoded} HTTP/1.1"

    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', {"h": "h", "r": request_line, "s": 400})

    assert caplog.records[-1].getMessage() == f'h "GET /x/{redacted} HTTP/1.1" 400'


def test_decoding_a_log_line_to_redact_its_key_leaves_a_delete_a_space_and_a_backtick_as_sent(caplog):
    # DEL (%7F) is a control character as a line break is; a space would split the log line's field in two, and a
    # backtick is markup in an error report's HTML: none is in any key, so each stays escaped as it was sent.
    line = f"GET /x/{CANARY_KEY.replace('-', '%2D')}?a=%7F%20b%60c HTTP/1.1"

    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', {"h": "h", "r": line, "s": 400})

    message = caplog.records[-1].getMessage()
    assert message == 'h "GET /x/sk-ant-[redacted]?a=%7F%20b%60c HTTP/1.1" 400'


def test_a_log_line_without_a_key_keeps_its_percent_escapes_as_sent(caplog):
    # Only a line holding an encoded key is decoded to blank it: any other keeps the request line as sent.
    line = "GET /search?q=%41%2D%7Efoo%2Fbar HTTP/1.1"

    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', {"h": "h", "r": line, "s": 200})

    assert caplog.records[-1].getMessage() == f'h "{line}" 200'


ADDRESS_HOLDS_SECRET = (
    "That looks like a Claude API key or an API token, not an e-mail address: it was not kept. Enter the e-mail "
    "address you sign in with."
)


@pytest.mark.parametrize(
    "url, box",
    [("/accounts/login/", "username"), ("/accounts/password/reset/", "email")],
    ids=["sign-in", "reset request"],
)
@pytest.mark.parametrize(
    "pasted", [CANARY_KEY, f"  {CANARY_KEY}\n", "opsn_" + "A1b2C3d4" * 5], ids=["key", "spaced", "token"]
)
def test_a_key_pasted_into_an_address_box_is_not_sent_back_even_to_its_typist(db, settings, url, box, pasted):
    # The wrong clipboard, in a browser that does not check the address (no JavaScript, an old one): the refusal
    # says what happened, and the box comes back empty, as a token's name holding one does (Settings).
    settings.EMAIL_CONFIGURED = True

    response = Client().post(url, {box: pasted, "password": "anything"})

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert pasted.strip()[8:] not in page
    assert ADDRESS_HOLDS_SECRET in page
    assert re.search(rf'<input type="email" name="{box}"[^>]*\bvalue=""', page)
