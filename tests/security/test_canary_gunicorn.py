"""The canary key through a real gunicorn, whose own loggers write the access log and the worker's error log: the
crawl in test_canary.py runs in Django's test client, where neither exists."""

import json
import urllib.error
import urllib.request

import pytest

from orgs import services
from tests.base import CANARY_KEY
from tests.reliability.app_servers import server_environment, servers
from tests.security.test_canary import FRAGMENTS

pytestmark = pytest.mark.django_db(transaction=True)  # the server process reads what the test committed

ENCODED_KEY = CANARY_KEY.replace("-", "%2D")  # as typed into an address, percent-encoded

# README's access log format (Running in production), plus two headers a client may put a key in.
ACCESS_LOG = (
    "--access-logfile",
    "-",
    "--access-logformat",
    '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s %({x-api-key}i)s %({authorization}i)s',
    "--log-level",
    "debug",
)


def _send(url: str, *, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_gunicorns_access_log_and_every_logger_at_debug_write_the_key_redacted(world, fake_anthropic, tmp_path):
    """A careless operator's server: access log on, every logger at DEBUG, the SDK's own debug logging asked for
    (ANTHROPIC_LOG), while clients send the key in the query string, in headers and in the path, an Admin saves it
    and a member's query runs on it and is refused by Anthropic."""
    admin_token = services.api_token_create(user=world.acme_admin, name="gunicorn")[1]
    member_token = services.api_token_create(user=world.acme_member, name="gunicorn")[1]
    fake_anthropic.behave(CANARY_KEY, "auth_error")
    env = server_environment(fake_anthropic, LOG_LEVEL="DEBUG", ANTHROPIC_LOG="debug")

    for base_urls in servers(env, tmp_path, 1, args=ACCESS_LOG):
        api = f"{base_urls[0]}/api/v1/orgs/acme"
        statuses = [
            _send(
                f"{api}/settings/claude-api-key",
                method="PUT",
                body={"apiKey": CANARY_KEY},
                headers={"Authorization": f"Bearer {admin_token}"},
            ),
            _send(
                f"{api}/insights/queries",
                method="POST",
                body={"query": "What is a CASP?"},
                headers={"Authorization": f"Bearer {member_token}"},
            ),
            _send(f"{api}/settings?apiKey={CANARY_KEY}", headers={"Authorization": f"Bearer {member_token}"}),
            _send(f"{api}/settings", headers={"X-Api-Key": CANARY_KEY, "Authorization": f"Bearer {CANARY_KEY}"}),
            _send(f"{base_urls[0]}/{CANARY_KEY}/"),
            # Percent-encoded, as no browser sends it by itself: the path is refused,
            # and the query string's parameter too.
            _send(f"{base_urls[0]}/orgs/acme/{ENCODED_KEY}/"),
            _send(f"{api}/settings?apiKey={ENCODED_KEY}", headers={"Authorization": f"Bearer {member_token}"}),
        ]
    logged = (tmp_path / "gunicorn-1.log").read_text()

    # A parameter getSettings does not take is refused by name (never by value);
    # a key typed into the path is refused.
    assert statuses == [200, 400, 400, 401, 400, 400, 400], statuses
    assert fake_anthropic.keys_used[-1] == CANARY_KEY  # the query ran on the saved key, and Anthropic refused it
    assert '"GET /api/v1/orgs/acme/settings?apiKey=sk-ant-[redacted] HTTP/1.1" 400' in logged, logged[-3000:]
    assert "sk-ant-[redacted] Bearer sk-ant-[redacted]" in logged, logged[-3000:]  # the access log's header atoms
    assert '"GET /sk-ant-[redacted]/ HTTP/1.1" 400' in logged, logged[-3000:]  # the request line, as its path
    assert "a key or token in the path of GET /sk-ant-[redacted]/" in logged, logged[-3000:]
    # The request line as sent, decoded so that its key is redacted as the app reads it.
    assert '"GET /orgs/acme/sk-ant-[redacted]/ HTTP/1.1" 400' in logged, logged[-3000:]
    assert '"GET /api/v1/orgs/acme/settings?apiKey=sk-ant-[redacted] HTTP/1.1" 400' in logged, logged[-3000:]
    assert ENCODED_KEY[20:50] not in logged, logged[logged.index(ENCODED_KEY[20:50]) - 500 :][:1000]
    # ANTHROPIC_LOG lowers the SDK's loggers when it is imported, after LOGGING set them to WARNING: its debug lines
    # hold each request's options, the member's question and the system prompt included. LOGGING's levels stand.
    assert "anthropic._base_client" not in logged
    assert "What is a CASP?" not in logged
    for fragment in FRAGMENTS:
        assert fragment not in logged, logged[logged.index(fragment) - 500 :][:1000]
