"""Small helpers shared by the AI Insights tests."""

import json
import re
from datetime import timedelta

from django.db.models.functions import Now
from django.utils import timezone

from insights.models import InsightQuery, KeySource, Outcome, StopReason
from orgs.models import Organisation

INVALID_KEY_MESSAGE = "Your organisation's Claude API key is invalid. Update it in Settings → AI Insights."
UNAVAILABLE_MESSAGE = "AI Insights is temporarily unavailable. Please try again shortly."

# Text that must never reach a user: SDK wording, the fake's error bodies, tracebacks.
LEAKS = (
    "Traceback",
    "anthropic",
    "authentication_error",
    "invalid x-api-key",
    "permission_error",
    "rate_limit_error",
    "overloaded_error",
    "Overloaded",
    "Internal server error",
    "api_error",
    "APIStatusError",
    "httpx",
    "sk-ant-",
)


def db_now():
    """The database's clock, which the rolling window counts against."""
    return InsightQuery.objects.annotate(now=Now()).values_list("now", flat=True).first() or timezone.now()


def seed(org: Organisation, *ages_seconds: float, user=None, source: str = KeySource.PLATFORM) -> list[InsightQuery]:
    """One answered query per age, created that many seconds ago."""
    now = timezone.now()
    return InsightQuery.objects.bulk_create(
        InsightQuery(
            organisation=org,
            user=user,
            created_at=now - timedelta(seconds=age),
            key_source=source,
            query=f"seeded {i}",
            answer="seeded answer",
            outcome=Outcome.ANSWERED,
            stop_reason=StopReason.COMPLETE,
        )
        for i, age in enumerate(ages_seconds)
    )


def seed_spread(org: Organisation, count: int, *, oldest: float, newest: float = 60, **kwargs) -> list[InsightQuery]:
    """`count` queries spread evenly from `oldest` to `newest` seconds ago."""
    if count == 1:
        return seed(org, oldest, **kwargs)
    step = (oldest - newest) / (count - 1)
    return seed(org, *(oldest - i * step for i in range(count)), **kwargs)


def sse_events(chunks) -> list[tuple[str, dict]]:
    """Parse Server-Sent Events from an iterable of byte chunks."""
    text = b"".join(chunks).decode()
    return [parse_sse(block) for block in text.split("\n\n") if block.strip()]


HISTORY_ITEM = re.compile(r'<li class="history__item"[^>]*>.*?</details>\s*</li>', re.DOTALL)


def history_items(html: str) -> list[str]:
    """The entries of "Your recent queries" in a page or an SSE event, newest first."""
    return HISTORY_ITEM.findall(html)


def parse_sse(block: str | bytes) -> tuple[str, dict]:
    if isinstance(block, bytes):
        block = block.decode()
    event, data = "message", ""
    for line in block.strip().splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
    return event, json.loads(data) if data else {}


def assert_no_leaks(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} reached the user"
