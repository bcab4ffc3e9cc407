"""Request bodies as a real server hands them to the app: gunicorn, not Django's test client (which always
sends a Content-Length)."""

import http.client
import json
from urllib.parse import urlsplit

import pytest

from insights.models import InsightQuery
from orgs import services as org_services
from tests.reliability.app_servers import server_environment, servers

pytestmark = pytest.mark.django_db(transaction=True)  # the server process reads what the test committed

QUERIES = "/api/v1/orgs/globex/insights/queries"


@pytest.fixture
def server(world, fake_anthropic, tmp_path):
    for base_urls in servers(server_environment(fake_anthropic), tmp_path, 1):
        yield base_urls[0]


@pytest.fixture
def token(world) -> str:
    return org_services.api_token_create(user=world.globex_member, name="wire")[1]


def _connection(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def _post_chunked(conn: http.client.HTTPConnection, token: str, body: bytes) -> tuple[int, dict]:
    """POST `body` as a client streaming it does (Go's http with an io.Reader, fetch with a ReadableStream, httpx
    with an iterator): `Transfer-Encoding: chunked`, no Content-Length."""
    pieces = (body[i : i + 1000] for i in range(0, len(body), 1000))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("POST", QUERIES, body=pieces, headers=headers, encode_chunked=True)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_a_json_body_sent_in_chunks_is_read_as_one_with_a_length(server, token, fake_anthropic):
    conn = _connection(server)

    status, answer = _post_chunked(conn, token, json.dumps({"query": "What does MiCAR Article 59 require?"}).encode())

    assert (status, answer.get("error")) == (200, None)
    assert answer["query"] == "What does MiCAR Article 59 require?"
    assert answer["answer"] == fake_anthropic.answer_text


def test_a_chunked_body_over_the_limit_is_refused_as_too_large_and_the_connection_serves_on(server, token):
    conn = _connection(server)

    status, answer = _post_chunked(conn, token, json.dumps({"query": "x" * 70_000}).encode())

    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    # The rest of the body was read past, not taken for the next request on this kept-alive connection.
    conn.request("GET", "/api/v1/orgs/globex/insights/usage", headers={"Authorization": f"Bearer {token}"})
    usage = conn.getresponse()
    assert usage.status == 200
    # Refused before the limiter: nothing counted, no row.
    assert json.loads(usage.read())["used"] == 0 and not InsightQuery.objects.exists()


def test_an_idempotency_key_header_sent_twice_is_refused_before_anything_is_asked(server, token, fake_anthropic):
    # A client that sets the header in two places (a default and a per-request value, say) sends it twice; the server
    # joins the two into one value with a comma ("a,b"), a key no retry sending one of them would match: each retry
    # would be asked and counted again.
    conn = _connection(server)
    body = json.dumps({"query": "What does MiCAR Article 59 require?"}).encode()
    conn.putrequest("POST", QUERIES)
    for name, value in [
        ("Authorization", f"Bearer {token}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Idempotency-Key", "5f0c8a2e-7d1b-4c59-9a0e-3b6f1d2c4e8a"),
        ("Idempotency-Key", "0b8e7c1d-2f3a-4b5c-8d9e-1a2b3c4d5e6f"),
    ]:
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()

    assert response.status == 400
    assert json.loads(response.read())["error"] == {
        "code": "invalid_request",
        "message": "The Idempotency-Key header holds a comma: send it once, with one key (a UUID, say).",
    }
    assert not fake_anthropic.requests and not InsightQuery.objects.exists()
