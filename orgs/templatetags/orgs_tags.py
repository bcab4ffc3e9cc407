from django import template
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
