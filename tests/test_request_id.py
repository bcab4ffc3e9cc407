"""Every request has an ID, the reference a user quotes to support: on its response as X-Request-ID, on every log
record written while serving it (its streamed answer included), in the API's error body and on the console's
error pages. It is ours, or a trusted proxy's when safe; never anything a visitor made up."""

import json
import logging
import re

import pytest
from django.conf import settings as django_settings
from django.http import FileResponse
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.urls import reverse

from opsion.requestid import RequestIdMiddleware
from tests.base import make_user
from tests.conftest import PLATFORM_KEY

GENERATED = re.compile(r"[0-9a-f]{32}")
PROXY = ("HTTP_X_FORWARDED_PROTO", "https")
QUESTION = "What does MiCAR Article 59 require?"


def request_id(response) -> str:
    value = response["X-Request-ID"]
    assert value, response
    return value


def reference(response) -> str:
    return f"Reference: <code>{request_id(response)}</code>"


def ask_api(client, slug: str = "globex"):
    return client.post(
        f"/api/v1/orgs/{slug}/insights/queries", data=json.dumps({"query": QUESTION}), content_type="application/json"
    )


def ask_streamed(client, slug: str = "globex"):
    return client.post(reverse("insights:query", args=[slug]), {"query": QUESTION}, HTTP_ACCEPT="text/event-stream")


def records_of(caplog, response) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.request_id == request_id(response)]


# The header, on every kind of answer.


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("get", "/accounts/login/", 200),
        ("head", "/accounts/login/", 200),
        ("get", "/", 302),
        ("get", "/nowhere/", 404),
        ("get", "/healthz", 200),
        ("head", "/healthz", 200),
        ("get", "/api/v1/openapi.json", 200),
        ("head", "/api/v1/orgs/globex/settings", 401),
        ("get", "/api/v1/nowhere", 404),
        ("delete", "/api/v1/openapi.json", 405),
        ("get", "/?q=%00", 400),
        ("get", "/static/css/opsion.css", 200),
    ],
)
def test_every_answer_carries_a_new_request_id(world, method, path, status):
    client = Client()

    first, second = (getattr(client, method)(path) for _ in range(2))

    assert (first.status_code, second.status_code) == (status, status)
    assert GENERATED.fullmatch(request_id(first)) and GENERATED.fullmatch(request_id(second))
    assert request_id(first) != request_id(second)


def test_signed_in_pages_api_answers_and_a_streamed_answer_carry_it(world, console, api_client, fake_anthropic):
    member = console(world.globex_member)

    page = member.get(reverse("insights:query", args=["globex"]))
    api = api_client(world.globex_member).get("/api/v1/orgs/globex/insights/usage")
    stream = ask_streamed(member)
    b"".join(stream.streaming_content)

    assert (page.status_code, api.status_code, stream.status_code) == (200, 200, 200)
    assert stream["Content-Type"] == "text/event-stream"
    assert all(GENERATED.fullmatch(request_id(response)) for response in (page, api, stream))


# Whose ID: a trusted proxy's when it is safe, ours otherwise.


def test_without_a_trusted_proxy_an_incoming_id_is_ignored(world, settings):
    settings.SECURE_PROXY_SSL_HEADER = None

    response = Client().get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a9c")

    assert GENERATED.fullmatch(request_id(response))


def test_behind_a_trusted_proxy_its_id_is_kept(world, settings, caplog):
    settings.SECURE_PROXY_SSL_HEADER = PROXY

    response = Client().get("/?q=%00", HTTP_X_REQUEST_ID="lb-7f3a9c_01.X")

    assert request_id(response) == "lb-7f3a9c_01.X"
    assert any("NUL in the query string" in record.getMessage() for record in records_of(caplog, response))


CRAFTED = {
    "newline": "abc\r\nSet-Cookie: sessionid=stolen",
    "html": '<script>alert("x")</script>',
    "too long": "a" * 65,
    "ten kilobytes": "b" * 10_240,
    "empty": "",
    "space": "two words",
    "unicode": "ref-é",
    "a colon": "lb:7f3a9c",
    "a slash": "lb/7f3a9c",
    "an Anthropic key": "sk-ant-api03-" + "Z" * 40,
    "the platform key": PLATFORM_KEY,
    # The platform key above is 67 characters: refused for its length before redaction is asked. A shorter one, in
    # no form an Anthropic key takes, is hidden only by its value (redact()), so only that check can refuse it.
    "a short platform key": "platform-key_0123456789",
}


@pytest.mark.parametrize("behind_proxy", [False, True], ids=["direct", "behind-proxy"])
@pytest.mark.parametrize("crafted", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_id_is_replaced_and_never_reflected(world, settings, behind_proxy, crafted):
    settings.SECURE_PROXY_SSL_HEADER = PROXY if behind_proxy else None
    settings.ANTHROPIC_API_KEY = crafted if crafted == CRAFTED["a short platform key"] else PLATFORM_KEY
    client = Client()

    answers = [
        client.get("/nowhere/", HTTP_X_REQUEST_ID=crafted),  # the console's error page
        client.get("/api/v1/nowhere", HTTP_X_REQUEST_ID=crafted),  # the API's error body
    ]

    for response in answers:
        assert GENERATED.fullmatch(request_id(response))
        assert request_id(response) in response.content.decode()
        if crafted:
            assert crafted.encode() not in response.content
            assert crafted not in str(response.headers)


def test_a_safe_id_is_at_most_64_characters_of_letters_digits_dots_dashes_and_underscores(world, settings):
    settings.SECURE_PROXY_SSL_HEADER = PROXY

    longest = Client().get("/healthz", HTTP_X_REQUEST_ID="A-z_0.9" * 9 + "x")
    shortest = Client().get("/healthz", HTTP_X_REQUEST_ID="1")

    assert request_id(longest) == "A-z_0.9" * 9 + "x" and request_id(shortest) == "1"


# Logs.


def test_every_record_of_a_request_carries_its_id_and_the_log_format_shows_it(world, caplog):
    caplog.set_level(logging.INFO)

    response = Client().get("/?q=%00")
    logging.getLogger("opsion").info("after the request")

    ours = records_of(caplog, response)
    assert {record.name for record in ours} >= {"opsion", "django.request"}  # the NUL warning; Bad Request: /
    assert caplog.records[-1].request_id == "-"  # outside any request
    line = logging.Formatter(django_settings.LOGGING["formatters"]["plain"]["format"]).format(ours[0])
    assert f"[{request_id(response)}] NUL in the query string" in line


def test_records_written_while_the_answer_streams_carry_the_requests_id(world, console, fake_anthropic, caplog):
    # The stream is read after the view (and every middleware) has returned: the ID must still be there.
    fake_anthropic.default = "midstream_error"

    response = ask_streamed(console(world.globex_member))
    body = b"".join(response.streaming_content)

    assert b"event: error" in body
    assert any("insights unavailable for org=globex" in record.getMessage() for record in records_of(caplog, response))


@pytest.mark.django_db(transaction=True)  # a server's response.close() also closes the DB connection
def test_records_written_as_the_response_closes_carry_its_id(world, console, fake_anthropic, caplog):
    # A reader leaving before Claude is asked: the question is still asked, and logged, as the server closes it.
    fake_anthropic.default = "server_error"
    response = ask_streamed(console(world.globex_member))
    assert next(iter(response.streaming_content)).startswith(b"event: start")

    response.close()

    assert any("insights unavailable for org=globex" in record.getMessage() for record in records_of(caplog, response))


# Surfaces: the API's error body and schema, the console's error pages and the insights page's failure.


def test_an_api_error_body_names_the_requests_id(world, api_client, fake_anthropic):
    fake_anthropic.default = "server_error"

    response = ask_api(api_client(world.globex_member))

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "insights_unavailable",
            "message": "AI Insights is temporarily unavailable. Please try again shortly.",
        },
        "requestId": request_id(response),
    }


def test_the_openapi_document_shows_request_id_in_every_error_body(world):
    document = Client().get("/api/v1/openapi.json").json()

    error = document["components"]["schemas"]["ErrorOut"]
    assert error["properties"]["requestId"]["type"] == "string"
    assert set(error["required"]) == {"error", "requestId"}
    assert "X-Request-ID" in error["properties"]["requestId"]["description"]


def test_the_openapi_document_declares_the_request_id_header_on_every_response_of_every_operation(world):
    document = Client().get("/api/v1/openapi.json").json()

    responses = [
        (method, path, status, response)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
    ]
    assert len(responses) > 50  # every operation's every status: 5 to 12 per operation
    for method, path, status, response in responses:
        header = response.get("headers", {}).get("X-Request-ID")
        assert header, (method, path, status)
        assert (header["schema"], header["required"]) == ({"type": "string"}, True), (method, path, status)
        assert "support" in header["description"] and "requestId" in header["description"], (method, path, status)


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_a_server_error_shows_its_reference_and_its_report_carries_the_id(world, console, settings, caplog, debug):
    settings.DEBUG = debug
    settings.ROOT_URLCONF = "tests.security.urls"
    client = console(world.acme_admin, raise_request_exception=False)

    page = client.get("/boom/acme/")

    assert page.status_code == 500
    if debug:  # the technical page lists the request's headers, ours among them
        assert "HTTP_X_REQUEST_ID" in page.content.decode() and request_id(page) in page.content.decode()
    else:
        assert reference(page) in page.content.decode()
    reported = [record for record in records_of(caplog, page) if record.name == "django.request"]
    assert reported and reported[0].exc_info and "Internal Server Error" in reported[0].getMessage()


def test_the_console_error_pages_show_their_reference(world, console):
    member = console(world.globex_member)
    staff_without_rights = console(make_user("nobody@opsion.test", is_staff=True))

    not_found = member.get("/orgs/acme/insights/")  # another organisation's: indistinguishable from none
    forbidden = staff_without_rights.get(f"/admin/orgs/organisation/{world.acme.pk}/change/")
    csrf = console(world.globex_member, enforce_csrf_checks=True).post(reverse("insights:query", args=["globex"]))
    bad_request = member.get("/?q=%00")

    for response, status in ((not_found, 404), (forbidden, 403), (csrf, 403), (bad_request, 400)):
        assert response.status_code == status and reference(response) in response.content.decode()


def test_the_insights_page_shows_a_failures_reference_and_no_reference_on_success(world, console, fake_anthropic):
    member = console(world.globex_member)
    fake_anthropic.default = "server_error"

    failed = member.post(reverse("insights:query", args=["globex"]), {"query": QUESTION})
    fake_anthropic.reset()
    page = member.get(reverse("insights:query", args=["globex"]))
    answered = member.post(reverse("insights:query", args=["globex"]), {"query": QUESTION}, follow=True)

    assert failed.status_code == 503
    assert reference(failed) in failed.content.decode()
    for success in (page, answered):
        assert success.status_code == 200 and "Reference:" not in success.content.decode()


def test_a_refusal_over_the_limit_shows_its_reference(world, console, fake_anthropic, settings):
    settings.INSIGHTS_PLATFORM_LIMIT = 0

    refused = console(world.globex_member).post(reverse("insights:query", args=["globex"]), {"query": QUESTION})

    assert refused.status_code == 429 and reference(refused) in refused.content.decode()


def test_outside_a_request_the_reference_tag_shows_nothing():
    # Django's own 500 page is rendered with no request: it shows no empty "Reference:".
    assert Template("{% load request_id %}{% request_reference %}").render(Context()) == ""


def test_a_file_answer_carries_the_id_and_is_still_handed_over_whole_for_sendfile(tmp_path):
    # A file's body is not re-wrapped to bind the ID (it logs nothing as it is read): wrapping it would turn the
    # server's sendfile (wsgi.file_wrapper) into a Python loop over the file. (The test client re-wraps every
    # streamed body itself, so the middleware is called directly.)
    (tmp_path / "report.csv").write_text("a,b\n")
    middleware = RequestIdMiddleware(lambda request: FileResponse((tmp_path / "report.csv").open("rb")))

    response = middleware(RequestFactory().get("/report.csv"))

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert response.file_to_stream is not None
    response.close()
