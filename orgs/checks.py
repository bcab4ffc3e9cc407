"""System checks for what settings alone cannot refuse."""

import ipaddress
import re
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import connections

from opsion import health
from opsion.reporting import holds_secret
from orgs import guards


@register(Tags.security, deploy=True)
def abuse_guards_are_shared(app_configs, **kwargs) -> list[CheckWarning]:
    """The abuse guards count in the cache: without REDIS_URL that is each process's own memory, so with
    N processes N times the documented attempts get through (sign-in guesses included). `check --deploy`
    says so; the embedded default (DEBUG on, one process) needs no Redis."""
    if settings.DEBUG or settings.REDIS_URL:
        return []
    return [
        CheckWarning(
            "REDIS_URL is not set: the abuse guards (sign-in, key writes, new tokens) count per process.",
            hint="Set REDIS_URL to a Redis every process shares. A single-process deployment may ignore this.",
            id="opsion.W001",
        )
    ]


@register(Tags.caches, deploy=True)
def abuse_guards_cache_answers(app_configs, **kwargs) -> list[CheckWarning]:
    """Start-up reads REDIS_URL without asking Redis (settings stay offline), so an address Redis refuses passes
    it: a database number above the server's `databases` (16 by default), a wrong password, a server not there.
    Every abuse guard would then fail open at every request. This asks each server named once, as a guard would,
    with the same short timeouts, and never prints the URL (it may hold a password)."""
    if not settings.REDIS_URL:
        return []
    options = settings.CACHES["default"].get("OPTIONS", {})
    servers = [server.strip() for server in re.split("[;,]", settings.REDIS_URL)]
    failures = []
    for number, server in enumerate(servers, start=1):
        client = redis.Redis.from_url(server, **options)
        try:
            client.ping()  # connecting selects the database and authenticates, as the guards' first command does
        except redis.RedisError as exc:
            failures.append(f"server {number} of {len(servers)}: {guards.cache_failure(exc)}")
        finally:
            client.close()
    if not failures:
        return []
    return [
        CheckWarning(
            f"The abuse guards' Redis (REDIS_URL) did not answer ({'; '.join(failures)}): every guard would let "
            "every attempt through (sign-in guesses included).",
            hint="A database number must be below the server's `databases` (`redis-cli CONFIG GET databases`, 16 "
            "by default); check the password, host and port, and that this machine can reach Redis.",
            id="opsion.W006",
        )
    ]


PRINTING_BACKENDS = (
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
)


@register(Tags.security, deploy=True)
def mail_is_sent(app_configs, **kwargs) -> list[CheckWarning]:
    """`consolemail://` (or a file backend) is for development: in production it writes each password reset link,
    with which anyone can set the account's password for an hour, to the server's output and the logs, and the
    user gets no e-mail."""
    if (
        settings.DEBUG
        or getattr(settings, "EMAIL_BACKEND", "") not in PRINTING_BACKENDS
        or not settings.EMAIL_CONFIGURED
    ):
        return []
    return [
        CheckWarning(
            "EMAIL_URL prints mail instead of sending it: password reset links would land in the server's output.",
            hint="Set EMAIL_URL to your mail server (smtp+tls://USER:PASSWORD@HOST:587), or unset it.",
            id="opsion.W002",
        )
    ]


@register(Tags.security, deploy=True)
def platform_key_is_set(app_configs, **kwargs) -> list[CheckWarning]:
    """Without the platform key every organisation that has no key of its own is told "AI Insights is temporarily
    unavailable", and in production no customer is told why. One not of an Anthropic key's form (quotes kept by an
    env file, another secret pasted) fails the same way, upstream. The key itself is never printed."""
    from orgs.validation import KeyMalformed, validate_claude_api_key

    if settings.DEBUG:
        return []
    if not settings.ANTHROPIC_API_KEY:
        return [
            CheckWarning(
                "ANTHROPIC_API_KEY is not set: organisations without their own Claude API key cannot ask anything "
                '("AI Insights is temporarily unavailable").',
                hint="Set it to Opsion's platform key (sk-ant-…). A deployment where every organisation uses its own "
                "key may ignore this.",
                id="opsion.W003",
            )
        ]
    try:
        # The key as it is sent: validation trims a pasted key of invisible characters (a byte-order mark), which
        # the settings do not take off the platform key.
        malformed = validate_claude_api_key(settings.ANTHROPIC_API_KEY) != settings.ANTHROPIC_API_KEY
    except KeyMalformed:
        malformed = True
    if malformed:
        return [
            CheckWarning(
                "ANTHROPIC_API_KEY is not of an Anthropic key's form (sk-ant- then letters, digits, - and _): "
                "Anthropic would refuse every platform-key question.",
                hint="Check for quotes or other characters kept around the key by the file or tool that sets it.",
                id="opsion.W004",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def keys_travel_encrypted(app_configs, **kwargs) -> list[CheckWarning]:
    """Every query carries its key (the platform's, or the organisation's own) in its headers to ANTHROPIC_BASE_URL.
    Start-up accepts http:// for a fake or a proxy on this machine; to any other host every key would cross the
    network in clear, readable by whatever is on the way. The URL is never printed."""
    if settings.DEBUG:
        return []
    parts = urlsplit(settings.ANTHROPIC_BASE_URL)
    if parts.scheme.lower() != "http" or _is_this_machine(parts.hostname or ""):
        return []
    return [
        CheckWarning(
            "ANTHROPIC_BASE_URL is not https:// and names another machine: every query's Claude API key, the "
            "platform's and each organisation's own, would cross the network unencrypted.",
            hint="Use https://, or unset it for Anthropic's own address. Plain http:// is for a proxy on this machine "
            "(127.0.0.1, localhost), which then makes the TLS connection itself.",
            id="opsion.W007",
        )
    ]


def _is_this_machine(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register(Tags.staticfiles, deploy=True)
def static_files_collected(app_configs, **kwargs) -> list[CheckWarning]:
    """With STATIC_MANIFEST on, every page refers to hashed file names that only collectstatic's manifest knows:
    without it (or with a corrupt one) each page is a 500 and /healthz a 503. Plain storage always resolves."""
    failure = health.static_files_failure()
    if failure is None:
        return []
    return [
        CheckWarning(
            "The static files manifest is missing or unreadable: every page would be a 500, and /healthz a 503 "
            f"({type(failure).__name__}: {failure}).",
            hint=f"Run `python manage.py collectstatic --noinput` so that {settings.STATIC_ROOT} holds "
            "staticfiles.json, before starting the app and before this check.",
            id="opsion.W005",
        )
    ]


@register(Tags.database)
def no_slug_looks_like_a_secret(app_configs, databases=None, **kwargs) -> list[CheckWarning]:
    """An organisation saved with a slug of a key's or a token's form before admin refused such slugs (seed_demo, a
    shell, an old release) is refused at every page and API address, as a key pasted into the address bar is
    (opsion.middleware), and its WARNING line names the path redacted: this names each, by number, when `migrate`
    (or `check --database default`) runs the checks that read the database. Slugs are few, and read in Python: SQL
    cannot apply the log lines' patterns."""
    from orgs.models import Organisation  # the app registry is ready by the time checks run

    warnings = []
    for database in databases or ():
        if Organisation._meta.db_table not in connections[database].introspection.table_names():
            continue  # `migrate` runs the checks before it creates the tables
        rows = Organisation.objects.using(database).values_list("pk", "slug").order_by("pk")
        numbers = [pk for pk, slug in rows.iterator() if holds_secret(slug)]
        if numbers:
            pages = ", ".join(f"/admin/orgs/organisation/{pk}/change/" for pk in numbers)
            warnings.append(
                CheckWarning(
                    f"{len(numbers)} organisation(s) have a slug that looks like a Claude API key or an API token: "
                    "every page and API address of theirs is refused (400 'Not opened').",
                    hint=f"Give each a new slug in admin ({pages}), and tell its members the new address.",
                    id="opsion.W008",
                )
            )
    return warnings
