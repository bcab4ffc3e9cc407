"""Decides which Anthropic key and which rolling limit apply to an organisation's next query."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from insights.models import KeySource
from orgs import selectors
from orgs.crypto import Sealed
from orgs.models import Organisation

log = logging.getLogger("opsion.insights")


class PlatformKey:
    """The platform key, read from settings only when revealed (mirrors `Sealed`)."""

    def reveal(self) -> str:
        return settings.ANTHROPIC_API_KEY

    # Templates call argument-free methods; this one they must refuse, as Sealed.reveal ({{ choice.secret.reveal }}).
    reveal.alters_data = True

    def __repr__(self) -> str:
        return "<PlatformKey>"


@dataclass(frozen=True)
class KeyChoice:
    source: str
    limit: int
    secret: Sealed | PlatformKey
    key_status: str | None = None  # what Anthropic last said of the organisation's key
    key_saved_at: datetime | None = None  # which save of it this is (a newer save must not be marked)

    @property
    def uses_org_key(self) -> bool:
        return self.source == KeySource.ORGANISATION


def platform_key_configured() -> bool:
    return bool(settings.ANTHROPIC_API_KEY)


def resolve(org: Organisation) -> KeyChoice:
    """The organisation's own key and the BYOM limit on an eligible plan with a stored key; else the platform's.

    A key left behind after a downgrade is ignored until the plan returns or someone removes it. The
    secret stays sealed (or, for the platform key, unread) until claude builds a client with it.
    """
    if org.allows_byom:
        row = selectors.stored_claude_api_key(org)
        if row is not None:
            return KeyChoice(KeySource.ORGANISATION, settings.INSIGHTS_BYOM_LIMIT, row.secret, row.status, row.saved_at)
    return KeyChoice(KeySource.PLATFORM, settings.INSIGHTS_PLATFORM_LIMIT, PlatformKey())
