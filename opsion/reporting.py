"""What error reports may show: Django's DEBUG pages, admin error e-mails and anything else built on its filter."""

import re

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

# An Anthropic key, wherever it sits: a local variable, a dict, a bytes buffer of a posted form.
ANTHROPIC_KEY = re.compile(r"sk-ant-[\w-]{8,}")
# The password in a URL's user information: postgres://user:password@host/…, redis://:password@host.
URL_PASSWORD = re.compile(r"(?<=://)([^/?#@:\s]*):[^/?#@\s]+@")


class KeySafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, applied with DEBUG on too, that also hides every value holding an Anthropic key.

    Django's own filter steps aside when DEBUG is on, so a developer's error page (or a screenshot of it
    in a ticket) would print a key from any local variable. It also cannot see into frames we do not own,
    such as the form parser holding a posted key. The platform key is hidden by its exact value too,
    whatever its form. Passwords get the same treatment: inside URLs, and in the local variables of
    frames we do not own (a driver's connection parameters). The cost is that DEBUG pages show fewer
    local values.
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
        platform_key = settings.ANTHROPIC_API_KEY
        if ANTHROPIC_KEY.search(text) or (platform_key and platform_key in text):
            return self.cleansed_substitute
        return value
