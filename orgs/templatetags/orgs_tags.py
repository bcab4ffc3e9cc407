from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

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


def _span(delta: timedelta) -> str:
    """A whole number of the largest unit: "3 days", "5 hours", "1 minute" (rounded down, as "in 3 days" reads)."""
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = int(delta.total_seconds() // seconds)
        if count >= 1:
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "less than a minute"


@register.filter
def token_expiry(token) -> str:
    """When a token expires, in words: "Expires 27 Feb 2027", "Expires in 3 days" within the week, "Expired 2 days
    ago", or "No expiry" for one made before tokens expired."""
    if token.expires_at is None:
        return "No expiry"
    now = timezone.now()
    if token.is_expired(now):
        return f"Expired {_span(now - token.expires_at)} ago"
    if token.expires_soon(now):
        return f"Expires in {_span(token.expires_at - now)}"
    return f"Expires {date_format(timezone.localtime(token.expires_at), 'j M Y')}"


@register.filter
def token_expires_in(token) -> str:
    """How long until an active token expires: "3 days"."""
    return _span(token.expires_at - timezone.now())
