"""LOG_LEVEL is the level of every line Opsion writes, Django's own included: an operator who sets ERROR (to page on
what is left) must not still get a WARNING line for every 404 and every probe of an unknown Host."""

import pytest

from tests.security.conftest import base_env, run_python

# A 404 (django.request logs it at WARNING) and a Host not in ALLOWED_HOSTS (django.security.DisallowedHost, logged at
# ERROR by Django and turned into one WARNING line by opsion.reporting.RefusedHostIsAWarning); then the libraries whose
# loggers LOGGING holds at a level of their own (the SDK and its HTTP client at WARNING, markdown-it at INFO).
REQUESTS = """
import django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
print(client.get("/healthz", HTTP_HOST="203.0.113.7").status_code, client.get("/no-such-page/").status_code)
import logging
logging.getLogger("anthropic._base_client").warning("the SDK retrying")
logging.getLogger("httpx2").warning("the HTTP client")
logging.getLogger("markdown_it.rules_block").info("the markdown parser")
"""


def log_of(level: str) -> str:
    env = base_env(
        DJANGO_SETTINGS_MODULE="opsion.settings",
        DEBUG="0",
        HTTPS="0",
        STATIC_MANIFEST="0",
        SECRET_KEY="test-secret-key-not-for-production",
        FIELD_ENCRYPTION_KEYS="b3BzaW9uLXRlc3Qtb25seS1mZXJuZXQta2V5LTAwMDE=",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL=level,
    )
    done = run_python(["-W", "ignore", "-c", REQUESTS], env)
    assert done.returncode == 0 and done.stdout.split() == ["400", "404"], (done.stdout, done.stderr)
    return done.stderr


@pytest.mark.parametrize("level", ["ERROR", "CRITICAL"])
def test_above_warning_neither_a_404_nor_an_unknown_host_writes_a_line(level):
    assert log_of(level) == ""


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
def test_at_warning_and_below_each_is_one_warning_line(level):
    lines = log_of(level).splitlines()

    assert len(lines) == 4 + (level == "INFO"), lines
    assert " WARNING django.security.DisallowedHost " in lines[0] and "203.0.113.7" in lines[0]
    assert " WARNING django.request " in lines[1] and "Not Found: /no-such-page/" in lines[1]
    assert " WARNING anthropic._base_client " in lines[2] and " WARNING httpx2 " in lines[3]
    assert level != "INFO" or " INFO markdown_it.rules_block " in lines[4]
