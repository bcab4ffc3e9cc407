"""A graceful restart (SIGHUP, as README's deploy sends) answers every request that reaches gunicorn, and its new
workers run the code deployed since gunicorn started.

gunicorn 23's gthread worker, told to stop, went on accepting connections for up to a second (its event loop waits
out its poll before it looks again) and then closed them unanswered: a load balancer's probe or a customer's request
arriving just after the signal met a reset connection, though nothing was wrong with the instance. The workers are
real gunicorn processes started from the checkout, so they read gunicorn.conf.py as README's command does.
"""

import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from tests.reliability.app_servers import server_environment, start_server, stop, wait_until_healthy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(fake_anthropic, tmp_path):
    """Two idle gthread workers (the kind that keeps accepting after the signal), and the log they write."""
    log = tmp_path / "gunicorn.log"
    process, base_url = start_server(server_environment(fake_anthropic), log, threads=4, args=("--workers", "2"))
    try:
        wait_until_healthy(process, base_url, log)
        yield process, base_url, log
    finally:
        stop(process)


def _probe(base_url: str) -> str:
    """What a load balancer's probe saw: the status, or the name of the connection error."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=30) as response:  # noqa: S310
            return str(response.status)
    except urllib.error.HTTPError as refused:
        return str(refused.code)
    except OSError as failed:
        return type(failed.reason if isinstance(failed, urllib.error.URLError) else failed).__name__


def test_no_request_is_dropped_while_sighup_restarts_the_workers(server):
    process, base_url, log = server
    seen: list[str] = []
    # A probe every 50 ms, each on a connection of its own, as several load balancers' probes arrive: mostly while
    # the workers sit idle waiting for one, which is when a worker told to stop went on accepting.
    probes = []
    for tick in range(100):
        if tick == 10:
            process.send_signal(signal.SIGHUP)
        probe = threading.Thread(target=lambda: seen.append(_probe(base_url)))
        probe.start()
        probes.append(probe)
        time.sleep(0.05)
    for probe in probes:
        probe.join(timeout=60)

    assert "Hang up: Master" in log.read_text()
    failed = [outcome for outcome in seen if outcome != "200"]
    assert not failed, f"{len(failed)} of {len(seen)} probes failed: {sorted(set(failed))}"


def test_sighup_serves_the_code_deployed_since_gunicorn_started(fake_anthropic, tmp_path):
    # README's deploy: new code in the checkout, then SIGHUP. Workers forked by a master that had imported part of the
    # app (gunicorn.conf.py read the settings in it) kept the master's copies of those modules: a release's settings
    # were ignored, and new code importing a name those old modules lacked stopped every new worker from booting.
    checkout = tmp_path / "checkout"
    for name in ("opsion", "orgs", "insights", "templates", "static"):
        shutil.copytree(settings.BASE_DIR / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(settings.BASE_DIR / "gunicorn.conf.py", checkout)
    log = tmp_path / "gunicorn.log"
    process, base_url = start_server(server_environment(fake_anthropic), log, threads=2, cwd=checkout)
    try:
        wait_until_healthy(process, base_url, log)
        assert _probe_as(base_url, "deployed.example") == "400"  # not a host this release serves

        with (checkout / "opsion" / "settings.py").open("a") as deployed:
            deployed.write('\nALLOWED_HOSTS = [*ALLOWED_HOSTS, "deployed.example"]\n')
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _probe_as(base_url, "deployed.example") != "200" and time.monotonic() < deadline:
            time.sleep(0.5)

        assert _probe_as(base_url, "deployed.example") == "200", log.read_text()
    finally:
        stop(process)


def _probe_as(base_url: str, host: str) -> str:
    request = urllib.request.Request(f"{base_url}/healthz", headers={"Host": host})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return str(response.status)
    except urllib.error.HTTPError as refused:
        return str(refused.code)
