"""What error reports and log lines may show: Django's DEBUG pages, admin error e-mails, anything else built on
its filter, and every line the logging configuration writes."""

import logging
import logging.config
import re

from django.conf import settings
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# An Anthropic key, wherever it sits: a local variable, a dict, a bytes buffer of a posted form.
ANTHROPIC_KEY = re.compile(r"sk-ant-[\w-]{8,}")
# A personal API token (orgs.services.TOKEN_PREFIX, then 43 url-safe characters): the page that shows it once, the
# view and the API's reading of the Authorization header hold it. Its listed prefix (the first 12 characters) is
# left alone.
API_TOKEN = re.compile(r"opsn_[\w-]{20,}")
# The password in a URL's user information: postgres://user:password@host/…, redis://:password@host. Split as
# urllib splits it (the user name ends at the first ":", the password at the last "@" before the path), so an
# "@" nobody percent-encoded, in a user name (smtp://apikey@mail.example:…) or a password, hides no less.
URL_PASSWORD = re.compile(r"(?<=://)([^/?#:\s]*):[^/?#\s]+@")
# A Fernet token (orgs.crypto): the stored key's ciphertext, as the SQL saving it carries it (an error page's frame
# variables, Django's SQL log with DEBUG on). Any FIELD_ENCRYPTION_KEYS entry opens it, so a copy outside the
# database is the key to whoever later learns that entry. Its version byte and a timestamp's zero high bytes begin
# every token.
FERNET_TOKEN = re.compile(r"gAAAAA[\w-]{70,}={0,2}")


class KeySafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, applied with DEBUG on too, that also hides every value holding an Anthropic key.

    Django's own filter steps aside when DEBUG is on, so a developer's error page (or a screenshot of it
    in a ticket) would print a key from any local variable. It also cannot see into frames we do not own,
    such as the form parser holding a posted key. The platform key and the encryption keys are hidden by
    their exact values too, whatever their form. Passwords get the same treatment: inside URLs, and in
    the local variables of frames we do not own (a driver's connection parameters). The cost is that
    DEBUG pages show fewer local values.
    """

    def is_active(self, request) -> bool:
        return True

    def _hide_url_password(self, value):
        return URL_PASSWORD.sub(rf"\1:{self.cleansed_substitute}@", value) if isinstance(value, str) else value

    def cleanse_setting(self, key, value):
        """Django's, plus: a URL's password is hidden whatever the setting or variable is called.

        Django hides values by name (KEY, TOKEN, PASS…); `REDIS_URL`, the cache's `LOCATION` or a
        `DATABASE_URL` in the environment (which runserver copies into request.META) carry theirs
        inside an innocently named URL. The same method cleanses the settings and request.META.
        """
        return self._hide_url_password(super().cleanse_setting(key, value))

    def cleanse_special_types(self, request, value):
        value = super().cleanse_special_types(request, value)
        if type(value) is dict:  # e.g. psycopg's connection parameters: cleansed by key, as settings are
            value = self.cleanse_setting("", value)
        value = self._hide_url_password(value)
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not break the error page
            return self.cleansed_substitute
        if holds_secret(text):
            return self.cleansed_substitute
        return value


class KeySafeExceptionReporter(ExceptionReporter):
    """Django's reporter (the DEBUG page, the report e-mailed to ADMINS), its whole text redacted as a log line is.

    The filter above hides values by name and frames' variables by form, but the report also shows the request's
    URL, its GET parameters and every header as they came, and a client may put a key or token in any of them (a
    query string's `access_token=`, a header of its own). The cost is one pass of `redact` over each report."""

    def get_traceback_html(self):
        return redact(super().get_traceback_html())

    def get_traceback_text(self):
        return redact(super().get_traceback_text())


def redact(text: str) -> str:
    """`text` with every Anthropic key (by form, and the platform key by value), API token (by form), stored key's
    ciphertext (by form) and encryption key blanked.

    Percent-encoded too (`sk%2Dant%2D…`, typed so into an address): a server decodes it, and an access log keeps the
    request line and query string as sent (gunicorn's `%(r)s`, `%(q)s`). Such a text is given decoded, then blanked:
    its other escapes of printable ASCII characters are decoded with it, which only a text holding one ever sees.
    Escapes of anything else stay as they were sent: a line break or a terminal's escape (decoded, a line sent as one
    would write another, forged, into the log), markup and a space (an error report's HTML), any non-ASCII character."""
    text = _redacted_text(text)
    if "%" in text:
        decoded = _printable_unquoted(text)
        if decoded != text and (blanked := _redacted_text(decoded)) != decoded:
            return blanked
    return text


def holds_secret(text: str) -> bool:
    """Whether `text` (a question, a token's name, a request's path, a query string's parameter, a sign-in's `next`)
    holds anything `redact` blanks: a Claude API key, an API token, a stored key's ciphertext, an encryption key. An
    organisation's slug may not take such a form (Organisation.clean), so no page's own address does."""
    return redact(text) != text


# A percent-escape of a printable ASCII character: every key, token and encryption key redaction knows is written in
# those alone, so decoding them reveals one however it was encoded.
PRINTABLE_ESCAPE = re.compile(r"%(2[0-9A-Fa-f]|[3-6][0-9A-Fa-f]|7[0-9A-Ea-e])")
# …but for markup and a space, which no key holds: decoded in an error report's HTML (its headers, as sent), they
# would be markup there (%3Cscript%3E), and in a log line a field of its own.
KEPT_ESCAPED = frozenset(" \"&'<>`")


def _printable_unquoted(text: str) -> str:
    def decoded(escape: re.Match) -> str:
        character = chr(int(escape[1], 16))
        return escape[0] if character in KEPT_ESCAPED else character

    return PRINTABLE_ESCAPE.sub(decoded, text)


def _redacted_text(text: str) -> str:
    text = ANTHROPIC_KEY.sub("sk-ant-[redacted]", text)
    text = API_TOKEN.sub("opsn_[redacted]", text)
    text = FERNET_TOKEN.sub("[ciphertext redacted]", text)
    for secret in (settings.ANTHROPIC_API_KEY, *settings.FIELD_ENCRYPTION_KEYS):
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def configure_logging(config: dict) -> None:
    """`LOGGING_CONFIG`: Django's dictConfig, then every log record redacted, and given the ID of the request it
    was made for (`request_id`: "-" outside one), as it is made.

    Redacting records rather than one handler's output covers every handler there is: ours, Django's own
    (runserver's request log, the `django` logger's console handler with DEBUG on) and gunicorn's. Our own
    code never logs a key; this covers what we do not write, such as an HTTP library logging a header it
    refused, an exception whose text quotes a request, or a URL a visitor typed a key into.

    The request ID is set here for the same reason, rather than by a handler's filter: every handler's records
    have it (pytest's caplog too), so a format may name `%(request_id)s` whoever's handler writes it. It is read
    where the record is made, on the thread serving the request. It needs no redaction: it is ours, or a proxy's
    that redaction would leave as it is (opsion.requestid).
    """
    from opsion.requestid import NONE, current  # it imports this module's redact()

    logging.config.dictConfig(config)
    # Django's own configuration holds its `django` logger at INFO whatever the root's level: LOG_LEVEL=ERROR still
    # wrote a WARNING line for every 404. Raised to the root's level (never lowered: at DEBUG it stays at INFO), its
    # handlers (Django's mail_admins, for whoever sets ADMINS) kept.
    django_logger, root_level = logging.getLogger("django"), logging.getLogger().level
    if django_logger.level < root_level:
        django_logger.setLevel(root_level)
    base = logging.getLogRecordFactory()
    if getattr(base, "redacts_keys", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = _redacted(base(*args, **kwargs))
        record.request_id = current() or NONE
        return record

    factory.redacts_keys = True
    logging.setLogRecordFactory(factory)


_formatter = logging.Formatter()


class RefusedHostIsAWarning(logging.Filter):
    """On `django.security.DisallowedHost`: Django logs each request for a Host not in ALLOWED_HOSTS at
    ERROR with a traceback. Scanners and probes by IP address send those by the thousand, as they send the NULs and
    huge query strings opsion.middleware refuses: one WARNING line, still naming the host, so an operator can tell
    which name is missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info = record.exc_text = None
        # The logger let it through as an ERROR: as a WARNING it is written only where warnings are (LOG_LEVEL).
        return logging.getLogger(record.name).isEnabledFor(logging.WARNING)


def _redacted(record: logging.LogRecord) -> logging.LogRecord:
    """The record with any key in its message, arguments, traceback or stack blanked."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call (a bad format, a broken __str__) must not raise where it was made
        try:
            message = f"unformattable log call: {record.msg!r} {record.args!r}"
        except Exception:
            message = "unformattable log call"
        record.msg, record.args = message, None
    redacted = redact(message)
    if redacted != message or _args_hold_secret(record.args):
        # The message as written, and no arguments: a handler that reads them as they are (an error tracker sends
        # them as the message's parameters) must not find what the message left out ("%.12s", a mapping's value).
        record.msg, record.args = redacted, None
    if record.exc_info:
        try:
            record.exc_text = redact(_formatter.formatException(record.exc_info))
        except Exception:  # a malformed exc_info: logging itself would report it, never raise to the caller
            record.exc_info, record.exc_text = None, f"unformattable exc_info: {redact(repr(record.exc_info))}"
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _args_hold_secret(args) -> bool:
    """Whether a log call's arguments hold anything redaction hides, printed by its message or not."""
    if not args:
        return False
    try:
        text = repr(args)
    except Exception:  # a broken __repr__: the formatted message is all that is kept
        return True
    return holds_secret(text)
