"""The form an Anthropic API key must have before we store it."""

import re
import unicodedata

from opsion.errors import Refused

KEY_PREFIX = "sk-ant-"
# Anthropic's Admin API keys share the prefix but manage an organisation (its members, its keys): the Messages API
# refuses them, so one saved here would fail every query as an invalid key. Refused at once, saying which key it is.
ADMIN_KEY_PREFIX = "sk-ant-admin"
MIN_LENGTH = 40
MAX_LENGTH = 256
_ALLOWED = re.compile(r"[A-Za-z0-9_-]+")
# The whole rule in one JSON Schema pattern, for the API's document (the checks below say which part failed).
KEY_PATTERN = f"^{KEY_PREFIX}(?!admin)[A-Za-z0-9_-]{{{MIN_LENGTH - len(KEY_PREFIX)},{MAX_LENGTH - len(KEY_PREFIX)}}}$"
# Quotes (straight or curly) a copy from a shell line, a .env file, JSON or a document brings along with a key.
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


class KeyMalformed(Refused):
    code, status = "claude_api_key_malformed", 400


def _invisible(ch: str) -> bool:
    """Whitespace, or a character that takes no room on screen (Unicode's format characters: a zero-width space,
    a byte-order mark, a direction mark), which a copy from a chat app, a document or a file can carry along."""
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def _trim(raw: str) -> str:
    """`raw` without the invisible characters around it; inside the key they stay, to be refused by name."""
    start, end = 0, len(raw)
    while start < end and _invisible(raw[start]):
        start += 1
    while end > start and _invisible(raw[end - 1]):
        end -= 1
    return raw[start:end]


def _pasted_with_its_surroundings(key: str) -> bool:
    """A key pasted with what surrounded it: quotes, a variable name ("export ANTHROPIC_API_KEY="), a header's
    ("x-api-key: "). The box visibly holds a key starting with sk-ant-: saying a key must start so would not tell
    the person what is wrong."""
    return KEY_PREFIX in key and (not key.startswith(KEY_PREFIX) or key[-1] in _QUOTES)


def validate_claude_api_key(raw: str) -> str:
    """Return the trimmed key. Raises KeyMalformed with a message saying what is wrong."""
    # Trimmed of what the person cannot see as well as of whitespace: refused, "starts with sk-ant-" would be said of
    # a key that visibly does.
    key = _trim(raw or "")
    if not key:
        raise KeyMalformed("Enter your Anthropic API key.")
    if len(key) > MAX_LENGTH:
        raise KeyMalformed(f"That is too long to be an Anthropic API key (at most {MAX_LENGTH} characters).")
    if _pasted_with_its_surroundings(key):
        raise KeyMalformed(
            "Paste the key alone, without quotes around it or a variable name such as ANTHROPIC_API_KEY= before it. "
            f"It starts with “{KEY_PREFIX}”."
        )
    if not key.startswith(KEY_PREFIX):
        raise KeyMalformed(f"An Anthropic API key starts with “{KEY_PREFIX}”.")
    if any(ch.isspace() for ch in key):
        raise KeyMalformed("The key must not contain spaces or line breaks.")
    if not _ALLOWED.fullmatch(key):
        raise KeyMalformed("The key may contain only letters, digits, hyphens (-) and underscores (_).")
    if len(key) < MIN_LENGTH:
        raise KeyMalformed(f"That is too short to be an Anthropic API key (at least {MIN_LENGTH} characters).")
    if key.startswith(ADMIN_KEY_PREFIX):
        raise KeyMalformed(
            "That is an Anthropic Admin API key, which cannot ask Claude questions. "
            "Create an API key (not an Admin key) at console.anthropic.com and save that."
        )
    return key
