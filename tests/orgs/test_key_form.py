"""The form a Claude API key must have, refused the same way by the console and the API."""

import re

import pytest

from orgs.models import AuditEvent, ClaudeApiKey
from orgs.validation import KEY_PATTERN, KeyMalformed, validate_claude_api_key
from tests.base import GOOD_KEY
from tests.clients import api_put_key, bearer, console
from tests.orgs.helpers import error_of, stored_key

MARK = "ECHOmark7"
BODY = "a" * 40
PASTE_ALONE = (
    "Paste the key alone, without quotes around it or a variable name such as ANTHROPIC_API_KEY= before it. "
    "It starts with “sk-ant-”."
)

# (id, submitted key, what the refusal must say). Every key carries MARK so a test can prove it is never echoed.
MALFORMED = [
    ("empty", "   \n\t ", "Enter your Anthropic API key."),
    ("no prefix", f"{MARK}-api03-{BODY}", "An Anthropic API key starts with “sk-ant-”."),
    ("openai style", f"sk-proj-{MARK}{BODY}", "An Anthropic API key starts with “sk-ant-”."),
    ("upper-case prefix", f"SK-ANT-api03-{MARK}{BODY}", "An Anthropic API key starts with “sk-ant-”."),
    ("look-alike hyphen in prefix", f"sk\u2010ant-api03-{MARK}{BODY}", "An Anthropic API key starts with “sk-ant-”."),
    ("inner space", f"sk-ant-api03-{MARK} {BODY}", "The key must not contain spaces or line breaks."),
    ("inner newline", f"sk-ant-api03-{MARK}\n{BODY}", "The key must not contain spaces or line breaks."),
    ("inner tab", f"sk-ant-api03-{MARK}\t{BODY}", "The key must not contain spaces or line breaks."),
    ("inner no-break space", f"sk-ant-api03-{MARK}\u00a0{BODY}", "The key must not contain spaces or line breaks."),
    (
        "cyrillic look-alikes",
        f"sk-ant-api03-{MARK}" + "\u0430\u0435\u043e" * 14,
        "The key may contain only letters, digits, hyphens (-) and underscores (_).",
    ),
    (
        "full-width digits",
        f"sk-ant-api03-{MARK}" + "\uff11" * 40,
        "The key may contain only letters, digits, hyphens (-) and underscores (_).",
    ),
    (
        "zero-width space",
        f"sk-ant-api03-{MARK}\u200b{BODY}",
        "The key may contain only letters, digits, hyphens (-) and underscores (_).",
    ),
    (
        "punctuation",
        f"sk-ant-api03-{MARK}<script>{BODY}",
        "The key may contain only letters, digits, hyphens (-) and underscores (_).",
    ),
    *[
        (case_id, raw, PASTE_ALONE)
        for case_id, raw in [
            ("double quotes", f'"sk-ant-api03-{MARK}{BODY}"'),
            ("single quotes", f"'sk-ant-api03-{MARK}{BODY}'"),
            ("curly quotes", f"\u201csk-ant-api03-{MARK}{BODY}\u201d"),
            ("closing quote only", f"sk-ant-api03-{MARK}{BODY}'"),
            ("env line", f"ANTHROPIC_API_KEY=sk-ant-api03-{MARK}{BODY}"),
            ("env line quoted", f'ANTHROPIC_API_KEY="sk-ant-api03-{MARK}{BODY}"'),
            ("shell export", f"export ANTHROPIC_API_KEY=sk-ant-api03-{MARK}{BODY}"),
            ("yaml line", f"anthropic_api_key: sk-ant-api03-{MARK}{BODY}"),
            ("header line", f"x-api-key: sk-ant-api03-{MARK}{BODY}"),
            ("authorization header", f"Bearer sk-ant-api03-{MARK}{BODY}"),
        ]
    ],
    (
        # Anthropic's Admin API keys (Console → Admin keys) manage an organisation's members and keys; the Messages
        # API refuses them, so saved they would fail every query as "invalid". The look-alike is a common mix-up.
        "admin key",
        f"sk-ant-admin01-{MARK}{BODY}",
        "That is an Anthropic Admin API key, which cannot ask Claude questions. Create an API key (not an Admin key) "
        "at console.anthropic.com and save that.",
    ),
    (
        "too short",
        f"sk-ant-{MARK}",
        "That is too short to be an Anthropic API key (at least 40 characters).",
    ),
    (
        "too long",
        f"sk-ant-api03-{MARK}" + "a" * 300,
        "That is too long to be an Anthropic API key (at most 256 characters).",
    ),
]
CASES = [pytest.param(raw, message, id=case_id) for case_id, raw, message in MALFORMED]


@pytest.mark.parametrize(("raw", "message"), CASES)
def test_validation_says_what_is_wrong(raw, message):
    with pytest.raises(KeyMalformed) as refused:
        validate_claude_api_key(raw)

    assert refused.value.message == message
    assert refused.value.code == "claude_api_key_malformed"
    assert MARK not in message


@pytest.mark.parametrize(
    "length",
    [40, 256],
    ids=["shortest accepted", "longest accepted"],
)
def test_keys_at_the_length_limits_are_accepted(length):
    key = "sk-ant-" + "x" * (length - len("sk-ant-"))

    assert validate_claude_api_key(key) == key


@pytest.mark.parametrize("length", [39, 257], ids=["one too short", "one too long"])
def test_keys_just_past_the_length_limits_are_refused(length):
    with pytest.raises(KeyMalformed):
        validate_claude_api_key("sk-ant-" + "x" * (length - len("sk-ant-")))


def test_the_api_documents_pattern_refuses_what_validation_refuses():
    # The OpenAPI document's one-line rule (KEY_PATTERN) and the checks that say what is wrong must agree.
    assert not [case for case, raw, _ in MALFORMED if re.fullmatch(KEY_PATTERN, raw.strip())]
    for length in (39, 40, 256, 257):
        key = "sk-ant-" + "x" * (length - len("sk-ant-"))
        assert bool(re.fullmatch(KEY_PATTERN, key)) == (40 <= length <= 256), length


@pytest.mark.parametrize(("raw", "message"), CASES)
def test_the_console_refuses_a_malformed_key_in_words_without_echoing_it(world, raw, message):
    response = console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": raw})

    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert MARK not in page
    assert 'value=""' in page  # the password field comes back empty
    assert not ClaudeApiKey.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("raw", "message"), CASES)
def test_the_api_refuses_a_malformed_key_with_its_code_and_message(world, raw, message):
    response = api_put_key(console(), "acme", {"apiKey": raw}, **bearer(world.acme_admin))

    assert response.status_code == 400
    assert error_of(response) == {"code": "claude_api_key_malformed", "message": message}
    assert MARK not in response.content.decode()
    assert not ClaudeApiKey.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_malformed_key_leaves_the_stored_key_alone(world):
    console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})

    console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": f"sk-ant-{MARK} x"})

    assert stored_key(world.acme) == GOOD_KEY
    assert AuditEvent.objects.count() == 1


def test_a_refused_replacement_says_the_stored_key_was_kept(world):
    # The card's green "Key saved." describes the stored key; right after pressing "Save new key" it read as if the
    # refused one had been saved.
    client = console(world.acme_admin)
    client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})

    response = client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": f"sk-ant-{MARK} x"})

    page = response.content.decode()
    assert (
        "The key must not contain spaces or line breaks. Your new key was not saved: the stored key is unchanged."
        in page
    )


def test_a_refused_first_key_is_not_said_to_leave_a_stored_key(world):
    response = console(world.acme_admin).post(
        "/orgs/acme/settings/claude-api-key/save", {"api_key": f"sk-ant-{MARK} x"}
    )

    page = response.content.decode()
    assert "The key must not contain spaces or line breaks." in page and "stored key is unchanged" not in page


SURROUNDED = "  \t\r\n" + GOOD_KEY + " \n\u00a0"


def test_the_console_trims_surrounding_whitespace_and_accepts_the_key(world):
    response = console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": SURROUNDED})

    assert response.status_code == 302
    assert stored_key(world.acme) == GOOD_KEY


def test_the_api_trims_surrounding_whitespace_and_accepts_the_key(world):
    response = api_put_key(console(), "acme", {"apiKey": SURROUNDED}, **bearer(world.acme_admin))

    assert response.status_code == 200
    assert stored_key(world.acme) == GOOD_KEY


# Invisible characters a copy can carry along with the key: a zero-width space or joiner (chat apps, wikis), a word
# joiner or soft hyphen (word processors), a byte-order mark (a file saved by Notepad), a direction mark (a page in
# a right-to-left language). Around the key they are trimmed as whitespace is: refused, the message named what the
# person could not see, "starts with sk-ant-" beside a key that visibly does. Inside the key they are refused.
INVISIBLE_EDGES = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u200e", "\u200f"]


@pytest.mark.parametrize("mark", INVISIBLE_EDGES, ids=[f"U+{ord(c):04X}" for c in INVISIBLE_EDGES])
def test_invisible_characters_around_a_pasted_key_are_trimmed_as_whitespace_is(mark):
    assert validate_claude_api_key(f"{mark} {GOOD_KEY}\n{mark}") == GOOD_KEY


def test_the_console_trims_a_byte_order_mark_and_a_zero_width_space_around_the_key(world):
    response = console(world.acme_admin).post(
        "/orgs/acme/settings/claude-api-key/save", {"api_key": f"\ufeff{GOOD_KEY}\u200b"}
    )

    assert response.status_code == 302
    assert stored_key(world.acme) == GOOD_KEY


def test_the_api_trims_a_byte_order_mark_and_a_zero_width_space_around_the_key(world):
    response = api_put_key(console(), "acme", {"apiKey": f"\ufeff{GOOD_KEY}\u200b"}, **bearer(world.acme_admin))

    assert response.status_code == 200
    assert stored_key(world.acme) == GOOD_KEY


def test_an_invisible_character_alone_is_an_empty_key():
    with pytest.raises(KeyMalformed) as refused:
        validate_claude_api_key("\u200b \ufeff")

    assert refused.value.message == "Enter your Anthropic API key."


MEGABYTE_KEY = f"sk-ant-api03-{MARK}" + "a" * (1024 * 1024)


@pytest.mark.parametrize("debug", [False, True])
def test_the_console_refuses_a_megabyte_paste_in_words_without_echoing_it(world, settings, caplog, debug):
    # As from a browser holding its CSRF cookie: the CSRF check reads the form before the view does. Left to Django,
    # that was logged at ERROR with a traceback and, with DEBUG on (as `make run` serves), answered with Django's
    # technical page instead of these words: a paste is a person's mistake, one WARNING line, DEBUG on or off.
    settings.DEBUG = debug
    client = console(world.acme_admin, enforce_csrf_checks=True)
    client.get("/orgs/acme/settings/")
    token = client.cookies["csrftoken"].value
    caplog.clear()

    response = client.post(
        "/orgs/acme/settings/claude-api-key/save", {"api_key": MEGABYTE_KEY, "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "What you sent is too large" in page
    assert MARK not in page
    assert not ClaudeApiKey.objects.exists()
    assert not AuditEvent.objects.exists()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info], caplog.records
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "request body too large: POST /orgs/acme/settings/claude-api-key/save" in warnings


def test_the_api_refuses_a_megabyte_key_in_its_error_shape(world):
    response = api_put_key(console(), "acme", {"apiKey": MEGABYTE_KEY}, **bearer(world.acme_admin))

    assert response.status_code == 413
    assert error_of(response) == {
        "code": "payload_too_large",
        "message": "The request body is too large (at most 64 KB).",
    }
    assert MARK not in response.content.decode()
    assert not ClaudeApiKey.objects.exists()
    assert not AuditEvent.objects.exists()
