"""System checks for what settings alone cannot refuse."""

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning


@register(Tags.security, deploy=True)
def abuse_guards_are_shared(app_configs, **kwargs) -> list[CheckWarning]:
    """The abuse guards count in the cache: without REDIS_URL that is each process's own memory, so with
    N processes N times the documented attempts get through (sign-in guesses included). `check --deploy`
    says so; the embedded default (DEBUG on, one process) needs no Redis."""
    if settings.DEBUG or settings.REDIS_URL:
        return []
    return [
        CheckWarning(
            "REDIS_URL is not set: the abuse guards (sign-in, key writes, new tokens) count per process.",
            hint="Set REDIS_URL to a Redis every process shares. A single-process deployment may ignore this.",
            id="opsion.W001",
        )
    ]
