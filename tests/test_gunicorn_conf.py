"""gunicorn.conf.py gives a restart as long as the longest answer can take, from ANTHROPIC_TIMEOUT_SECONDS: README's
command once fixed `--graceful-timeout 130`, and an operator who raised the timeout above 65 s had answers cut off at
every deploy, with nothing saying so."""

import re
import shlex

import pytest

from tests.security.conftest import ROOT, base_env, run_python


def production_command() -> list[str]:
    """README's production command for gunicorn, as an operator would copy it."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("gunicorn ") and "wsgi" in line]
    return shlex.split(line)[1:]


def resolved(args: list[str], **env: str) -> dict[str, str]:
    """gunicorn's settings as it resolves them from `args` and the config file (--print-config), by name."""
    environment = base_env(
        SECRET_KEY="test-secret-key-not-for-production",
        FIELD_ENCRYPTION_KEYS="b3BzaW9uLXRlc3Qtb25seS1mZXJuZXQta2V5LTAwMDE=",
        **env,
    )
    result = run_python(["-m", "gunicorn", *args, "--print-config"], environment)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))


@pytest.mark.parametrize(
    ("timeout", "graceful"), [(None, "130"), ("60", "130"), ("65.5", "141"), ("90", "190"), ("0.5", "11")]
)
def test_readmes_command_waits_out_the_longest_answer_and_the_mail_after_it(timeout, graceful):
    # An answer can take twice ANTHROPIC_TIMEOUT_SECONDS (the first read, then the whole reply from its headers),
    # and the mail thread then sends for up to 10 s more (orgs/mailer.py).
    config = resolved(production_command(), ANTHROPIC_TIMEOUT_SECONDS=timeout)

    assert config["graceful_timeout"] == graceful
    assert config["timeout"] == graceful  # what a sync worker (no heartbeat while it answers) would need
    assert (config["worker_class"], config["workers"], config["threads"]) == ("gthread", "4", "8")


# What gunicorn's master runs before it forks a worker: it reads gunicorn.conf.py (as at start-up and at every
# SIGHUP), then reports what of the app that left in its own memory.
MASTER_READS_THE_FILE = """
import sys
from gunicorn.app.wsgiapp import WSGIApplication
sys.argv = ["gunicorn", "opsion.wsgi:application"]
WSGIApplication()
from django.conf import settings
ours = sorted(name for name in sys.modules if name.split(".")[0] in ("opsion", "orgs", "insights"))
print(ours, settings.configured)
"""


def test_the_master_keeps_none_of_the_app_so_a_sighup_starts_workers_on_the_code_and_settings_of_now():
    # Every worker is forked from the master and runs whatever module the master already imported: were the
    # settings read there, a SIGHUP (gunicorn's graceful restart, which loads an app not preloaded anew) would
    # start workers on the settings module, the .env values and the code gunicorn started with, beside the new
    # versions of everything else.
    environment = base_env(
        SECRET_KEY="test-secret-key-not-for-production",
        FIELD_ENCRYPTION_KEYS="b3BzaW9uLXRlc3Qtb25seS1mZXJuZXQta2V5LTAwMDE=",
    )
    result = run_python(["-c", MASTER_READS_THE_FILE], environment)

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[] False"


def test_a_setting_the_settings_refuse_stops_gunicorn_naming_it_never_its_value():
    result = run_python(
        ["-m", "gunicorn", *production_command(), "--print-config"],
        base_env(SECRET_KEY="test-secret-key-not-for-production", FIELD_ENCRYPTION_KEYS="not-a-key-but-secret"),
    )

    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS entry 1 (of 1) is not a Fernet key" in result.stderr
    assert "not-a-key-but-secret" not in result.stdout + result.stderr
