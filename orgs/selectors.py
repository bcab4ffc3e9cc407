"""Reads about organisations for both surfaces."""

import logging
from dataclasses import dataclass
from datetime import datetime

from orgs.models import AuditEvent, ClaudeApiKey, Organisation

log = logging.getLogger("opsion.orgs")

# Not a stored status: derived on every read, so putting the missing key back heals it at once.
KEY_UNREADABLE = "unreadable"


@dataclass(frozen=True)
class KeyState:
    is_set: bool
    status: str | None = None
    saved_by: str | None = None
    saved_at: datetime | None = None


def claude_api_key_state(org: Organisation) -> KeyState:
    """Whether a key is stored and what is known of it; never the key itself.

    The status is "unreadable" when no FIELD_ENCRYPTION_KEYS entry opens the stored key (one was
    dropped too early): the page says so, and operators get a log line, instead of a 500 later.
    """
    row = (
        ClaudeApiKey.objects.filter(organisation=org)
        .select_related("saved_by")
        .only("secret", "status", "saved_at", "saved_by__email", "organisation_id")
        .first()
    )
    if row is None:
        return KeyState(is_set=False)
    status = row.status
    if not row.secret.readable():
        log.error("stored claude api key for org=%s cannot be decrypted with FIELD_ENCRYPTION_KEYS", org.slug)
        status = KEY_UNREADABLE
    return KeyState(
        is_set=True,
        status=status,
        saved_by=row.saved_by.email if row.saved_by else None,
        saved_at=row.saved_at,
    )


def audit_events_for(org: Organisation, *, limit: int = 50) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organisation=org)[:limit])
