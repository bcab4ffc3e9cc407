"""Django's `diffsettings`, its values masked as Django's error page masks settings: the secret key, the encryption
keys, the platform's Anthropic key, the database's and mail server's passwords, a password inside any URL.

Django's command prints every setting as it is, so its output (pasted into a ticket, say) would carry them all. This
one hides them with the project's reporter filter (opsion.reporting.KeySafeExceptionReporterFilter: by name, as Django
hides KEY, SECRET, PASS, TOKEN…, and inside URLs) and redacts what is left as a log line is. Settings are still
compared by their real values, so a masked setting that differs from the default is listed as changed, and one that
does not is not. Options and output are otherwise Django's.

It takes precedence over Django's own command because any installed app's command does. Its handle() is Django's
(Django 5.2) but for the masking; the output functions are Django's own.
"""

from django.core.management.commands import diffsettings
from django.views.debug import get_default_exception_reporter_filter

from opsion.reporting import redact


class Shown(str):
    """A setting's value as printed (masked), compared as the real one's repr is."""

    __slots__ = ("real",)

    def __new__(cls, shown: str, real: str) -> "Shown":
        value = super().__new__(cls, shown)
        value.real = real
        return value

    def __eq__(self, other) -> bool:
        return self.real == getattr(other, "real", other)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = str.__hash__


def masked_module_to_dict(module, omittable=lambda k: k.startswith("_") or not k.isupper()) -> dict[str, Shown]:
    """diffsettings.module_to_dict, each value cleansed as the error page cleanses settings."""
    cleanse = get_default_exception_reporter_filter().cleanse_setting
    real = diffsettings.module_to_dict(module, omittable)
    return {key: Shown(redact(repr(cleanse(key, getattr(module, key)))), real[key]) for key in real}


class Command(diffsettings.Command):
    help = diffsettings.Command.help + " Secrets (keys, passwords, a password in a URL) are masked."

    def handle(self, **options):
        # Django's handle(), line for line, but for masked_module_to_dict: its output functions are used as they are.
        from django.conf import Settings, global_settings, settings

        if not settings.configured:
            settings._setup()

        user_settings = masked_module_to_dict(settings._wrapped)
        default = options["default"]
        default_settings = masked_module_to_dict(Settings(default) if default else global_settings)
        output_func = {"hash": self.output_hash, "unified": self.output_unified}[options["output"]]
        return "\n".join(output_func(user_settings, default_settings, **options))
