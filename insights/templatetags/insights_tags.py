from django import template
from django.conf import settings
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

from insights import services
from insights.ratelimit import duration, window_words
from insights.rendering import render_markdown

register = template.Library()

# Why a failed query has no whole answer, in "Your recent queries", where it is seen again long after the
# error was shown. Said in the past: the cause may have been put right since (a key replaced, Anthropic's
# limit passed). An answer cut off (`interrupted`) says no more than what arrived.
_FAILURE_REASONS = {
    services.KeyInvalid.code: "Anthropic rejected your organisation's Claude API key.",
    services.UpstreamRateLimited.code: "Anthropic rate-limited your organisation's account.",
    services.UpstreamBilling.code: "Your organisation's Anthropic account refused it for a billing reason.",
    services.KeyUnreadable.code: "Your organisation's stored Claude API key could not be read.",
    services.InsightsUnavailable.code: "AI Insights was temporarily unavailable.",
}


ANTHROPIC_CONSOLE = "console.anthropic.com"


@register.filter
def console_links(message: str) -> SafeString:
    """A message (a refusal's, plain text as the API sends it) for a page: escaped, with the Anthropic console's
    address, where it says to go, a link there (static/js/insights.js does the same for a streamed refusal)."""
    link = format_html('<a href="https://{}/">{}</a>', ANTHROPIC_CONSOLE, ANTHROPIC_CONSOLE)
    return mark_safe(conditional_escape(message).replace(ANTHROPIC_CONSOLE, link))  # noqa: S308 - escaped first


@register.filter(name="markdown")
def markdown_filter(text: str):
    return render_markdown(text)


register.filter("duration", duration)


@register.filter
def thousands(number: int) -> str:
    """`1,024`: a count as the rest of the product writes it (e.g. "4,000 characters")."""
    return f"{int(number):,}"


@register.simple_tag
def rolling_window() -> str:
    """The rolling window, in words: "60 minutes" unless INSIGHTS_WINDOW_SECONDS says otherwise."""
    return window_words(settings.INSIGHTS_WINDOW_SECONDS)


@register.filter
def failure_reason(error_code: str) -> str:
    """Why a failed query failed, in words, or "" when there is nothing more to say."""
    return _FAILURE_REASONS.get(error_code, "")
