"""Real gunicorn processes serving the app, for the tests that need what only a real server shows: the
database shared across processes, and what reaches the application off the wire (Django's test client builds
the request itself)."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tests.clients import closed_port
from tests.conftest import PLATFORM_KEY


def database_url() -> str:
    """The test database, as the server process reaches it (SQLite's test database is a file: see tests/conftest)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "", safe="") + (f":{quote(s['PASSWORD'], safe='')}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{quote(s['NAME'], safe='')}"


def server_environment(fake_anthropic, **overrides: str) -> dict:
    """The environment of a production-like server (DEBUG off) on the test database and the fake Anthropic."""
    env = {
        **os.environ,
        "OPSION_READ_DOTENV": "0",
        "DEBUG": "0",
        "HTTPS": "0",
        "STATIC_MANIFEST": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "DATABASE_URL": database_url(),
        "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
        "ANTHROPIC_API_KEY": PLATFORM_KEY,
        "INSIGHTS_WINDOW_SECONDS": "3600",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    env.pop("TEST_DATABASE_NAME", None)
    return env


def start_server(
    env: dict, log: Path, threads: int = 8, args: tuple[str, ...] = (), cwd: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """gunicorn serving the app from `cwd` (the checkout by default), reading the gunicorn.conf.py found there."""
    port = closed_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "opsion.wsgi:application"),
        *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread", "--threads", str(threads)),
        *args,
    ]
    # Its own process group, so a server that will not stop is killed with its worker, not leaving it orphaned.
    process = subprocess.Popen(
        command,
        cwd=cwd or settings.BASE_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_until_healthy(process: subprocess.Popen, base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"gunicorn at {base_url} did not become healthy:\n{log.read_text()}")


def servers(env: dict, tmp_path: Path, count: int, threads: int = 8, args: tuple[str, ...] = ()):
    """Start `count` servers (`args`: more of gunicorn's options) and yield their base URLs once each answers
    /healthz; stop them afterwards. Each writes its output to gunicorn-<n>.log in `tmp_path`."""
    started = [
        (*start_server(env, tmp_path / f"gunicorn-{i}.log", threads, args), tmp_path / f"gunicorn-{i}.log")
        for i in range(1, count + 1)
    ]
    try:
        for process, base_url, log in started:
            wait_until_healthy(process, base_url, log)
        yield [base_url for _, base_url, _ in started]
    finally:
        stop(*(process for process, _, _ in started))


def stop(*processes: subprocess.Popen) -> None:
    """Stop gunicorn servers started by start_server, quickly: nothing is in flight any more."""
    for process in processes:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the master and its worker (holding database sessions)
            process.wait()
