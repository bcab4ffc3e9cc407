"""Decides which Anthropic key and which rolling limit apply to an organisation's next query."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from insights.models import KeySource
from orgs.crypto import Sealed
from orgs.models import ClaudeApiKey, Organisation

log = logging.getLogger("opsion.insights")


class PlatformKey:
    """The platform key, read from settings only when revealed (mirrors `Sealed`)."""

    def reveal(self) -> str:
        return settings.ANTHROPIC_API_KEY

    def __repr__(self) -> str:
        return "<PlatformKey>"


@dataclass(frozen=True)
class KeyChoice:
    source: str
    limit: int
    secret: Sealed | PlatformKey | None
    key_status: str | None = None  # what Anthropic last said of the organisation's key
    key_saved_at: datetime | None = None  # which save of it this is (a newer save must not be marked)

    @property
    def uses_org_key(self) -> bool:
        return self.source == KeySource.ORGANISATION


def platform_key_configured() -> bool:
    return bool(settings.ANTHROPIC_API_KEY)


def _stored_key(org: Organisation) -> ClaudeApiKey | None:
    """The organisation's key row: from the join `access.membership_or_404` made, else one query."""
    try:
        return org.claude_api_key
    except ClaudeApiKey.DoesNotExist:
        return None


def resolve(org: Organisation, *, with_secret: bool = True) -> KeyChoice:
    """The organisation's own key and the BYOM limit on an eligible plan with a stored key; else the platform's.

    A key left behind after a downgrade is ignored until the plan returns or someone removes it.
    """
    if org.allows_byom:
        row = _stored_key(org)
        if row is not None:
            if not with_secret:
                return KeyChoice(KeySource.ORGANISATION, settings.INSIGHTS_BYOM_LIMIT, None)
            return KeyChoice(KeySource.ORGANISATION, settings.INSIGHTS_BYOM_LIMIT, row.secret, row.status, row.saved_at)
    return KeyChoice(KeySource.PLATFORM, settings.INSIGHTS_PLATFORM_LIMIT, PlatformKey() if with_secret else None)
