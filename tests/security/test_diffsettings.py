"""`manage.py diffsettings` masks the secrets it would print, as Django's error page masks its settings."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.commands.diffsettings import Command as DjangosCommand

SECRET_KEY = "diffsettings-secret-key-0123456789-not-for-production"
ENCRYPTION_KEY = Fernet.generate_key().decode()
PLATFORM_KEY = "sk-ant-api03-diffsettings-platform-key-00000000000000000000000000"
DB_PASSWORD = "db-password-diffsettings-1"
REDIS_PASSWORD = "redis-password-diffsettings-2"
MAIL_PASSWORD = "mail-password-diffsettings-3"
MASK = "********************"  # Django's SafeExceptionReporterFilter.cleansed_substitute
SECRETS = (SECRET_KEY, ENCRYPTION_KEY, PLATFORM_KEY, DB_PASSWORD, REDIS_PASSWORD, MAIL_PASSWORD)


@pytest.fixture
def secrets(settings, recwarn):  # recwarn: overriding DATABASES warns, and the command only reads it
    settings.SECRET_KEY = SECRET_KEY
    settings.FIELD_ENCRYPTION_KEYS = [ENCRYPTION_KEY]
    settings.ANTHROPIC_API_KEY = PLATFORM_KEY
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "PASSWORD": DB_PASSWORD}}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        }
    }
    settings.EMAIL_HOST_PASSWORD = MAIL_PASSWORD


def diffsettings(*args) -> str:
    out = io.StringIO()
    call_command("diffsettings", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("args", [(), ("--all",), ("--output", "unified"), ("--all", "--output", "unified")])
def test_it_prints_no_secret(secrets, args):
    output = diffsettings(*args)

    assert not [secret for secret in SECRETS if secret in output], output
    lines = {line.split(" = ")[0].lstrip("+ "): line for line in output.splitlines() if " = " in line}
    # Still listed, as set and differing from Django's defaults: only their values are masked, as on the error page.
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "ANTHROPIC_API_KEY", "EMAIL_HOST_PASSWORD"):
        assert "'********************'" in lines[name], lines[name]
    assert "'PASSWORD': '********************'" in lines["DATABASES"]
    assert "redis://:********************@127.0.0.1:6379/0" in lines["CACHES"]


@pytest.mark.parametrize("args", [(), ("--all",), ("--output", "unified"), ("--all", "--output", "unified")])
def test_the_rest_is_printed_as_djangos_command_prints_it(secrets, args):
    djangos = io.StringIO()
    call_command(DjangosCommand(), *args, stdout=djangos)

    ours, theirs = diffsettings(*args).splitlines(), djangos.getvalue().splitlines()

    assert len(ours) == len(theirs)  # the same settings, listed (or not) alike
    changed = [(mine, its) for mine, its in zip(ours, theirs, strict=True) if mine != its]
    assert changed and all(MASK in mine for mine, _ in changed), changed  # only a masked value differs
    assert any(line.endswith("WSGI_APPLICATION = 'opsion.wsgi.application'") for line in ours)


def test_a_secret_left_at_djangos_default_is_still_not_listed_as_changed(settings):
    # The mask must not make a changed setting look unchanged, nor an unchanged one look changed.
    settings.EMAIL_HOST_PASSWORD = ""

    output = diffsettings()

    assert "EMAIL_HOST_PASSWORD" not in output
    assert "SECRET_KEY = '********************'" in output.splitlines()
