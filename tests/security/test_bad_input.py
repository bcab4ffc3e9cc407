"""Bad input, by hand: every case gets a clear 4xx in our JSON error shape and changes nothing."""

import json
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.http import HttpResponseNotAllowed
from django.test import Client

from insights.models import InsightQuery
from opsion.middleware import ApiHeadMiddleware
from orgs import drafts, services
from orgs.models import ApiToken, AuditEvent, ClaudeApiKey
from tests.base import GOOD_KEY, OTHER_KEY
from tests.clients import console
from tests.security.conftest import json_error

KEY = "/api/v1/orgs/{}/settings/claude-api-key"
QUERIES = "/api/v1/orgs/{}/insights/queries"
LOOKALIKE_KEY = "sk-\u0430nt-" + OTHER_KEY[7:]  # a Cyrillic "а" where the Latin "a" belongs
ONE_MEGABYTE_KEY = "sk-ant-" + "A" * (1024 * 1024)


def _state() -> tuple:
    """Everything a refused request must leave as it was."""
    keys = sorted((k.organisation_id, k.secret.ciphertext, k.status) for k in ClaudeApiKey.objects.all())
    return keys, InsightQuery.objects.count(), AuditEvent.objects.count(), ApiToken.objects.count()


@pytest.fixture
def before(world, fake_anthropic, api_token):
    """acme and initech already have keys, so a refused save must not overwrite one."""
    services.claude_api_key_set(membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None)
    services.claude_api_key_set(
        membership=world.membership(world.initech_admin, world.initech), raw_key=GOOD_KEY, ip=None
    )
    return _state()


@pytest.fixture
def api(api_token) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")


def _json(value) -> bytes:
    return json.dumps(value).encode()


# (case, method, path, body, content type, status, error code)
API_CASES = [
    ("oversize key body", "put", KEY, _json({"apiKey": "x" * 70_000}), "application/json", 413, "payload_too_large"),
    ("1 MB key", "put", KEY, _json({"apiKey": ONE_MEGABYTE_KEY}), "application/json", 413, "payload_too_large"),
    (
        "oversize question",
        "post",
        QUERIES,
        _json({"query": "x" * 70_000}),
        "application/json",
        413,
        "payload_too_large",
    ),
    ("key as a form", "put", KEY, b"apiKey=" + OTHER_KEY.encode(), "application/x-www-form-urlencoded", 415, None),
    ("key as text", "put", KEY, _json({"apiKey": OTHER_KEY}), "text/plain", 415, "unsupported_media_type"),
    ("key as XML", "put", KEY, b"<apiKey>x</apiKey>", "application/xml", 415, "unsupported_media_type"),
    ("question as a form", "post", QUERIES, b"query=Hello", "application/x-www-form-urlencoded", 415, None),
    ("key, no type", "put", KEY, _json({"apiKey": OTHER_KEY}), "application/octet-stream", 415, None),
    ("key, invalid UTF-8", "put", KEY, b'{"apiKey": "sk-ant-\xff\xfe"}', "application/json", 400, "invalid_request"),
    ("question, invalid UTF-8", "post", QUERIES, b'{"query": "\xc3\x28"}', "application/json", 400, "invalid_request"),
    # JSON in UTF-16 or UTF-32 (which Python's json module would quietly decode) is not UTF-8 either.
    ("question, UTF-16", "post", QUERIES, '{"query": "Hello"}'.encode("utf-16"), None, 400, "invalid_request"),
    ("key, UTF-32", "put", KEY, json.dumps({"apiKey": OTHER_KEY}).encode("utf-32"), None, 400, "invalid_request"),
    ("key, broken JSON", "put", KEY, b'{"apiKey": ', "application/json", 400, "invalid_request"),
    ("key, JSON list", "put", KEY, _json([OTHER_KEY]), "application/json", 400, "invalid_request"),
    ("key, JSON number", "put", KEY, _json({"apiKey": 42}), "application/json", 400, "invalid_request"),
    ("key, missing", "put", KEY, _json({}), "application/json", 400, "invalid_request"),
    ("key with NUL", "put", KEY, _json({"apiKey": OTHER_KEY[:20] + "\x00" + OTHER_KEY[20:]}), None, 400, "malformed"),
    ("key with newline", "put", KEY, _json({"apiKey": OTHER_KEY[:20] + "\n" + OTHER_KEY[20:]}), None, 400, "malformed"),
    ("key with CRLF", "put", KEY, _json({"apiKey": OTHER_KEY[:20] + "\r\nX-Evil: 1"}), None, 400, "malformed"),
    ("look-alike key", "put", KEY, _json({"apiKey": LOOKALIKE_KEY}), None, 400, "malformed"),
    ("full-width key", "put", KEY, _json({"apiKey": "sk-ant-" + "Ａ" * 50}), None, 400, "malformed"),
    ("key one too long", "put", KEY, _json({"apiKey": "sk-ant-" + "a" * 250}), None, 400, "malformed"),
    ("question with NUL", "post", QUERIES, _json({"query": "What is\x00 MiCAR?"}), None, 400, "invalid_request"),
    # Valid JSON, but no UTF-8 text (so no database) can hold a lone surrogate: refused, not a 500.
    ("question, lone surrogate", "post", QUERIES, b'{"query": "What is \\ud800 MiCAR?"}', None, 400, "invalid_request"),
    ("key, nested too deep", "put", KEY, b"[" * 5000 + b"]" * 5000, None, 400, "invalid_request"),
    ("empty question", "post", QUERIES, _json({"query": " \n\t "}), None, 400, "invalid_request"),
    ("question too long", "post", QUERIES, _json({"query": "x" * 4001}), None, 400, "invalid_request"),
    ("PATCH the key", "patch", KEY, _json({"apiKey": OTHER_KEY}), None, 405, "method_not_allowed"),
    ("POST the key", "post", KEY, _json({"apiKey": OTHER_KEY}), None, 405, "method_not_allowed"),
    ("POST settings", "post", "/api/v1/orgs/{}/settings", _json({}), None, 405, "method_not_allowed"),
    ("DELETE the history", "delete", QUERIES, None, None, 405, "method_not_allowed"),
    ("PUT usage", "put", "/api/v1/orgs/{}/insights/usage", _json({}), None, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    "method, path, body, content_type, status, code", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_the_api_refuses_bad_input_clearly_and_changes_nothing(
    before, api, method, path, body, content_type, status, code
):
    kwargs = {"content_type": content_type or "application/json"} if body is not None else {}
    response = (
        getattr(api, method)(path.format("acme"), body, **kwargs)
        if body is not None
        else getattr(api, method)(path.format("acme"))
    )
    assert response.status_code == status, response.content[:300]
    error = json_error(response)
    if code == "malformed":
        assert error["code"] == "claude_api_key_malformed"
    elif code is not None:
        assert error["code"] == code
    assert "\x00" not in error["message"] and OTHER_KEY not in error["message"]  # nothing submitted is echoed
    if status == 405:
        assert response["Allow"]
    assert _state() == before


def test_a_wrong_content_type_says_what_to_send(before, api):
    response = api.put(KEY.format("acme"), json.dumps({"apiKey": OTHER_KEY}), "text/plain")
    assert json_error(response) == {
        "code": "unsupported_media_type",
        "message": "Send the request body as JSON (`Content-Type: application/json`).",
    }


def test_an_oversize_body_names_the_limit(before, api):
    response = api.put(KEY.format("acme"), json.dumps({"apiKey": ONE_MEGABYTE_KEY}), "application/json")
    limit_kb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024
    assert json_error(response)["message"] == f"The request body is too large (at most {limit_kb} KB)."


def test_a_look_alike_key_is_refused_with_the_prefix_it_must_have(before, api):
    response = api.put(KEY.format("acme"), json.dumps({"apiKey": LOOKALIKE_KEY}), "application/json")
    assert json_error(response)["message"] == "An Anthropic API key starts with “sk-ant-”."


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/orgs/{}/settings", None),
        ("put", KEY, {"apiKey": OTHER_KEY}),
        ("delete", KEY, None),
        ("post", QUERIES, {"query": "What does MiCAR require of a CASP?"}),
        ("get", QUERIES, None),
        ("get", "/api/v1/orgs/{}/insights/usage", None),
    ],
)
def test_another_organisation_looks_exactly_like_one_that_does_not_exist(before, api, method, path, body):
    """acme's admin reaching for initech (which has a key) or a made-up slug: the same 404, nothing changed."""
    answers = []
    for slug in ("initech", "globex", "no-such-org", "acme\x00", "acme%00", "ACME", "acme%0A", "acme%20"):
        args = (json.dumps(body), "application/json") if body is not None else ()
        response = getattr(api, method)(path.format(slug), *args)
        assert response.status_code == 404, (slug, response.content[:200])
        answers.append(json_error(response))
    assert all(a == {"code": "not_found", "message": "Not found."} for a in answers)
    assert _state() == before


def test_a_body_nested_too_deeply_gets_the_same_message_as_any_other_non_object(before, api):
    response = api.put(KEY.format("acme"), b"[" * 5000 + b"]" * 5000, content_type="application/json")

    assert json_error(response)["message"] == "The request body must be a JSON object."


@pytest.mark.parametrize("body", [b"[1]", b'"sk-ant-x"', b"42", b"null", b"true"])
@pytest.mark.parametrize("path", [KEY, QUERIES])
def test_a_body_that_is_json_but_not_an_object_says_so(before, api, path, body):
    method = api.put if path == KEY else api.post

    response = method(path.format("acme"), body, content_type="application/json")

    assert response.status_code == 400
    assert json_error(response) == {"code": "invalid_request", "message": "The request body must be a JSON object."}
    assert _state() == before


def test_a_host_we_do_not_serve_is_refused_in_the_json_error_shape(before, api):
    # A client reaching the API under a name missing from ALLOWED_HOSTS (a new domain, a proxy mistake).
    response = api.get("/api/v1/orgs/acme/settings", HTTP_HOST="api.not-ours.example")

    assert response.status_code == 400
    assert json_error(response) == {
        "code": "invalid_request",
        "message": "This server does not answer to the host name the request was sent to (its Host header): check "
        "the address, or the proxy in front of Opsion.",
    }
    assert "not-ours" not in response.content.decode()  # nothing of the request is echoed


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/healthz", "/accounts/login/", "/orgs/acme/settings/", QUERIES.format("acme")])
def test_a_host_we_do_not_serve_is_one_warning_line_not_an_error_with_a_traceback(world, settings, caplog, debug, path):
    # Scanners and probes by IP address send an unknown Host by the thousand, as they send NULs and huge query
    # strings: Django logged each at ERROR with a 14-line traceback (django.security.DisallowedHost), paging whoever
    # alerts on ERROR. It is one WARNING line, DEBUG on or off, still naming the host, so an operator who forgot a
    # name in ALLOWED_HOSTS (a load balancer probing by address) can tell what to add.
    settings.DEBUG = debug
    caplog.clear()

    response = Client(raise_request_exception=False).get(path, HTTP_HOST="203.0.113.7")

    assert response.status_code == 400
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.records
    assert not [r for r in caplog.records if r.exc_info or r.exc_text], caplog.records  # no traceback
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "203.0.113.7" in warnings[0] and "ALLOWED_HOSTS" in warnings[0], warnings


def test_a_nul_in_the_query_string_is_named_in_the_json_error_shape(before, api):
    response = api.get(QUERIES.format("acme"), {"limit": "5\x00"})

    assert response.status_code == 400
    assert json_error(response) == {"code": "invalid_request", "message": "The query string contains a NUL character."}


def test_too_many_query_string_parameters_are_named_in_the_json_error_shape(before, api):
    # Django refuses to read more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) of them: the client is told that, not
    # only "The request is not valid.", which leaves it nothing to change.
    response = api.get(
        QUERIES.format("acme"), {f"p{i}": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    )

    assert response.status_code == 400
    assert json_error(response) == {
        "code": "invalid_request",
        "message": "More than 1,000 parameters were sent (in the query string, or as form fields).",
    }


@pytest.mark.parametrize("debug", [False, True])
def test_too_many_query_string_parameters_are_refused_quietly_debug_or_not(before, api, settings, caplog, debug):
    # With DEBUG on (as `make run` serves) Django's technical 400 page read the query string again and raised from
    # inside its own error handling: a plain-text 500, "A server error occurred". With it off, Django logged each such
    # request at ERROR with a traceback, as scanners send them by the thousand. Refused where it is first read, as a
    # NUL is, it is one WARNING line and the API's 400 either way.
    settings.DEBUG = debug
    many = {f"p{i}": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}

    response = api.get(QUERIES.format("acme"), many)

    assert response.status_code == 400 and json_error(response)["code"] == "invalid_request"
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.records
    assert console().get("/", many).status_code == 400  # the console's own 400 page


def _signed_in_with_csrf(user) -> tuple[Client, str]:
    """A browser signed in as `user`, holding the CSRF cookie a page gave it, and that cookie's token."""
    client = console(user, enforce_csrf_checks=True)
    client.get("/orgs/acme/settings/")
    return client, client.cookies["csrftoken"].value


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/orgs/acme/insights/", "/accounts/password/", QUERIES.format("acme")])
def test_too_many_form_fields_are_refused_as_too_many_query_string_parameters_are(
    before, world, settings, caplog, debug, path
):
    # The same cap on a form body (a console form, or the API reached with a session), which Django's CSRF check reads
    # before any view: left to Django, it was logged at ERROR with a traceback and, with DEBUG on, answered with the
    # technical page (the API's then only "The request is not valid."). Now one WARNING line and the 400 that the
    # query-string case gets, DEBUG or not.
    settings.DEBUG = debug
    client, token = _signed_in_with_csrf(world.acme_member)
    form = {f"p{i}": "1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)} | {"csrfmiddlewaretoken": token}
    caplog.clear()

    response = client.post(path, form, HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 400
    if path.startswith("/api/"):
        assert json_error(response) == {
            "code": "invalid_request",
            "message": "More than 1,000 parameters were sent (in the query string, or as form fields).",
        }
    else:
        as_for_the_query_string = console(world.acme_member).get(path, form)
        assert as_for_the_query_string.status_code == 400
        assert response.content.decode().replace(response["X-Request-ID"], "") == (
            as_for_the_query_string.content.decode().replace(as_for_the_query_string["X-Request-ID"], "")
        )
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.records
    assert not [r for r in caplog.records if r.exc_info], caplog.records  # no traceback
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"too many form fields in the body of POST {path}" in warnings
    assert _state() == before


def test_an_out_of_range_parameter_is_named_as_a_parameter(before, api):
    response = api.get(QUERIES.format("acme"), {"limit": 0})

    assert json_error(response)["message"].startswith("The parameter `limit` is not valid:")


def test_an_unknown_api_path_is_a_json_404(before, api):
    response = api.get("/api/v1/orgs/acme/no-such-thing")
    assert response.status_code == 404
    assert json_error(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/api/v1/orgs/acme/no-such-thing", "/api/v1/orgs/acme/settings/", "/api/v1/org/acme/settings"]
)
def test_an_unknown_api_path_says_so_not_as_an_organisation_one_is_not_a_member_of(before, api, path):
    """A typo in the address (a trailing slash, say) must not read as "not a member of acme": the organisation's
    404 stays one message for outsiders and unknown slugs alike; the path's names the path and where they are."""
    response = api.get(path)

    assert response.status_code == 404
    error = json_error(response)
    assert error["code"] == "not_found"
    assert error["message"] != api.get("/api/v1/orgs/no-such-org/settings").json()["error"]["message"]
    assert "/api/v1/openapi.json" in error["message"]
    # The hint on slashes only where the address ends in one: elsewhere it sends the client looking for a slash.
    assert ("no trailing slash" in error["message"]) == path.endswith("/")


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/orgs/acme/no-such-thing/", "/api/v1/org/acme/settings/"])
def test_a_slash_is_blamed_only_where_the_address_without_it_is_an_operation(before, api, path):
    # "/api/v1/" (a base URL with its slash) or a misspelt path ending in one: told "paths take no trailing slash", a
    # client drops the slash and meets the same 404, the real mistake unnamed.
    response = api.get(path)

    assert response.status_code == 404
    assert "no trailing slash" not in json_error(response)["message"]
    assert "/api/v1/openapi.json" in json_error(response)["message"]


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1", "/api/", "/api"])
@pytest.mark.parametrize("method", ["get", "post", "put", "delete", "options"])
def test_the_api_base_address_is_no_operation_for_any_method(before, api_token, path, method):
    # The base URL a client is configured with, requested by mistake: a 404 saying where the operations are, as any
    # address without one, never Django's CSRF refusal (403 `forbidden`) of a write, nor a redirect to the slash.
    # "/api" too, the API's root without its slash: not the console's HTML 404 (with DEBUG on, Django's URL list).
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {api_token}")

    response = client.generic(method.upper(), path, "{}", "application/json")

    assert response.status_code == 404, response.content
    assert json_error(response)["code"] == "not_found"
    assert "/api/v1/openapi.json" in json_error(response)["message"]


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs"])
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_a_write_to_the_api_documents_is_a_json_405(before, api_token, path, method):
    # As a real client meets it: Django's CSRF check on, a token that exempts nothing outside the operations.
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {api_token}")

    response = getattr(client, method)(path, "{}", "application/json")

    assert response.status_code == 405
    assert json_error(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"
    assert client.get(path).status_code == client.head(path).status_code == 200


def test_a_missing_or_wrong_token_is_a_401_not_a_csrf_error(before):
    # RFC 6750: a Bearer token sent and refused is an "invalid_token"; Bearer credentials that are not a token at all
    # (empty, only spaces, not the b64token syntax of its section 2.1) an "invalid_request" (section 3.1), still a 401
    # `unauthenticated` as every missing credential is; no Bearer credentials at all, no error code.
    challenges = {
        Client(): "Bearer",
        Client(HTTP_AUTHORIZATION="Bearer opsn_not-a-real-token"): 'Bearer error="invalid_token"',
        Client(HTTP_AUTHORIZATION="Bearer opsn_not/a+real.token~=="): 'Bearer error="invalid_token"',
        Client(HTTP_AUTHORIZATION="bearer   "): 'Bearer error="invalid_request"',
        Client(HTTP_AUTHORIZATION="Bearer "): 'Bearer error="invalid_request"',
        Client(HTTP_AUTHORIZATION="Bearer"): 'Bearer error="invalid_request"',
        Client(HTTP_AUTHORIZATION="Bearer opsn_two words"): 'Bearer error="invalid_request"',
        Client(HTTP_AUTHORIZATION='Bearer opsn_"quoted"'): 'Bearer error="invalid_request"',
        Client(HTTP_AUTHORIZATION="x"): "Bearer",
        Client(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz"): "Bearer",
    }
    for client, challenge in challenges.items():
        response = client.put(KEY.format("acme"), json.dumps({"apiKey": OTHER_KEY}), "application/json")
        assert response.status_code == 401
        assert json_error(response)["code"] == "unauthenticated"
        assert response["WWW-Authenticate"] == challenge
    assert _state() == before


# --- The console: the same refusals as pages, with the message next to the field ------------------------


@pytest.mark.parametrize(
    "key, message",
    [
        (OTHER_KEY[:20] + "\x00" + OTHER_KEY[20:], "may contain only letters, digits, hyphens"),
        (OTHER_KEY[:20] + "\n" + OTHER_KEY[20:], "must not contain spaces or line breaks"),
        (LOOKALIKE_KEY, "starts with “sk-ant-”"),
        ("sk-ant-" + "a" * 300, "That is too long to be an Anthropic API key"),
    ],
    ids=["NUL", "newline", "look-alike", "too long"],
)
def test_the_console_refuses_a_bad_key_next_to_the_field(before, world, key, message):
    client = Client()
    client.force_login(world.acme_admin)
    response = client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": key})
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert key not in page  # never echoed back into the form
    assert _state() == before


def test_the_console_refuses_an_oversize_form_and_a_question_with_nul(before, world):
    client = Client()
    client.force_login(world.acme_admin)
    assert client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": ONE_MEGABYTE_KEY}).status_code == 400
    response = client.post("/orgs/acme/insights/", {"query": "What is\x00 MiCAR?"})
    assert response.status_code == 400
    assert "The question contains a NUL character." in response.content.decode()
    assert client.post("/orgs/globex/settings/claude-api-key/save", {"api_key": OTHER_KEY}).status_code == 404
    assert client.delete("/orgs/acme/settings/claude-api-key/save").status_code == 405
    assert _state() == before


def test_a_question_may_span_several_lines(before, api):
    """Newlines are ordinary text in a question (the page's textarea allows them); only NUL is refused."""
    response = api.post(QUERIES.format("acme"), json.dumps({"query": "First line.\nSecond line."}), "application/json")
    assert response.status_code == 200
    assert InsightQuery.objects.get().query == "First line.\nSecond line."


API_READS = [
    "/api/v1/orgs/acme/settings",
    "/api/v1/orgs/acme/audit-events",
    "/api/v1/orgs/acme/insights/usage",
    "/api/v1/orgs/acme/insights/queries",
]


@pytest.mark.parametrize("path", API_READS)
def test_head_on_an_api_read_answers_as_its_get_does(before, api, path):
    # HTTP requires HEAD wherever GET works, and uptime monitors use it; django-ninja answers only the methods an
    # operation names. (The body is dropped for every HEAD: test_a_head_answer_carries_no_body_….)
    get, head = api.get(path), api.head(path)

    assert head.status_code == get.status_code == 200
    assert head["Content-Type"] == get["Content-Type"] and get["Content-Type"].startswith("application/json")
    assert head.get("RateLimit") == get.get("RateLimit")
    assert Client().head(path).status_code == 401


def test_head_on_one_query_answers_as_its_get_does_for_ones_own_and_anothers(before, api, world):
    # getQuery is a read like those of API_READS, but its address needs a query: HEAD must answer it as GET does,
    # the 404 for another member's id included (the same status and RateLimit, nothing to tell them apart by).
    asked = api.post(QUERIES.format("acme"), json.dumps({"query": "What is MiCAR?"}), "application/json").json()
    theirs = InsightQuery.objects.create(
        organisation=world.acme, user=world.acme_member, key_source="platform", query="q", model="m"
    )

    for pk, status in ((asked["id"], 200), (theirs.pk, 404), (10**9, 404)):
        path = f"{QUERIES.format('acme')}/{pk}"
        get, head = api.get(path), api.head(path)
        assert head.status_code == get.status_code == status, path
        assert head["Content-Type"] == get["Content-Type"] and get["Content-Type"].startswith("application/json")
        assert head["RateLimit"] == get["RateLimit"] and head["RateLimit-Policy"] == get["RateLimit-Policy"]
        assert head.content == b""
    assert Client().head(f"{QUERIES.format('acme')}/{asked['id']}").status_code == 401
    assert api.post(f"{QUERIES.format('acme')}/{asked['id']}", "{}", "application/json")["Allow"] == "GET, HEAD"


def test_head_where_there_is_no_get_is_the_json_405_naming_the_methods(before, api):
    response = api.head(QUERIES.format("acme") + "/1/no-such-thing")
    assert response.status_code == 404

    response = api.head("/api/v1/orgs/acme/settings/claude-api-key")

    assert response.status_code == 405
    assert response["Allow"] == "PUT, DELETE"
    assert response["Content-Type"].startswith("application/json")  # the error shape; a HEAD answer has no body


def test_a_method_refused_on_an_api_read_names_head_among_the_allowed(before, api):
    response = api.post("/api/v1/orgs/acme/settings", "{}", "application/json")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert json_error(response)["message"] == "POST is not allowed here. Use GET, HEAD."


CONSOLE_READS = [
    "/",
    "/orgs/acme/insights/",
    "/orgs/acme/settings/",
    "/orgs/acme/settings/audit-log/",
    "/orgs/acme/settings/audit-log.csv",
]


@pytest.mark.parametrize("path", CONSOLE_READS)
def test_a_console_page_answers_head_as_its_get_does_and_refuses_what_it_does_not_take(world, console, path):
    # HEAD wherever GET works (HTTP requires it; link checkers and monitors use it). The pages that only show
    # something refuse a write with a 405 naming what they take, rather than answering a PUT or a DELETE with the
    # page as if it had been read.
    client = console(world.acme_owner)
    get, head = client.get(path), client.head(path)

    assert head.status_code == get.status_code and get.status_code in (200, 302)
    assert head.get("Content-Type") == get.get("Content-Type") and head.get("Location") == get.get("Location")
    for method in (client.put, client.delete, client.patch):
        response = method(path)
        assert response.status_code == 405, (method, path)
        assert response["Allow"] == ("GET, HEAD, POST" if path == "/orgs/acme/insights/" else "GET, HEAD")


def test_head_on_the_insights_page_does_not_use_up_a_question_kept_across_sign_in(world, console):
    # A question posted as the session expired is handed back once, by the first GET of its page: a HEAD (a link
    # checker, a browser's prefetch) must leave it there.
    client = console(world.acme_member)
    session = client.session
    session[drafts.KEPT_DRAFT] = {"path": "/orgs/acme/insights/", "text": "Which CASPs need a white paper?"}
    session.save()

    assert client.head("/orgs/acme/insights/").status_code == 200

    assert "Which CASPs need a white paper?" in client.get("/orgs/acme/insights/").content.decode()


def _served(method: str, path: str, **environ) -> tuple[str, dict, bytes]:
    """The answer as a WSGI server (gunicorn) gets it: Django's test client drops a HEAD answer's body itself."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "testserver", **environ}
    setup_testing_defaults(environ)
    started = {}
    # As the test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        answer = get_wsgi_application()(environ, lambda status, headers: started.update(status=status, h=headers))
        body = b"".join(answer)
        answer.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return started["status"], dict(started["h"]), body


@pytest.mark.parametrize(
    "path, status",
    [("/api/v1/orgs/acme/settings", "200 OK"), (KEY.format("acme"), "405 Method Not Allowed"), ("/healthz", "200 OK")],
)
def test_a_head_answer_carries_no_body_even_from_a_server_that_sends_what_it_is_given(before, api_token, path, status):
    # gunicorn writes whatever body the application returns, HEAD or not: on a kept-alive connection the client
    # then reads that JSON as the start of the next answer (Node's http: "Parse Error: Expected HTTP/").
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    head_status, headers, body = _served("HEAD", path, **auth)

    assert (head_status, body) == (status, b"")
    assert headers["Content-Type"].startswith("application/json")
    if status == "200 OK":  # the length the GET's body has, as HTTP allows a HEAD answer to say
        assert headers["Content-Length"] == str(len(_served("GET", path, **auth)[2]))


@pytest.mark.parametrize(
    ("allow", "named"),
    [("", ""), ("PROPFIND, get", "GET, HEAD, PROPFIND"), ("DELETE,PUT", "PUT, DELETE")],
)
def test_any_405_allow_header_is_put_in_order_without_failing(allow, named):
    # Whatever a view names (a method outside the usual list, lower case, nothing at all), never a 500.
    refusal = HttpResponseNotAllowed([])
    refusal["Allow"] = allow

    assert ApiHeadMiddleware._allow_head(refusal)["Allow"] == named


class _DroppedMidBody:
    """A request body whose client went away after sending part of it: reading it raises OSError, as a WSGI server's
    input does (Django raises UnreadablePostError)."""

    def read(self, *args):
        raise OSError("client disconnected")

    readline = read


@pytest.mark.parametrize("path", ["/orgs/acme/insights/", "/accounts/password/"])
def test_a_form_body_cut_off_by_its_client_is_left_to_the_csrf_check_not_a_500(world, caplog, path):
    # Django's CSRF check treats a body it cannot read (the client disconnected mid-post) as one without a token: a
    # 403, no ERROR. Reading the form before it, for the size and field-count caps, must not turn that into a 500
    # logged at ERROR with a traceback for every dropped upload.
    client = console(world.acme_member, enforce_csrf_checks=True)
    client.raise_request_exception = False
    caplog.clear()

    response = client.generic(
        "POST",
        path,
        "query=x",
        content_type="application/x-www-form-urlencoded",
        **{"wsgi.input": _DroppedMidBody(), "CONTENT_LENGTH": "7"},
    )

    assert response.status_code == 403
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.records


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_an_api_body_cut_off_by_its_client_is_a_400_not_a_500(world, api, caplog, content_type):
    # The client went away mid-body: nothing to answer to, but neither a 500 nor an ERROR line with a traceback for
    # every dropped upload; nothing asked, stored or counted.
    api.raise_request_exception = False
    caplog.clear()

    response = api.generic(
        "POST",
        QUERIES.format("acme"),
        '{"query": "x"}',
        content_type=content_type,
        **{"wsgi.input": _DroppedMidBody(), "CONTENT_LENGTH": "14"},
    )

    assert response.status_code == 400
    assert json_error(response) == {"code": "invalid_request", "message": "The request body could not be read in full."}
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.records
    assert not InsightQuery.objects.exists()


TOKEN_LIKE = "opsn_" + "T" * 43


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("put", KEY, {"apiKey": GOOD_KEY, OTHER_KEY: 1}, id="key as a body field"),
        pytest.param("post", QUERIES, {"query": "Hello", TOKEN_LIKE: 1}, id="token as a body field"),
        pytest.param("put", KEY, {OTHER_KEY: 1}, id="key as a field, the one required missing"),
        pytest.param("get", QUERIES + f"?{OTHER_KEY}=1", None, id="key as a list's parameter"),
        pytest.param("get", QUERIES + f"?{TOKEN_LIKE}=1", None, id="token as a list's parameter"),
        pytest.param("post", QUERIES + f"?{OTHER_KEY}=1", {"query": "Hello"}, id="key as a question's parameter"),
    ],
)
def test_a_key_or_token_sent_as_a_name_is_named_redacted_in_the_refusal(before, api, method, path, body):
    # A refusal names the field or parameter it does not take: one named by a key or token (a client that put the
    # credential where a name belongs) must not be sent back whole, to be kept by whatever logs the answer.
    args = () if body is None else (json.dumps(body), "application/json")

    response = getattr(api, method)(path.format("acme"), *args)

    assert response.status_code == 400, response.content
    message = json_error(response)["message"]
    assert OTHER_KEY not in message and TOKEN_LIKE not in message, message
    assert "sk-ant-[redacted]" in message or "opsn_[redacted]" in message, message
    assert _state() == before
