"""What error reports may show: Django's DEBUG pages, admin error e-mails and anything else built on its filter."""

import re

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

# An Anthropic key, wherever it sits: a local variable, a dict, a bytes buffer of a posted form.
ANTHROPIC_KEY = re.compile(r"sk-ant-[\w-]{8,}")


class KeySafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, applied with DEBUG on too, that also hides every value holding an Anthropic key.

        Django's own filter steps aside when DEBUG is on, so a developer's error page (or a screenshot of it
        in a ticket) would print a key from any local variable. It also cannot see into frames we do not own,
        such as the form parser holding a posted key. The platform key is hidden by its exact value too,
    whatever its form. The cost is that DEBUG pages show fewer local values.
    """

    def is_active(self, request) -> bool:
        return True

    def cleanse_special_types(self, request, value):
        value = super().cleanse_special_types(request, value)
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not break the error page
            return self.cleansed_substitute
        platform_key = settings.ANTHROPIC_API_KEY
        if ANTHROPIC_KEY.search(text) or (platform_key and platform_key in text):
            return self.cleansed_substitute
        return value
