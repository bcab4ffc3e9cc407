"""Production settings: `check --deploy` is clean, start-up refuses missing secrets, and every response
carries the security headers; over HTTPS the cookies are Secure and HttpOnly and HSTS is on."""

import base64
import functools
import json
import re
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import Client, override_settings

from orgs import crypto
from tests.base import PASSWORD
from tests.security.conftest import ROOT, base_env, run_python


@functools.cache
def collected_static_root() -> str:
    """A STATIC_ROOT as `collectstatic` leaves it, as far as the app reads it: a manifest naming the stylesheet
    every page links (collectstatic itself, admin's files hashed and compressed, would take a minute)."""
    root = Path(tempfile.mkdtemp(prefix="opsion-static-"))
    manifest = {"version": "1.1", "hash": "0", "paths": {"css/opsion.css": "css/opsion.0123456789ab.css"}}
    (root / "staticfiles.json").write_text(json.dumps(manifest))
    return str(root)


def production_env(**overrides: str | None) -> dict[str, str]:
    env = {
        "DEBUG": "0",
        "HTTPS": "1",
        "STATIC_MANIFEST": "1",
        "STATIC_ROOT": collected_static_root(),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "opsion.example",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgres://opsion@db.opsion.example:5432/opsion",
        "ANTHROPIC_API_KEY": "sk-ant-api03-" + "p" * 40,
    }
    env.update(overrides)
    return base_env(**env)


def start_up_stops(message: str, *, deploy: bool = False, **env: str | None) -> subprocess.CompletedProcess:
    """Run `manage.py check` (`--deploy` too if asked) with the production settings as `env` changes them, and assert
    start-up stopped with an ImproperlyConfigured saying `message`; returns the run, for what else a test checks."""
    result = run_python(["manage.py", "check", *(["--deploy"] if deploy else [])], production_env(**env))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr, result.stderr[-2000:]
    return result


def check_deploy(**env: str | None) -> subprocess.CompletedProcess:
    """Run `manage.py check --deploy --fail-level WARNING` with the production settings as `env` changes them: a
    warning fails it, as it fails a deploy script that runs it."""
    return run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(**env))


def test_check_deploy_is_clean_with_production_settings(redis_server):
    # REDIS_URL names database 0 of the Redis on 127.0.0.1:6379, which `check --deploy` asks (opsion.W006).
    result = check_deploy()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output and "ERROR" not in output, output


@pytest.mark.parametrize("manifest", [None, "{not json"], ids=["collectstatic-not-run", "corrupt-manifest"])
def test_check_deploy_warns_when_the_static_files_manifest_is_missing_or_unreadable(tmp_path, manifest):
    # Every page would be a 500 ("Missing staticfiles manifest entry"), and /healthz a 503.
    if manifest is not None:
        (tmp_path / "staticfiles.json").write_text(manifest)
    result = check_deploy(STATIC_ROOT=str(tmp_path))

    assert result.returncode != 0
    assert "(opsion.W005) The static files manifest is missing or unreadable" in result.stdout + result.stderr


def test_an_empty_static_root_means_the_default_one():
    # `STATIC_ROOT=` in an env file is "unset", as for ANTHROPIC_BASE_URL: Django's storage refused "" with a
    # traceback from check --deploy (no W005, whatever the manifest) and a 500 from /healthz.
    env = production_env(STATIC_ROOT="", DJANGO_SETTINGS_MODULE="opsion.settings")
    shown = run_python(
        ["-c", "import django; django.setup(); from django.conf import settings; print(settings.STATIC_ROOT)"], env
    )
    checked = run_python(["manage.py", "check", "--deploy"], production_env(STATIC_ROOT=""))

    assert shown.stdout.strip() == str(ROOT / "staticfiles"), shown.stdout + shown.stderr
    assert "Traceback" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_check_deploy_does_not_look_for_a_manifest_without_static_manifest(tmp_path):
    result = check_deploy(STATIC_ROOT=str(tmp_path), STATIC_MANIFEST="0")

    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_when_the_abuse_guards_would_count_per_process():
    result = check_deploy(REDIS_URL=None)

    assert result.returncode != 0
    assert "(opsion.W001) REDIS_URL is not set: the abuse guards" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # The server has 16 databases (Redis's default): SELECT 99 is refused at every command.
        ("redis://127.0.0.1:6379/99", "ResponseError: DB index is out of range"),
        # A password the server does not take (this one has none set): refused before anything is counted.
        ("redis://:redis-password-canary@127.0.0.1:6379/0", "AuthenticationError: "),
        ("redis://127.0.0.1:6379/0,redis://127.0.0.1:6379/99", "ResponseError: DB index is out of range"),
    ],
    ids=["database-out-of-range", "wrong-password", "replica-out-of-range"],
)
def test_check_deploy_warns_when_redis_refuses_what_redis_url_asks_for(redis_server, url, reason):
    # Start-up cannot ask Redis (settings stay offline), so a database number above the server's limit passed it,
    # and every abuse guard then failed open at request time with `check --deploy` clean.
    result = check_deploy(REDIS_URL=url)
    output = result.stdout + result.stderr

    assert result.returncode != 0, output
    assert "(opsion.W006) The abuse guards' Redis (REDIS_URL) did not answer" in output, output
    assert reason in output, output
    assert "redis-password-canary" not in output


def test_check_deploy_warns_when_mail_would_only_be_printed():
    # consolemail:// is for development: in production it writes every reset link, a credential for an hour, to
    # the server's output and whatever collects it, and no one gets their e-mail.
    result = check_deploy(EMAIL_URL="consolemail://")

    assert result.returncode != 0
    assert "(opsion.W002) EMAIL_URL prints mail instead of sending it" in result.stdout + result.stderr


@pytest.mark.parametrize("value", [None, "", " "], ids=["unset", "empty", "blank"])
def test_check_deploy_warns_when_there_is_no_platform_key(value):
    # Without it every organisation that has no key of its own is told "AI Insights is temporarily unavailable",
    # and in production no customer is told why: only an ERROR line per refused question said so.
    result = check_deploy(ANTHROPIC_API_KEY=value)

    assert result.returncode != 0
    assert "(opsion.W003) ANTHROPIC_API_KEY is not set" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "value",
    [
        '"sk-ant-api03-platform-canary-0000000000000000"',
        "platform-canary-0000000000000000000000000",
        "\ufeffsk-ant-api03-platform-canary-0000000000000000",
    ],
    ids=["quoted", "another secret", "byte-order mark"],
)
def test_check_deploy_warns_when_the_platform_key_is_not_of_an_anthropic_keys_form(value):
    # Quotes kept by an env file (docker's --env-file keeps them), or another secret pasted: every platform-key
    # question failed upstream as "temporarily unavailable", with check --deploy clean. The key is never printed.
    # A byte-order mark (an env file saved by Notepad) is trimmed from a key pasted in Settings, but the settings
    # send the platform key as it is set: it must be warned of, not passed as the pasted key is.
    result = check_deploy(ANTHROPIC_API_KEY=value)
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert "(opsion.W004) ANTHROPIC_API_KEY is not of an Anthropic key's form" in output
    assert "canary" not in output


@pytest.mark.parametrize(
    "url", ["http://anthropic-gateway.internal:8080", "HTTP://10.0.4.17", "http://[fd00::17]:8080/v1"]
)
def test_check_deploy_warns_when_every_key_would_cross_the_network_unencrypted(url):
    # Every query carries its key, the platform's or a customer's, in its headers: over http:// to another machine
    # each one crosses the network in clear, readable by whatever sits on the way. Start-up accepts http:// (the fake
    # Anthropic, a sidecar on this machine), so check --deploy is where an operator hears of it, the URL unprinted.
    result = check_deploy(ANTHROPIC_BASE_URL=url)
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert "(opsion.W007) ANTHROPIC_BASE_URL is not https://" in output
    assert url.split("//")[1].split(":")[0].split("/")[0] not in output


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765", ""])
def test_check_deploy_leaves_plain_http_to_this_machine_alone(url):
    # A sidecar proxy or the fake Anthropic on this machine: the key never crosses a network there.
    result = check_deploy(ANTHROPIC_BASE_URL=url)
    output = result.stdout + result.stderr

    # The checks ran: a start-up that stopped before them (an ImproperlyConfigured) names no W007 either.
    assert "System check identified" in output, output[-2000:]
    assert "opsion.W007" not in output


@pytest.mark.parametrize("variable", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"])
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_start_up_stops_and_names_a_missing_secret(variable, value):
    start_up_stops(f"{variable} is not set.", **{variable: value})


def test_a_secret_key_starting_with_a_dollar_sign_is_taken_as_it_is():
    # django-environ reads a value starting with "$" as the name of another variable: a generated secret
    # such as "$Xy9…" would stop start-up with "SECRET_KEY is not set", and "$HOME" would become "/root".
    secret = "$" + secrets.token_urlsafe(50)
    show = "from django.conf import settings; print(settings.SECRET_KEY)"

    result = run_python(["manage.py", "shell", "-c", show], production_env(SECRET_KEY=secret))

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == secret


@pytest.mark.parametrize(
    "keys, message",
    [
        ("typo,valid", "FIELD_ENCRYPTION_KEYS entry 1 (of 2) is not a Fernet key"),
        ("valid,typo", "FIELD_ENCRYPTION_KEYS entry 2 (of 2) is not a Fernet key"),
        (" , ", "FIELD_ENCRYPTION_KEYS holds no key"),
    ],
    ids=["first", "second", "none"],
)
def test_start_up_stops_on_a_malformed_encryption_key_naming_the_entry_not_its_value(keys, message):
    # A rotation typo would otherwise start an app whose every key read and write fails, /healthz green.
    valid, typo = Fernet.generate_key().decode(), Fernet.generate_key().decode().rstrip("=")
    value = keys.replace("typo", typo).replace("valid", valid)

    result = start_up_stops(message, FIELD_ENCRYPTION_KEYS=value)

    assert typo not in result.stderr and valid not in result.stderr


@pytest.mark.parametrize(
    "separator, extra",
    [(" ", "old"), (";", "old"), ("", "old"), ("", '"'), ("", "junk")],
    ids=["space-separated", "semicolon-separated", "run-together", "quoted", "trailing-junk"],
)
def test_start_up_stops_on_an_entry_that_is_not_exactly_one_fernet_key(separator, extra):
    # Fernet() decodes leniently: it drops characters outside base64 and whatever follows the "=" padding. So
    # "NEW OLD" or "NEW;OLD" (the keys not separated by a comma) started as NEW alone: every key saved under OLD
    # unreadable, with start-up, /healthz and check --deploy all clean.
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    value = new + separator + (old if extra == "old" else extra)

    result = start_up_stops("FIELD_ENCRYPTION_KEYS entry 1 (of 1) is not a Fernet key", FIELD_ENCRYPTION_KEYS=value)

    assert new not in result.stderr and old not in result.stderr


@pytest.mark.parametrize(
    "form",
    ['"NEW,OLD"', "'NEW,OLD'", '"NEW","OLD"', ' "NEW" , OLD '],
    ids=["list-double-quoted", "list-single-quoted", "each-quoted", "one-quoted-with-spaces"],
)
def test_keys_in_quotes_kept_as_part_of_the_value_still_start_as_the_same_keys(form):
    # `docker run --env-file` and `kubectl create secret --from-env-file` keep a .env line's quotes in the value.
    # Fernet() skipped them (they are not base64), so such a deployment ran on every key it listed; quotes are not
    # part of any key, so dropping a pair of them reads the same keys and hides no second key in an entry.
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    show = "from django.conf import settings; print(','.join(settings.FIELD_ENCRYPTION_KEYS))"
    value = form.replace("NEW", new).replace("OLD", old)

    result = run_python(["manage.py", "shell", "-c", show], production_env(FIELD_ENCRYPTION_KEYS=value))

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == f"{new},{old}"


def test_a_key_in_standard_base64_still_starts_as_the_same_key():
    # base64.b64encode(os.urandom(32)) writes "+" and "/" where Fernet.generate_key() writes "-" and "_": the same 32
    # bytes, which Fernet has always accepted. Such a deployment must keep starting, and reading what it stored.
    raw = bytes([0xFB, 0xFF]) * 16
    standard, url_safe = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    assert "+" in standard and "/" in standard
    show = "from orgs import crypto; print(crypto.encrypt('still readable', organisation_id=7))"

    result = run_python(["manage.py", "shell", "-c", show], production_env(FIELD_ENCRYPTION_KEYS=standard))

    assert result.returncode == 0, result.stderr[-2000:]
    with override_settings(FIELD_ENCRYPTION_KEYS=[url_safe]):
        assert crypto.decrypt(result.stdout.strip().splitlines()[-1], organisation_id=7) == "still readable"


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "support.opsion.example", "https://", "mailto:", "https://support opsion.example"]
)
def test_start_up_refuses_a_support_url_that_is_not_a_web_or_mail_address(url):
    # It is put in an href on the insights page.
    start_up_stops("SUPPORT_URL must be an https://, http:// or mailto: address.", SUPPORT_URL=url)


MALFORMED_URLS = {"DATABASE_URL": "a database URL", "EMAIL_URL": "a mail URL"}


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "postgres//opsion:password-canary@db/opsion"),
        ("DATABASE_URL", "password-canary"),
        # A generated password holding "/" that was not percent-encoded: urllib reads what precedes it as the
        # port and its ValueError ("Port could not be cast…") would print the password to the start-up log.
        ("DATABASE_URL", "postgres://opsion:password-canary/x@db:5432/opsion"),
        ("DATABASE_URL", "postgres://opsion@db:password-canary/opsion"),
        ("EMAIL_URL", "smtp+tls//opsion:password-canary@smtp.example:587"),
        ("EMAIL_URL", "password-canary"),
        ("EMAIL_URL", "smtps://opsion:password-canary@:587"),
        ("EMAIL_URL", "smtp+tls://opsion:password-canary/x@smtp.example:587"),
        ("EMAIL_URL", "http://opsion:password-canary@smtp.example"),
    ],
)
def test_start_up_stops_on_a_malformed_url_without_printing_it(variable, url):
    result = start_up_stops(f"{variable} is not {MALFORMED_URLS[variable]}", **{variable: url})

    assert "password-canary" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:6379",
        "redis//:redis-password-canary@cache:6379/0",
        "redis://a:6379;cache:6379",
        # A password holding an unencoded "/": redis-py would take "redis-password-canary" for the port.
        "redis://:redis-password-canary/x@cache:6379/0",
        # What redis-py reads of the rest of the address: an option it cannot read raises at every guard (fail
        # open), "/7/8" is database 78 (Redis refuses every command on it) and "/cache" quietly database 0.
        "redis://:redis-password-canary@cache:6379/0?db=seven",
        "redis://:redis-password-canary@cache:6379/0?socket_timeout=soon",
        "unix:///run/redis.sock?db=seven&password=redis-password-canary",
        "redis://:redis-password-canary@cache:6379/7/8",
        "redis://:redis-password-canary@cache:6379/cache",
    ],
)
def test_start_up_stops_on_a_redis_url_the_guards_could_never_use(url):
    # Accepted, every guard would fail open on every request, with `check --deploy` clean.
    result = start_up_stops("REDIS_URL must be a redis://, rediss:// or unix:// address", deploy=True, REDIS_URL=url)

    assert "redis-password-canary" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "rediss://:secret@cache.example:6380/0",
        "redis://a:6379/0,redis://b:6379/0",
        "redis://cache.example",
        "redis://cache.example:6379/",
        "redis://cache.example:6379/3?health_check_interval=30",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_tls_and_replicated_redis_urls_are_accepted(url):
    # By the settings: none of these servers exists, which `check --deploy` would add (opsion.W006).
    result = run_python(["manage.py", "check", "--fail-level", "WARNING"], production_env(REDIS_URL=url))
    assert result.returncode == 0, result.stderr[-2000:]


EMAIL_SETTINGS = """
import json
from django.conf import settings as s
names = ["EMAIL_CONFIGURED", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "EMAIL_HOST_USER",
         "EMAIL_HOST_PASSWORD", "EMAIL_TIMEOUT", "DEFAULT_FROM_EMAIL", "PASSWORD_RESET_TIMEOUT"]
print(json.dumps({name: getattr(s, name) for name in names}))
"""


def email_settings(**env) -> dict:
    result = run_python(["manage.py", "shell", "-c", EMAIL_SETTINGS], production_env(**env))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_email_url_sets_up_smtp_with_a_bounded_wait_and_reset_links_last_an_hour():
    url = "smtp+tls://opsion%40mail.example:mail-pass%2Fword@smtp.mail.example:587"

    sent_by = email_settings(EMAIL_URL=url, DEFAULT_FROM_EMAIL="Opsion <no-reply@opsion.example>")

    assert sent_by == {
        "EMAIL_CONFIGURED": True,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.mail.example",
        "EMAIL_PORT": 587,
        "EMAIL_USE_TLS": True,
        "EMAIL_HOST_USER": "opsion@mail.example",
        "EMAIL_HOST_PASSWORD": "mail-pass/word",
        "EMAIL_TIMEOUT": 10,
        "DEFAULT_FROM_EMAIL": "Opsion <no-reply@opsion.example>",
        "PASSWORD_RESET_TIMEOUT": 3600,
    }


def test_without_an_email_url_opsion_knows_it_sends_no_mail_and_a_console_url_prints_it():
    assert email_settings()["EMAIL_CONFIGURED"] is False
    assert email_settings(EMAIL_URL=" ")["EMAIL_CONFIGURED"] is False
    console = email_settings(EMAIL_URL="consolemail://")
    assert console["EMAIL_CONFIGURED"] is True
    assert console["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.parametrize("value", ["no-reply", "Opsion", "a@b.example\nBcc: victim@example.com"])
def test_start_up_stops_on_a_from_address_that_is_no_address(value):
    start_up_stops("DEFAULT_FROM_EMAIL must be an e-mail address", DEFAULT_FROM_EMAIL=value)


@pytest.mark.parametrize("level", ["info", " Warning ", "DEBUG"])
def test_the_log_level_is_read_in_any_case(level):
    result = run_python(["manage.py", "check"], production_env(LOG_LEVEL=level))
    assert result.returncode == 0, result.stderr[-2000:]


def test_at_log_level_debug_rendering_an_answer_does_not_flood_the_log():
    # An operator debugging with LOG_LEVEL=DEBUG got markdown-it's trace of its parser: about a hundred lines
    # ("entering fence: StateBlock(line=0,…)") for every answer shown, burying the lines they were looking for.
    code = (
        "import logging; from insights.rendering import render_markdown; "
        "render_markdown('## Heading\\n\\n- one\\n- two\\n\\n> quoted\\n\\n```\\ncode\\n```'); "
        "logging.getLogger('opsion').debug('our own debug line')"
    )

    result = run_python(["manage.py", "shell", "-c", code], production_env(LOG_LEVEL="DEBUG"))

    assert result.returncode == 0, result.stderr[-2000:]
    assert "our own debug line" in result.stderr  # DEBUG is on
    assert "markdown_it" not in result.stderr, result.stderr[:2000]


def test_start_up_stops_on_an_unknown_log_level_naming_the_variable():
    start_up_stops("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL.", LOG_LEVEL="verbose")


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ANTHROPIC_TIMEOUT_SECONDS", "sixty", "ANTHROPIC_TIMEOUT_SECONDS must be a number, e.g. 60."),
        ("ANTHROPIC_TIMEOUT_SECONDS", "inf", "ANTHROPIC_TIMEOUT_SECONDS must be a number of at least 0.1"),
        ("INSIGHTS_WINDOW_SECONDS", "0", "INSIGHTS_WINDOW_SECONDS must be a number of at least 1, e.g. 3600."),
        ("INSIGHTS_BYOM_LIMIT", "-1", "INSIGHTS_BYOM_LIMIT must be a number of at least 0, e.g. 200."),
        ("CONN_MAX_AGE", "1.5", "CONN_MAX_AGE must be a number, e.g. 60."),
        # 0 would make every call to Anthropic a 400, or refuse every question as too long.
        ("ANTHROPIC_MAX_TOKENS", "0", "ANTHROPIC_MAX_TOKENS must be a number of at least 1, e.g. 1024."),
        ("INSIGHTS_MAX_QUERY_CHARS", "0", "INSIGHTS_MAX_QUERY_CHARS must be a number of at least 1, e.g. 4000."),
        ("RECENT_AUTHENTICATION_SECONDS", "15m", "RECENT_AUTHENTICATION_SECONDS must be a number, e.g. 900."),
    ],
)
def test_start_up_stops_on_a_numeric_setting_that_is_not_a_sensible_number(variable, value, message):
    start_up_stops(message, **{variable: value})


@pytest.mark.parametrize(
    "variable, value",
    [
        ("HTTPS", "ture"),
        ("RATELIMIT_ENABLE", "enabled"),
        ("BEHIND_PROXY", "yes please"),
        ("STATIC_MANIFEST", "-"),
        ("DEBUG", "fasle"),
    ],
)
def test_start_up_stops_on_an_on_off_setting_it_cannot_read(variable, value):
    # django-environ reads anything but its few words for "true" as false: HTTPS=ture started with no HTTPS
    # redirect, no HSTS and cookies without Secure, and RATELIMIT_ENABLE=enabled with every abuse guard off, each
    # with `check --deploy` clean.
    start_up_stops(f"{variable} must be 1 or 0 (or true/false, yes/no, on/off)", **{variable: value})


def test_on_off_settings_read_their_usual_spellings_and_an_empty_value_as_unset():
    code = (
        "from django.conf import settings as s; "
        "print(repr((s.DEBUG, s.HTTPS, s.SECURE_PROXY_SSL_HEADER is not None, s.STATIC_MANIFEST, s.RATELIMIT_ENABLE)))"
    )
    spelled = production_env(
        DEBUG=" False ", HTTPS="Yes", BEHIND_PROXY="on", STATIC_MANIFEST="0", RATELIMIT_ENABLE="off"
    )
    # An empty value is the default, as for STATIC_ROOT: `HTTPS=` in an env file turned HTTPS off.
    empty = production_env(DEBUG="", HTTPS="", BEHIND_PROXY="", STATIC_MANIFEST="", RATELIMIT_ENABLE="")

    read = [run_python(["manage.py", "shell", "-c", code], env) for env in (spelled, empty)]

    assert read[0].stdout.strip().splitlines()[-1] == repr((False, True, True, False, False)), read[0].stderr[-2000:]
    assert read[1].stdout.strip().splitlines()[-1] == repr((False, True, False, True, True)), read[1].stderr[-2000:]


def test_numeric_settings_are_read_as_numbers():
    code = (
        "from django.conf import settings as s; "
        "print(repr((s.ANTHROPIC_TIMEOUT_SECONDS, s.INSIGHTS_PLATFORM_LIMIT, s.DATABASES['default']['CONN_MAX_AGE'])))"
    )
    env = production_env(ANTHROPIC_TIMEOUT_SECONDS=" 30 ", INSIGHTS_PLATFORM_LIMIT="0", CONN_MAX_AGE="0")

    result = run_python(["manage.py", "shell", "-c", code], env)

    assert result.stdout.strip().splitlines()[-1] == repr((30.0, 0, 0)), result.stderr[-2000:]


def test_a_postgresql_connection_to_a_vanished_server_fails_instead_of_hanging():
    code = "from django.conf import settings as s; import json; print(json.dumps(s.DATABASES['default']['OPTIONS']))"

    result = run_python(["manage.py", "shell", "-c", code], production_env())

    options = json.loads(result.stdout.strip().splitlines()[-1])
    assert options["keepalives"] == 1 and options["tcp_user_timeout"] == 30_000
    assert options["keepalives_idle"] + options["keepalives_interval"] * options["keepalives_count"] <= 60


def test_the_platform_key_is_read_without_surrounding_whitespace():
    code = "from django.conf import settings; print(repr(settings.ANTHROPIC_API_KEY))"

    result = run_python(["manage.py", "shell", "-c", code], production_env(ANTHROPIC_API_KEY=" sk-ant-api03-k\n"))

    assert result.stdout.strip().splitlines()[-1] == repr("sk-ant-api03-k"), result.stderr[-2000:]


BASE_URL_OF_A_CLIENT = """
from django.conf import settings
from insights import claude
class Key:
    def reveal(self):
        return "sk-ant-api03-k"
print(repr(str(claude._client(Key()).base_url)))
"""


@pytest.mark.parametrize("value", ["", "  ", "\n"])
def test_an_empty_anthropic_base_url_means_anthropics_own(value):
    # A manifest or .env line `ANTHROPIC_BASE_URL=` (the README's fake-server line emptied again) read as "unset"
    # here, but the SDK then read the variable itself and took "" for the address: every query failed, "AI Insights
    # is temporarily unavailable", with nothing at start-up and no log line saying why.
    result = run_python(["manage.py", "shell", "-c", BASE_URL_OF_A_CLIENT], production_env(ANTHROPIC_BASE_URL=value))

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == repr("https://api.anthropic.com"), result.stdout


@pytest.mark.parametrize(
    "value, model", [("", "claude-sonnet-5-5"), ("  ", "claude-sonnet-5-5"), (" claude-opus-4-1\n", "claude-opus-4-1")]
)
def test_an_empty_model_means_the_default_one_and_a_model_is_read_trimmed(value, model):
    # `ANTHROPIC_MODEL=` in an env file (a template's variable left empty) was taken as the model "": Anthropic
    # refused every query, shown as "AI Insights is temporarily unavailable", with start-up and check --deploy clean.
    code = "from django.conf import settings; print(repr(settings.ANTHROPIC_MODEL))"
    result = run_python(["manage.py", "shell", "-c", code], production_env(ANTHROPIC_MODEL=value))

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == repr(model), result.stdout


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8765", "api.anthropic.com", "ftp://proxy.example", "https://", "http://[::1", "https://a b"]
)
def test_start_up_stops_on_an_anthropic_base_url_that_is_not_a_web_address(url):
    # Accepted, every query on every key failed as "temporarily unavailable", with `check --deploy` clean.
    start_up_stops("ANTHROPIC_BASE_URL must be an https:// or http:// address", deploy=True, ANTHROPIC_BASE_URL=url)


def test_host_and_origin_lists_may_have_a_space_after_each_comma():
    # "opsion.example, 10.0.0.5" was read as ["opsion.example", " 10.0.0.5"]: the load balancer's probe by address
    # then got a 400 ("Invalid HTTP_HOST header") and the instance was marked unhealthy, with check --deploy clean.
    code = "from django.conf import settings as s; print(repr((s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS)))"
    env = production_env(
        ALLOWED_HOSTS=" opsion.example, 10.0.0.5 ,", CSRF_TRUSTED_ORIGINS="https://opsion.example, https://b.example"
    )

    result = run_python(["manage.py", "shell", "-c", code], env)

    assert result.stdout.strip().splitlines()[-1] == repr(
        (["opsion.example", "10.0.0.5"], ["https://opsion.example", "https://b.example"])
    ), result.stderr[-2000:]


def test_a_load_balancer_probe_over_plain_http_is_answered_not_redirected(db, settings):
    settings.SECURE_SSL_REDIRECT = True  # HTTPS=1, the production default; no proxy header on a direct probe

    assert Client().get("/healthz").status_code == 200
    assert Client().get("/accounts/login/").status_code == 301  # everything else still goes to HTTPS


# Settings as production computes them from its environment, read in a separate process.
PRODUCTION_SECURITY = """
import json
from django.conf import settings
names = ["SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_SSL_REDIRECT",
         "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_SECURE", "CSRF_COOKIE_HTTPONLY",
         "X_FRAME_OPTIONS", "SECURE_REFERRER_POLICY", "SECURE_CONTENT_TYPE_NOSNIFF", "DEBUG"]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


@pytest.fixture
def production_security(settings) -> dict:
    result = run_python(
        ["manage.py", "shell", "-c", PRODUCTION_SECURITY], production_env(DATABASE_URL="sqlite:///:memory:")
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    for name, value in values.items():
        setattr(settings, name, value)
    return values


def test_production_settings_turn_on_hsts_and_secure_httponly_cookies(world, production_security):
    assert production_security["SECURE_HSTS_SECONDS"] >= 31536000
    assert production_security["DEBUG"] is False
    client = Client()
    # Over plain HTTP the app redirects to HTTPS before anything else.
    assert client.get("/accounts/login/").status_code == 301

    page = client.get("/accounts/login/", secure=True)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] and csrf["httponly"]

    signed_in = client.post(
        "/accounts/login/",
        {"username": "member@acme.test", "password": PASSWORD, "csrfmiddlewaretoken": csrf.value},
        secure=True,
    )
    assert signed_in.status_code == 302
    session = signed_in.cookies["sessionid"]
    assert session["secure"] and session["httponly"]
    assert session["samesite"] == "Lax"


def _assert_security_headers(response, label: str) -> None:
    csp = response["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, label
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    # The whole policy: each directive limits something (where scripts, styles, fetches and forms may
    # go, plugins, framing, <base>); loosening any one of them must fail here.
    assert directives == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "object-src": "'none'",
    }, label
    assert response["X-Frame-Options"] == "DENY", label
    assert response["Referrer-Policy"] == "same-origin", label
    assert response["X-Content-Type-Options"] == "nosniff", label


@pytest.mark.parametrize(
    "path",
    [
        "/orgs/acme/settings/",
        "/orgs/acme/insights/",
        "/api/v1/orgs/acme/settings",
        "/api/v1/orgs/acme/insights/usage",
        "/api/v1/orgs/acme/insights/queries",
        "/api/v1/orgs/globex/settings",  # an error is as private as an answer
        "/api/v1/orgs/acme/no-such-thing",
    ],
)
def test_settings_pages_and_api_answers_are_never_cached(world, path):
    client = Client()
    client.force_login(world.acme_admin)
    response = client.get(path)
    assert "no-store" in response["Cache-Control"], path
    _assert_security_headers(response, path)


def test_the_sign_in_page_and_api_refusals_carry_the_security_headers(world):
    _assert_security_headers(Client().get("/accounts/login/"), "sign-in page")
    _assert_security_headers(Client().get("/api/v1/orgs/acme/settings"), "API 401")


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/orgs/acme/settings/", {"HTTP_HOST": "evil.example"}),  # a Host not in ALLOWED_HOSTS
        ("/accounts/login/?next=%00", {}),  # a NUL in the query string
        ("/api/v1/orgs/acme/settings?x=%00", {}),
    ],
)
def test_the_400_answers_to_malformed_requests_carry_the_security_headers_too(world, path, headers):
    # Refused before the pages' own middleware ran: a scanner's request is answered as any page is.
    response = Client().get(path, **headers)

    assert response.status_code == 400
    assert "no-store" in response["Cache-Control"], path
    _assert_security_headers(response, path)


def test_with_debug_on_the_technical_page_for_an_unknown_host_keeps_its_own_style(world, settings):
    # A developer reaching `make run` by another name (a LAN address) gets Django's page saying what to add to
    # ALLOWED_HOSTS; under the CSP its inline style is blocked, as django-csp already spares its 404 and 500 pages.
    settings.DEBUG = True

    response = Client().get("/orgs/acme/settings/", HTTP_HOST="evil.example")

    assert response.status_code == 400 and "ALLOWED_HOSTS" in response.content.decode()
    assert "Content-Security-Policy" not in response


def test_with_debug_off_a_400_of_the_sites_own_still_carries_the_policy(world, settings):
    settings.DEBUG = False

    assert "Content-Security-Policy" in Client().get("/orgs/acme/settings/", HTTP_HOST="evil.example")


TEMPLATE_DIRS = [ROOT / "templates", ROOT / "orgs" / "templates", ROOT / "insights" / "templates"]


def test_no_template_has_inline_script_or_style():
    """The CSP allows only files from our origin, so inline code would be blocked in the browser anyway."""
    templates = [p for d in TEMPLATE_DIRS if d.exists() for p in d.rglob("*.html")]
    assert len(templates) >= 8
    offences = []
    for template in templates:
        text = template.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{template.relative_to(ROOT)}:{number}"
            if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", line, re.I):
                offences.append(f"{where}: inline <script>")
            if re.search(r"<style\b", line, re.I):
                offences.append(f"{where}: <style> element")
            if re.search(r"\sstyle\s*=", line, re.I):
                offences.append(f"{where}: style= attribute")
            if re.search(r"\son[a-z]+\s*=", line, re.I):
                offences.append(f"{where}: inline event handler")
            if re.search(r"javascript:", line, re.I):
                offences.append(f"{where}: javascript: URL")
    assert not offences, "\n".join(offences)
