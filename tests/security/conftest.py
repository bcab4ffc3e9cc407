import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from orgs import services

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"

# The loggers whose records the canary guard reads. settings.LOGGING keeps the SDK and its HTTP stack at
# WARNING; the guard forces all of them to DEBUG, so the test holds even if someone turns them up.
WATCHED_LOGGERS = ["", "django", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2", "opsion"]


class RecordingHandler(logging.Handler):
    """Keeps every record's text as a log file or an error tracker would see it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: dict[int, logging.LogRecord] = {}
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) in self.records:  # attached to parents and children alike
            return
        self.records[id(record)] = record
        parts = [self.format(record), repr(record.args)]
        if record.exc_info:
            parts.append(self.formatter.formatException(record.exc_info))
        parts.extend(str(v) for v in (record.exc_text, record.stack_info) if v)
        self.texts.append("\n".join(parts))


@pytest.fixture
def debug_logs(caplog):
    """Every watched logger at DEBUG, recorded by caplog and by a handler on each logger itself."""
    handler = RecordingHandler()
    for name in WATCHED_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
        logging.getLogger(name or None).addHandler(handler)
    yield handler
    for name in WATCHED_LOGGERS:
        logging.getLogger(name or None).removeHandler(handler)


@pytest.fixture
def redis_server() -> redis.Redis:
    """The real Redis on 127.0.0.1:6379 (database 0), or the test is skipped."""
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        connection.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (CI and the dev machines run it)")
    yield connection
    connection.close()


@pytest.fixture
def api_token(world) -> str:
    """A personal API token of acme's admin (raw, as the user would send it)."""
    _, raw = services.api_token_create(user=world.acme_admin, name="Security tests")
    return raw


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for a `manage.py` subprocess: nothing inherited but PATH, never a .env file."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPSION_READ_DOTENV": "0",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run_python(code_or_args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def json_error(response) -> dict:
    """The body of an API error, asserting it has our shape: {"error": {"code", "message"}, "requestId"}."""
    assert response["Content-Type"].startswith("application/json"), (response.status_code, response.content[:200])
    body = json.loads(response.content)
    assert set(body) == {"error", "requestId"} and body["requestId"] == response["X-Request-ID"], body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    return body["error"]
