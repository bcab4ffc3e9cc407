"""Reads about organisations for both surfaces."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.core.paginator import Page, Paginator
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from opsion import paging
from opsion.errors import NotFound
from orgs import models
from orgs.models import ApiToken, AuditEvent, ClaudeApiKey, Organisation

log = logging.getLogger("opsion.orgs")

# Not a stored status: derived on every read, so putting the missing key back heals it at once.
KEY_UNREADABLE = "unreadable"


@dataclass(frozen=True)
class KeyState:
    is_set: bool
    # Queries run on the stored key: one is stored and the plan allows it, as insights.keys.resolve chooses. A key
    # left behind by a downgrade stays stored, unused.
    in_use: bool = False
    status: str | None = None
    saved_at: datetime | None = None
    row: ClaudeApiKey | None = field(default=None, repr=False)

    @property
    def status_changed_at(self) -> datetime | None:
        """When Anthropic's answer about this key last changed (first accepted, or rejected)."""
        return self.row.status_changed_at if self.row else None

    @property
    def saved_by(self) -> str | None:
        """Who saved the key (read only when a page shows it: the API does not)."""
        user = self.row.saved_by if self.row else None
        return user.email if user else None


def stored_claude_api_key(org: Organisation) -> ClaudeApiKey | None:
    """The organisation's key row (sealed), or None.

    Reuses the row `access.membership_or_404` joined into its query; otherwise one query, not cached on
    `org`, so a caller holding a long-lived `org` never reads a key that has since been replaced.
    """
    if Organisation.claude_api_key.related.is_cached(org):
        try:
            return org.claude_api_key
        except ClaudeApiKey.DoesNotExist:
            return None
    try:  # one row per organisation at most (a one-to-one)
        return ClaudeApiKey.objects.get(organisation=org)
    except ClaudeApiKey.DoesNotExist:
        return None


def claude_api_key_state(org: Organisation) -> KeyState:
    """Whether a key is stored and what is known of it; never the key itself.

    The status is "unreadable" when no FIELD_ENCRYPTION_KEYS entry opens the stored key (one was
    dropped too early): the page says so, and operators get a log line, instead of a 500 later.
    """
    row = stored_claude_api_key(org)
    if row is None:
        return KeyState(is_set=False)
    status = row.status if claude_api_key_readable(org, row.secret) else KEY_UNREADABLE
    return KeyState(is_set=True, in_use=org.allows_byom, status=status, saved_at=row.saved_at, row=row)


def claude_api_key_readable(org: Organisation, secret) -> bool:
    """Whether a configured FIELD_ENCRYPTION_KEYS entry opens the stored key (nothing is decrypted).
    When none does, operators get a log line naming the organisation."""
    if secret.readable():
        return True
    log_unreadable_claude_api_key(org)
    return False


def log_unreadable_claude_api_key(org: Organisation) -> None:
    log.error("stored claude api key for org=%s cannot be decrypted with FIELD_ENCRYPTION_KEYS", org.slug)


AUDIT_CARD_EVENTS = 50
AUDIT_PAGE_EVENTS = 100


def audit_events_for(
    org: Organisation, *, offset: int = 0, limit: int = AUDIT_CARD_EVENTS, after: int | None = None
) -> list[AuditEvent]:
    """`limit` events from the `offset`-th (after the event `after`, if given), newest first: the Settings card's
    latest, an API page. Raises InvalidRequest if `after` is not one of the organisation's events."""
    events = paging.after(AuditEvent.objects.filter(organisation=org), after, what="an event in this audit log")
    return list(events[offset : offset + limit])


def audit_events_page(org: Organisation, *, limit: int, offset: int = 0, after: int | None = None) -> paging.Page:
    """A page of `limit` events as audit_events_for reads them, and whether more follow (listAuditEvents). Raises
    InvalidRequest if `after` is not one of the organisation's events."""
    return paging.one_past(audit_events_for(org, offset=offset, limit=limit + 1, after=after), limit)


def audit_log_page(org: Organisation, page: str | int | None) -> Page:
    """One page of the organisation's whole audit log, newest first; a page number out of range gives the
    nearest page (an old link after events were added still lands somewhere)."""
    return Paginator(AuditEvent.objects.filter(organisation=org), AUDIT_PAGE_EVENTS).get_page(page)


def audit_log_all(org: Organisation) -> Iterator[AuditEvent]:
    """Every event, newest first, read in chunks (a long-lived organisation's log need not fit in memory)."""
    return AuditEvent.objects.filter(organisation=org).iterator(chunk_size=1000)


@dataclass(frozen=True)
class TokenList:
    tokens: list[ApiToken]  # active ones newest first, then expired ones most recently expired first
    expiring_soon: list[ApiToken]  # active ones expiring within TOKEN_EXPIRING_SOON, soonest first


def api_token_to_revoke(user, token_id: int | None) -> ApiToken:
    """One of the user's own tokens, as the revoke confirmation names it. Raises NotFound with the revocation's own
    words for anything else (another user's token, one revoked already, no token number at all): the same answer
    either way, so asking says nothing of whether someone else's token exists."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first() if token_id is not None else None
    if token is None:
        raise NotFound(models.TOKEN_NOT_FOUND)
    return token


def api_tokens_working(user, *, now: datetime | None = None) -> int:
    """How many of the user's tokens the API still accepts: what a new password's form offers to revoke."""
    return ApiToken.objects.count_working(user, now or timezone.now())


def api_tokens_working_per_user(*, now: datetime | None = None) -> Coalesce:
    """api_tokens_working as an expression to annotate a query of users with (matched on its "pk"), so the count
    rides in that query instead of costing one of its own."""
    working = ApiToken.objects.filter(user=OuterRef("pk")).active(now or timezone.now())
    return Coalesce(Subquery(working.order_by().values("user").annotate(n=Count("pk")).values("n")), 0)


def api_tokens_listed(user, *, now: datetime | None = None) -> TokenList:
    """The user's tokens as Settings (or the home page) lists them, bounded: the active ones (at most the cap, plus
    any made beyond it before the cap existed) and the ACTIVE_TOKENS_MAX most recently expired in the last
    EXPIRED_TOKENS_LISTED_FOR, which stay until revoked so their owner sees what stopped working."""
    now = now or timezone.now()
    mine = ApiToken.objects.filter(user=user)
    active = list(mine.active(now).order_by("-created_at", "-pk"))
    expired = mine.expired(now).filter(expires_at__gte=now - models.EXPIRED_TOKENS_LISTED_FOR)
    expired = list(expired.order_by("-expires_at", "-pk")[: models.ACTIVE_TOKENS_MAX])
    soon = sorted((t for t in active if t.expires_soon(now)), key=lambda t: t.expires_at)
    return TokenList(tokens=active + expired, expiring_soon=soon)
