"""Opsion settings, read from the environment (and a local `.env` in development).

Defaults give a working single-process SQLite set-up. A missing SECRET_KEY or FIELD_ENCRYPTION_KEYS
stops start-up (DEBUG on or off) with a message saying what to set.
"""

import logging
import math
import re
import warnings
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

_ON, _OFF = ("1", "true", "yes", "on", "y", "ok"), ("0", "false", "no", "off", "n")


def _flag(name: str, default: bool) -> bool:
    """An on/off setting, checked now: django-environ reads anything but its few words for "true" as false, so
    HTTPS=ture would start without the HTTPS redirect, HSTS or Secure cookies, and RATELIMIT_ENABLE=enabled with
    every abuse guard off. An empty value is the default, as for STATIC_ROOT."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw not in _ON + _OFF:
        raise ImproperlyConfigured(f"{name} must be 1 or 0 (or true/false, yes/no, on/off).")
    return raw in _ON


# Values already in the environment win over the file, so tests and CI stay hermetic.
if _flag("OPSION_READ_DOTENV", default=True):
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = _flag("DEBUG", default=False)


def _required(name: str, hint: str) -> str:
    # Read as it is: django-environ takes a value starting with "$" for the name of another variable, so a
    # generated secret such as "$Xy9…" would read as unset (and "$HOME" as the home directory).
    value = env.ENVIRON.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} is not set. {hint}")
    return value


def _number(name: str, default: int | float, *, minimum: int | float, cast=int):
    """A numeric setting, checked now: a typo ("sixty") stops start-up naming the variable, and so does a value
    that would quietly switch a protection off (INSIGHTS_WINDOW_SECONDS=0 would count nothing, ever)."""
    raw = env.str(name, default=str(default)).strip()
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, e.g. {default}.") from None
    if not math.isfinite(value) or value < minimum:
        raise ImproperlyConfigured(f"{name} must be a number of at least {minimum}, e.g. {default}.")
    return value


SECRET_KEY = _required(
    "SECRET_KEY",
    "Set it to a long random string, e.g. "
    "python -c 'import secrets; print(secrets.token_urlsafe(50))'. `make run` writes one to .env.",
)


# Exactly one key of the form Fernet.generate_key() prints ("+" and "/" for "-" and "_" are the same bytes, and
# always worked). Fernet() itself decodes leniently: it skips characters outside base64 and ignores whatever follows
# the "=" padding, so "NEW OLD" or "NEW;OLD" would be taken as NEW alone and every secret written under OLD would be
# unreadable, with start-up clean.
_FERNET_KEY_FORM = re.compile(r"[A-Za-z0-9_+/-]{43}=")


def _unquoted(value: str) -> str:
    """`value` trimmed, without one pair of quotes around it (when no other such quote is inside): `docker run
    --env-file` and `kubectl create secret --from-env-file` keep a .env line's quotes in the value, which Fernet()
    skipped (they are not base64), so such a deployment started. No key holds a quote, so this reads the same keys
    and lets no second key hide in an entry."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" and value[0] not in value[1:-1]:
        return value[1:-1].strip()
    return value


def _fernet_keys() -> list[str]:
    """Comma-separated Fernet keys: the first encrypts, every key decrypts. Independent of SECRET_KEY.

    Each is checked now, not at the first save: a typo in a rotation would otherwise start an app whose
    every key read and write fails (with /healthz green). A message names the entry, never its value.
    """
    hint = (
        "Set it to one or more comma-separated Fernet keys, e.g. "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
    )
    entries = _unquoted(_required("FIELD_ENCRYPTION_KEYS", hint)).split(",")
    keys = [_unquoted(k) for k in entries if _unquoted(k)]
    if not keys:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS holds no key. {hint}")
    for position, key in enumerate(keys, 1):
        try:
            if not _FERNET_KEY_FORM.fullmatch(key):
                raise ValueError
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS entry {position} (of {len(keys)}) is not a Fernet key: "
                "32 url-safe base64-encoded bytes (44 characters ending in '='), as Fernet.generate_key() prints. "
                "Separate keys with commas only, without quotes."
            ) from None
    return keys


FIELD_ENCRYPTION_KEYS = _fernet_keys()


def _names(name: str, default: list[str]) -> list[str]:
    """A comma-separated list, each entry trimmed: django-environ keeps the space in "a.example, b.example", and
    " b.example" matches no Host and no Origin (a load balancer's probe by address refused, with check --deploy
    clean)."""
    return [entry.strip() for entry in env.list(name, default=default) if entry.strip()]


ALLOWED_HOSTS = _names("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = _names("CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "opsion.views.csrf_failure"  # a settings form gone stale goes back to its page

INSTALLED_APPS = [
    "orgs",  # first, so its `changepassword` (which mails the user) is found before django.contrib.auth's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_ratelimit",
    "ninja",  # serves the API docs page (Swagger UI) from our own static files: no CDN, CSP-clean
    "insights",
]

MIDDLEWARE = [
    "opsion.requestid.RequestIdMiddleware",  # first: every other layer's log lines and answers carry the ID
    "opsion.middleware.HeadWithoutBodyMiddleware",  # it drops whatever body the others wrote
    # No HTTPS redirect sending back an address that holds a key (RejectNulMiddleware refuses it).
    "opsion.middleware.WithholdHttpsRedirectMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Above whatever may refuse a request itself (a NUL, an unknown Host), so its 400 carries them too.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "opsion.middleware.CSPMiddleware",  # django-csp's, sparing DEBUG's technical 400 page
    "opsion.middleware.NoStoreMiddleware",
    "opsion.middleware.DatabaseUnavailableMiddleware",
    "opsion.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "opsion.middleware.ApiErrorShapeMiddleware",
    "opsion.middleware.ApiHeadMiddleware",
]

ROOT_URLCONF = "opsion.urls"
WSGI_APPLICATION = "opsion.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orgs.context_processors.organisations",
            ],
            "libraries": {"request_id": "opsion.requestid"},  # {% request_reference %}: "Reference: <id>"
        },
    },
]


def _database() -> dict:
    """DATABASE_URL as Django's settings. A URL naming no engine, or one urllib cannot split, stops start-up with
    a message that does not print it: django-environ's own warning would print it whole, password included, to
    the start-up log, and urllib's "Port could not be cast to integer value as '…'" would print what it took
    for the port, which for a password holding an unencoded "/" is the password."""
    url = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    refusal = "DATABASE_URL is not a database URL: postgres://USER:PASSWORD@HOST:5432/NAME, or sqlite:///PATH."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = environ.Env.db_url_config(url)
    except ValueError:
        raise ImproperlyConfigured(refusal + " Percent-encode a /, # or ? in the password.") from None
    if not config.get("ENGINE"):
        raise ImproperlyConfigured(refusal)
    return config


DATABASES = {"default": _database()}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # select_for_update() is a no-op on SQLite; BEGIN IMMEDIATE takes the write lock at the
    # start of every atomic block, which serialises the rolling limiter exactly.
    # WAL lets readers run beside the one writer and makes each commit one fsync of the log;
    # synchronous=NORMAL keeps it crash-safe for the application (a power cut may lose the last
    # commits), the usual trade for an embedded single-machine database.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    from psycopg import IsolationLevel

    # The limiter, and every other decision that locks a row and then counts (the API token cap, a key write's
    # re-check), relies on READ COMMITTED: each statement after the row lock sees rows committed by the transaction
    # that held it. PostgreSQL's default, but a server or role may be given another: named here, every transaction
    # Django begins says its level (no round trip more). The limiter's own call runs outside one: insights/ratelimit.py
    # checks the server's default for it.
    DATABASES["default"].setdefault("OPTIONS", {})["isolation_level"] = IsolationLevel.READ_COMMITTED
    # Health checks drop connections that died while idle.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A persistent connection whose server vanished (a failover, a dropped network path) would hold its
    # thread for ever; libpq's TCP keep-alives and user timeout make it fail within about a minute.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        tcp_user_timeout=30_000,
    )
# Persistent connections on both databases: a new PostgreSQL connection per request costs more than
# all of a query's own work, and a new SQLite connection re-runs the PRAGMAs and Django's
# registration of its SQL functions (docs/benchmarks.md).
DATABASES["default"]["CONN_MAX_AGE"] = _number("CONN_MAX_AGE", 60, minimum=0)
TEST_DATABASE_NAME = env.str("TEST_DATABASE_NAME", default="")
if TEST_DATABASE_NAME:
    DATABASES["default"]["TEST"] = {"NAME": TEST_DATABASE_NAME}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "orgs.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]


def _redis_url() -> str:
    """The shared cache's address (Django's RedisCache takes several, separated by commas or semicolons).
    Checked now: the cache is built at the first guard, and one it cannot parse (`127.0.0.1:6379`, with no
    scheme) would leave every abuse guard failing open for good, with `check --deploy` clean. The message
    never prints the URL (it may hold a password)."""
    url = env.str("REDIS_URL", default="").strip()
    servers = [server.strip() for server in re.split("[;,]", url)] if url else []
    if not all(_redis_can_read(server) for server in servers):
        raise ImproperlyConfigured(
            "REDIS_URL must be a redis://, rediss:// or unix:// address, e.g. redis://127.0.0.1:6379/0 "
            "(percent-encode a /, # or ? in the password)."
        )
    return url


def _redis_can_read(url: str) -> bool:
    """Whether redis-py reads the address as it was meant, by its own parser (what RedisCache calls at the first
    guard): a scheme it knows, a port that is a number (urllib takes whatever precedes an unencoded "/" in the
    password for the port) and options it can read (`?db=seven` raises at every guard, leaving them all open). The
    path of a redis:// address must be a database number: redis-py reads "/7/8" as database 78, which Redis refuses
    at every command, and ignores "/cache", quietly sharing database 0."""
    try:
        parse_url(url)  # raises ValueError, naming no part of the address
        path = urlsplit(url).path
    except ValueError:
        return False
    return url.startswith("unix://") or re.fullmatch(r"/?|/[0-9]+", path) is not None


REDIS_URL = _redis_url()
if REDIS_URL:
    # Bounded waits: redis-py waits for ever by default, so a Redis that accepts connections but never answers
    # (hung, or a network path dropping its replies) would hold every sign-in and key write, one worker thread
    # each, until the instance (its /healthz too) stopped answering. With these the guards fail open instead.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    # django-ratelimit only knows django-redis by name (W001), but Django's built-in RedisCache gives it
    # what it needs: a cache shared by every process, with an atomic add() and incr().
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    # Local memory is per process: correct only for the single-process embedded default.
    # django-ratelimit warns about it (E003/W001); production sets REDIS_URL.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = _flag("RATELIMIT_ENABLE", default=True)

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Admin's times say UTC, as the customer's pages do (opsion/formats/en: used for en-gb, ahead of Django's own).
FORMAT_MODULE_PATH = ["opsion.formats"]

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default="") or str(BASE_DIR / "staticfiles")  # empty is unset, as elsewhere
# Hashed, compressed files from `collectstatic` in production; plain files from the apps in
# development and tests (STATIC_MANIFEST=0), served by whitenoise straight from the finders.
STATIC_MANIFEST = _flag("STATIC_MANIFEST", default=not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# Security headers. HTTPS defaults to on whenever DEBUG is off.
HTTPS = _flag("HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# A load balancer probes the instance itself over plain HTTP; a redirect would read as unhealthy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _flag("BEHIND_PROXY", default=False) else None
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
# How long after typing their password (signing in, changing it, confirming it) someone may create an API token
# without typing it again (orgs.recent_auth). 0 asks every time.
RECENT_AUTHENTICATION_SECONDS = _number("RECENT_AUTHENTICATION_SECONDS", 15 * 60, minimum=0)
CSRF_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Error pages and reports hide sensitive values with DEBUG on too, and any value holding an Anthropic key.
DEFAULT_EXCEPTION_REPORTER_FILTER = "opsion.reporting.KeySafeExceptionReporterFilter"
# …and the whole report (the request's URL, GET parameters and headers too) is redacted as log lines are.
DEFAULT_EXCEPTION_REPORTER = "opsion.reporting.KeySafeExceptionReporter"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# AI Insights.
# Trimmed: a key mounted from a secret file usually ends in a newline, which no HTTP header may carry.
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="").strip()


def _anthropic_base_url() -> str:
    """Where the SDK sends queries. Empty or unset is Anthropic's own address, said here: given None, the SDK reads
    the variable itself and takes an empty one for the address, failing every query. Anything but a web address
    stops start-up (accepted, every query on every key would fail as "temporarily unavailable")."""
    url = env.str("ANTHROPIC_BASE_URL", default="").strip()
    if not url:
        return "https://api.anthropic.com"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    if not parts or parts.scheme.lower() not in ("https", "http") or not parts.hostname or " " in url:
        raise ImproperlyConfigured(
            "ANTHROPIC_BASE_URL must be an https:// or http:// address, or unset for Anthropic's."
        )
    return url


ANTHROPIC_BASE_URL = _anthropic_base_url()
# Empty is unset, as for ANTHROPIC_BASE_URL: the model "" (a template's variable left empty) failed every query.
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="").strip() or "claude-sonnet-5-5"
ANTHROPIC_MAX_TOKENS = _number("ANTHROPIC_MAX_TOKENS", 1024, minimum=1)
ANTHROPIC_TIMEOUT_SECONDS = _number("ANTHROPIC_TIMEOUT_SECONDS", 60, minimum=0.1, cast=float)
# No SDK retries in the request path: the SDK obeys any retry-after without a cap, which would
# hold a worker (and the user) for as long as Anthropic asks. The user can simply ask again.
INSIGHTS_PLATFORM_LIMIT = _number("INSIGHTS_PLATFORM_LIMIT", 20, minimum=0)
INSIGHTS_BYOM_LIMIT = _number("INSIGHTS_BYOM_LIMIT", 200, minimum=0)
INSIGHTS_WINDOW_SECONDS = _number("INSIGHTS_WINDOW_SECONDS", 3600, minimum=1)
INSIGHTS_MAX_QUERY_CHARS = _number("INSIGHTS_MAX_QUERY_CHARS", 4000, minimum=1)


def _support_url() -> str:
    """Where "contact Opsion support" links (the limit-reached notice); unset, the words stay plain text.
    Checked now: it is put in an href, so anything but a web or mail address is refused."""
    url = env.str("SUPPORT_URL", default="").strip()
    prefix = next((p for p in ("https://", "http://", "mailto:") if url.lower().startswith(p)), "")
    # A scheme alone ("https://", "mailto:", e.g. from an empty variable in a template) or a space is no address.
    if url and (not prefix or len(url) == len(prefix) or any(c.isspace() for c in url)):
        raise ImproperlyConfigured("SUPPORT_URL must be an https://, http:// or mailto: address.")
    return url


SUPPORT_URL = _support_url()


def _email() -> dict:
    """EMAIL_URL as Django's EMAIL_* settings, or {} when it is unset: Opsion then sends no mail (no password reset
    by e-mail; the pages say to ask Opsion support). A URL of an unknown scheme, an SMTP URL naming no host, or
    one urllib cannot split stops start-up with a message that does not print it: urllib's "Port could not be cast
    to integer value as '…'" would print what it took for the port, which for a password holding an unencoded "/"
    is the password."""
    url = env.str("EMAIL_URL", default="").strip()
    if not url:
        return {}
    refusal = (
        "EMAIL_URL is not a mail URL: smtp+tls://USER:PASSWORD@HOST:587, smtp+ssl://USER:PASSWORD@HOST:465 or "
        "consolemail:// (percent-encode a /, #, ?, @ or : in the user name or password)."
    )
    try:
        config = environ.Env.email_url_config(url)
    except (ValueError, ImproperlyConfigured):
        raise ImproperlyConfigured(refusal) from None
    if config["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend" and not config["EMAIL_HOST"]:
        raise ImproperlyConfigured(refusal)
    # Django has no setting for the URL's other query options; unset parts keep Django's defaults.
    return {name: value for name, value in config.items() if value is not None and name != "OPTIONS"}


def _from_email() -> str:
    """Who the mail is from: an address, optionally with a name ("Opsion <no-reply@opsion.example>")."""
    value = env.str("DEFAULT_FROM_EMAIL", default="Opsion <no-reply@localhost>").strip()
    address = parseaddr(value)[1]
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ImproperlyConfigured(
            "DEFAULT_FROM_EMAIL must be an e-mail address, e.g. Opsion <no-reply@opsion.example>."
        )
    return value


_EMAIL = _email()
EMAIL_CONFIGURED = bool(_EMAIL)  # False: no "Forgot your password?", and the reset pages say to ask support
globals().update(_EMAIL)  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS…
# Django's SMTP connection waits for ever by default: a mail server that accepts and never answers would hold a
# worker thread for good (the reset e-mail is sent after its page is written, but on the same thread).
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = _from_email()
# How long a password reset link works; it also stops working once used (Django's token covers the password hash).
PASSWORD_RESET_TIMEOUT = 3600


def _log_level() -> str:
    """The root log level, in any case: `info` is as common in deployment manifests as `INFO`, and
    logging itself knows only the upper-case names (it would stop start-up with "Unable to configure root
    logger")."""
    level = env.str("LOG_LEVEL", default="INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ImproperlyConfigured("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    return level


LOG_LEVEL = _log_level()


def _quiet_at(level: str) -> str:
    """A chatty library's logger level: `level`, or LOG_LEVEL where that is higher (at ERROR, their warnings go too)."""
    return max(level, LOG_LEVEL, key=logging.getLevelName)


# Whoever logs it and whichever handler writes it, a record holding an Anthropic key or an encryption key
# is redacted as it is made (opsion.reporting.configure_logging).
LOGGING_CONFIG = "opsion.reporting.configure_logging"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # [request_id]: the X-Request-ID of the request the line was written for ("-" outside one), the
    # reference users quote to support.
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "filters": {"refused_host": {"()": "opsion.reporting.RefusedHostIsAWarning"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The SDK and its HTTP client log request options at DEBUG; keep them quiet.
        "anthropic": {"level": _quiet_at("WARNING")},
        "httpx": {"level": _quiet_at("WARNING")},
        "httpx2": {"level": _quiet_at("WARNING")},
        "httpcore": {"level": _quiet_at("WARNING")},
        "httpcore2": {"level": _quiet_at("WARNING")},  # anthropic 2.x's; at DEBUG it logs a rejected header whole
        # markdown-it traces its parser at DEBUG, about a hundred lines per answer shown: LOG_LEVEL=DEBUG is for ours.
        "markdown_it": {"level": _quiet_at("INFO")},
        # A Host not in ALLOWED_HOSTS: one WARNING line naming it, not Django's ERROR with a traceback.
        "django.security.DisallowedHost": {"filters": ["refused_host"]},
    },
}
