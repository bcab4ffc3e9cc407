"""Reads about organisations for both surfaces."""

from dataclasses import dataclass
from datetime import datetime

from orgs.models import AuditEvent, ClaudeApiKey, Membership, Organisation


@dataclass(frozen=True)
class KeyState:
    is_set: bool
    status: str | None = None
    saved_by: str | None = None
    saved_at: datetime | None = None


def claude_api_key_state(org: Organisation) -> KeyState:
    """Whether a key is stored and what is known of it; never the key itself."""
    row = (
        ClaudeApiKey.objects.filter(organisation=org)
        .select_related("saved_by")
        .only("status", "saved_at", "saved_by__email", "organisation_id")
        .first()
    )
    if row is None:
        return KeyState(is_set=False)
    return KeyState(
        is_set=True,
        status=row.status,
        saved_by=row.saved_by.email if row.saved_by else None,
        saved_at=row.saved_at,
    )


def memberships_for(user) -> list[Membership]:
    return list(Membership.objects.for_user(user))


def audit_events_for(org: Organisation, *, limit: int = 50) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organisation=org)[:limit])
