import math
from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from orgs import drafts
from orgs.models import TOKEN_EXPIRING_SOON

register = template.Library()


LONG_ADDRESS = 24  # characters: shorter ones fit a phone's table column whole, and stay whole


@register.filter
def breakable_email(address: str) -> SafeString:
    """A long e-mail address that may wrap after its "@" and dots (a narrow table column on a phone), never
    letter by letter; a short one stays whole."""
    text = escape(address or "")
    if len(address or "") <= LONG_ADDRESS:
        return text
    return mark_safe(text.replace("@", "@<wbr>").replace(".", ".<wbr>"))  # noqa: S308 - escaped just above


@register.filter
def utc_time(moment: datetime | None) -> str:
    """A moment as the console and its e-mails write it, in UTC whatever the server's zone: "30 Nov 2026, 08:04 UTC".
    The one place that format is written; None is the empty string."""
    if moment is None:
        return ""
    return f"{date_format(moment.astimezone(UTC), 'j M Y, H:i')} UTC"


def _rounded(delta: timedelta) -> str:
    """A span to the nearest whole unit ("2 days 23 hours" is "3 days", not the "2 days" rounding down said): minutes
    under an hour, hours up to two days (so a date said to be "tomorrow" is never "in 2 days"), days beyond."""

    def nearest(unit: str, seconds: int) -> tuple[int, str]:
        count = math.floor(delta.total_seconds() / seconds + 0.5)  # half up: round() takes 2.5 days to 2
        return count, f"{count} {unit}{'' if count == 1 else 's'}"

    minutes, words = nearest("minute", 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return words
    hours, words = nearest("hour", 3600)
    if hours <= 48:
        return words
    return nearest("day", 86400)[1]


def _when(token, now: datetime) -> tuple[str, str]:
    """(the state's verb, the words after it): ("Expires", "27 Feb 2027"), ("Expires", "today, 15:00 UTC (in 5
    hours)"), ("Expired", "22 Feb 2027 (20 days ago)"). Within TOKEN_EXPIRING_SOON either side the time is said too
    (in UTC, as every time on the page, and so are "today", "tomorrow" and "yesterday"), with how long, rounded."""
    at = token.expires_at.astimezone(UTC)
    expired = token.is_expired(now)
    if not expired and not token.expires_soon(now):
        return "Expires", date_format(at, "j M Y")
    if expired and token.expires_at < now - TOKEN_EXPIRING_SOON:
        return "Expired", f"{date_format(at, 'j M Y')} ({_rounded(now - token.expires_at)} ago)"
    days = (at.date() - now.astimezone(UTC).date()).days
    day = {-1: "yesterday", 0: "today", 1: "tomorrow"}.get(days) or date_format(at, "j M Y")
    hint = f"{_rounded(now - token.expires_at)} ago" if expired else f"in {_rounded(token.expires_at - now)}"
    return ("Expired" if expired else "Expires"), f"{day}, {date_format(at, 'H:i')} UTC ({hint})"


@register.filter
def token_expiry(token) -> str:
    """When a token expires, for the Expires column's cell, whose header says "Expires" already: "27 Feb 2027",
    "Today, 15:00 UTC (in 5 hours)" within the week, "Expired 22 Feb 2027 (20 days ago)" (the header does not say
    that), or "No expiry" for one made before tokens expired."""
    if token.expires_at is None:
        return "No expiry"
    verb, words = _when(token, timezone.now())
    return f"{verb} {words}" if verb == "Expired" else words[0].upper() + words[1:]


@register.filter
def token_expiry_labelled(token) -> str:
    """The same, where no header says "Expires" (a phone's line under the token's name, the revoke confirmation):
    "Expires 27 Feb 2027", "Expires today, 15:00 UTC (in 5 hours)", "Expired …", "No expiry"."""
    if token.expires_at is None:
        return "No expiry"
    verb, words = _when(token, timezone.now())
    return f"{verb} {words}"


@register.filter
def token_expiry_parts(token) -> tuple[str, str]:
    """For a label and its value (the revoke confirmation's list): ("Expires", "27 Feb 2027"), ("Expired", "22 Feb
    2027 (20 days ago)"), ("Expires", "Never (made before tokens expired)")."""
    if token.expires_at is None:
        return "Expires", "Never (made before tokens expired)"
    verb, words = _when(token, timezone.now())
    return verb, words[0].upper() + words[1:]


@register.filter
def token_expires_in(token) -> str:
    """How long until an active token expires, rounded: "3 days", "14 hours"."""
    return _rounded(token.expires_at - timezone.now())


@register.simple_tag(takes_context=True)
def draft_by_field(context) -> SafeString:
    """The hidden field naming (by an opaque mark) whom a form's typed text is for, should its post meet an expired
    session: signing in keeps the text only for that user (orgs.drafts)."""
    return format_html(
        '<input type="hidden" name="{}" value="{}">', drafts.DRAFT_BY, drafts.typed_by(context.request.user)
    )
