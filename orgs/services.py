"""Writes about organisations: the Claude API key and personal API tokens."""

import hashlib
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from insights import ratelimit
from opsion.batches import delete_in_batches
from opsion.errors import InvalidRequest, NotFound, Refused
from opsion.reporting import holds_secret, redact
from orgs import access, guards, models, notifications
from orgs.models import (
    BYOM_PLANS,
    ApiToken,
    AuditAction,
    AuditEvent,
    ClaudeApiKey,
    KeyStatus,
    Membership,
    Organisation,
    Plan,
    User,
)
from orgs.validation import validate_claude_api_key

log = logging.getLogger("opsion.orgs")

TOKEN_PREFIX = "opsn_"
TOKEN_NAME_MAX = 100
TOKEN_NAME_MISSING = "Give the token a name, e.g. “CI pipeline”."
TOKEN_NAME_TOO_LONG = f"Token names are at most {TOKEN_NAME_MAX} characters."
# A key pasted into the wrong box of Settings (the token's name sits below the key's): a name is listed, mailed to its
# user and stored as typed, so it would carry the key out of the server. Said before the length (a whole key is long).
TOKEN_NAME_HOLDS_SECRET = (
    "Token names are shown in lists and e-mails, and this one holds what looks like a Claude API key or an API "
    "token, so no token was created. Choose another name."
)
# last_used_at is written at most once a minute per token, so API traffic does not turn
# every read into a write.
LAST_USED_RESOLUTION_SECONDS = 60
# A token's lifetime is chosen at creation: the console offers these, the create_api_token command any number of
# days up to the maximum (GitLab's cap on personal access tokens). There is no "never".
TOKEN_LIFETIME_CHOICES = (30, 90, 365)
TOKEN_DEFAULT_DAYS = 90
TOKEN_MAX_DAYS = 365


def _audit(*, org: Organisation, actor, action: str, ip: str | None, via: str, detail: str = "") -> AuditEvent:
    # A detail names people by address, and staff can add one holding a key's form (the wrong clipboard): blanked as a
    # log line would be, then cut to the column, since admin lists and searches it and the customer's log shows it.
    return AuditEvent.objects.create(
        organisation=org,
        actor=actor,
        actor_email=getattr(actor, "email", "") or "",
        action=action,
        ip=ip,
        via=via,
        detail=redact(detail)[:300],
    )


def audit_staff_change(*, org: Organisation, staff_user, action: str, detail: str, ip: str | None) -> None:
    """Record, for the organisation's Owners and Admins, a change Opsion staff made in admin to its plan
    or memberships: it decides whether the key is used and who may manage it."""
    _audit(org=org, actor=staff_user, action=action, ip=ip, via="admin", detail=detail)


def plan_changed_as_staff(*, org: Organisation, staff_user, old_plan: Plan, ip: str | None) -> ratelimit.Window | None:
    """Record staff's change of `org` (saved already, on its new plan) from `old_plan` in its audit log; if it puts a
    stored key back into use or takes it out, mail its Owners and Admins once the change commits. Returns the window
    on the platform key when it took a stored key out of use (counted once: the e-mail says it, and admin tells
    staff), else None. Raises only what the audit row's insert would (a lost database)."""
    event = _audit(
        org=org,
        actor=staff_user,
        action=AuditAction.PLAN_CHANGED,
        ip=ip,
        via="admin",
        detail=f"{old_plan.label} → {org.get_plan_display()}",
    )
    # A key put back into use bills the customer's own Anthropic account again; one taken out of use lowers the
    # limit at once. Either is a change to which key is used, which the key's own writes already mail.
    if (old_plan in BYOM_PLANS) == org.allows_byom or not ClaudeApiKey.objects.filter(organisation=org).exists():
        return None
    # Out of use, the queries already counted stay counted under the platform key's limit.
    after = None if org.allows_byom else ratelimit.window_on_platform_key(org)
    notifications.key_use_changed_by_plan(org=org, old_plan=old_plan, at=event.created_at, after=after)
    return after


@sensitive_variables("raw_key", "key")
def claude_api_key_set(*, membership: Membership, raw_key: str, ip: str | None, via: str = "console") -> bool:
    """Store `raw_key` encrypted for the member's organisation, audited as saved (none was stored) or replaced; returns
    True when it replaced a stored key.

    Raises RoleRequired, PlanRequired, TooManyAttempts or KeyMalformed, checked in that order.
    """
    access.require_byom_admin(membership)
    guards.key_write(user=membership.user, org_slug=membership.organisation.slug)
    key = validate_claude_api_key(raw_key)
    with transaction.atomic():
        org = _as_it_is_now(membership, access.require_byom_admin).organisation
        _, created = ClaudeApiKey.objects.update_or_create(
            organisation=org,
            defaults={
                "secret": key,
                "status": KeyStatus.UNVERIFIED,
                "saved_by": membership.user,
                "saved_at": timezone.now(),
                "status_changed_at": None,
            },
        )
        # Whether a key was stored is read with the organisation row locked, so of two first saves at once one
        # records "saved" and the other "replaced", as they happened.
        action = AuditAction.KEY_SAVED if created else AuditAction.KEY_REPLACED
        event = _audit(org=org, actor=membership.user, action=action, ip=ip, via=via)
        # Mailed to the organisation's Owners and Admins once this commits: a rolled-back save tells no one.
        notifications.key_changed(org=org, actor=membership.user, action=event.action, via=via, at=event.created_at)
    verb = "saved" if created else "replaced"
    log.info("claude api key %s org=%s by user=%s via=%s", verb, org.slug, membership.user.pk, via)
    return not created


class KeyReplaced(Refused):
    code, status = "claude_api_key_replaced", 409
    default_message = (
        "The key was replaced after you asked to remove it, so the new key was kept. "
        "Remove it again if you still want to."
    )


def claude_api_key_remove(
    *, membership: Membership, ip: str | None, via: str = "console", saved_at: datetime | None = None
) -> bool:
    """Delete the organisation's key (idempotent); True when one was deleted. Raises RoleRequired, TooManyAttempts,
    KeyReplaced.

    `saved_at`, when given, is when the key the remover was shown was saved: a key saved since (another
    Admin rotated it while a confirmation stood open) is not the one they chose to remove, and is kept.
    Removal is not plan-gated: an organisation moved off a BYOM plan can still delete the key it left behind.
    """
    access.require_key_manager(membership)
    guards.key_write(user=membership.user, org_slug=membership.organisation.slug)
    org = membership.organisation
    with transaction.atomic():
        _as_it_is_now(membership, access.require_key_manager)  # locks the organisation: no save can slip in
        if saved_at is not None and ClaudeApiKey.objects.filter(organisation=org).exclude(saved_at=saved_at).exists():
            raise KeyReplaced()
        return _remove(org=org, actor=membership.user, ip=ip, via=via)


def _as_it_is_now(membership: Membership, check) -> Membership:
    """Inside a key write's transaction: `check` the membership again as it is now, its row and its
    organisation's locked until the write commits. Staff may remove or demote the member, or change
    the plan, between the request's first check and the write; each such change now lands either
    wholly before the write (which is then refused) or after it. Raises NotFound or what `check` raises."""
    # The organisation row first, then the membership's: the order Django admin's change form writes
    # them in (the organisation, then its membership inline), so the two can never deadlock.
    Organisation.objects.select_for_update().filter(pk=membership.organisation_id).values_list("pk").first()
    try:
        fresh = Membership.objects.select_for_update(of=("self",)).select_related("organisation").get(pk=membership.pk)
    except Membership.DoesNotExist:
        raise NotFound() from None
    check(fresh)
    return fresh


def claude_api_key_remove_as_staff(*, org: Organisation, staff_user, ip: str | None) -> bool:
    """Opsion staff remove an organisation's key from Django admin; audited like any removal."""
    return _remove(org=org, actor=staff_user, ip=ip, via="admin")


def _remove(*, org: Organisation, actor, ip: str | None, via: str) -> bool:
    # Its own transaction for staff; inside a member's (after the re-check) no savepoint is needed.
    with transaction.atomic(savepoint=False):
        deleted, _ = ClaudeApiKey.objects.filter(organisation=org).delete()
        if deleted:
            event = _audit(org=org, actor=actor, action=AuditAction.KEY_REMOVED, ip=ip, via=via)
            notifications.key_changed(org=org, actor=actor, action=event.action, via=via, at=event.created_at)
    if deleted:
        log.info("claude api key removed org=%s by user=%s via=%s", org.slug, getattr(actor, "pk", None), via)
    return bool(deleted)


def claude_api_key_mark(*, org: Organisation, status: str, saved_at) -> None:
    """Record what Anthropic said of the organisation's key, saved at `saved_at` (valid or invalid).

    A no-op when that key has since been replaced or removed: a slow answer on the old key must not
    paint the new one red (or green).
    """
    ClaudeApiKey.objects.filter(organisation=org, saved_at=saved_at).exclude(status=status).update(
        status=status, status_changed_at=timezone.now()
    )


def organisation_opened(*, membership: Membership) -> None:
    """Remember the member's organisation as the one they last opened in the console, where signing in lands.
    Raises nothing. Writes only when it changed (one UPDATE of one column), so moving about one organisation's
    pages costs no write; the API never calls it, so no API request writes for it."""
    user, org = membership.user, membership.organisation
    if user.last_organisation_id == org.pk:
        return
    try:
        with transaction.atomic():  # the foreign key is checked when this commits
            User.objects.filter(pk=user.pk).update(last_organisation=org)
    except IntegrityError:
        return  # staff deleted the organisation as its page opened: nothing to remember
    user.last_organisation_id = org.pk


def _hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


class TooManyTokens(Refused):
    code, status = "too_many_tokens", 409


class TokenExpired(Refused):
    """An expired token: refused as an unknown one is (401 `unauthenticated`), in words its owner can act on."""

    code, status = "unauthenticated", 401


def _lifetime(days: int) -> timedelta:
    if type(days) is not int or not 1 <= days <= TOKEN_MAX_DAYS:  # not isinstance: True is an int
        raise InvalidRequest(f"A token lives between 1 and {TOKEN_MAX_DAYS} days.")
    return timedelta(days=days)


def _lock_tokens_of(user) -> None:
    """Inside a transaction: serialise the writes to `user`'s tokens (creating, revoking them all) by locking the
    user's row until it commits. On SQLite, BEGIN IMMEDIATE has already serialised every write."""
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk").first()


def api_token_create(
    *, user, name: str, expires_in_days: int = TOKEN_DEFAULT_DAYS, now: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a personal API token expiring `expires_in_days` from now; returns it with the raw token, which is
    never stored. Raises InvalidRequest (name, lifetime) or TooManyTokens (the user holds ACTIVE_TOKENS_MAX)."""
    name = (name or "").strip()
    if not name:
        raise InvalidRequest(TOKEN_NAME_MISSING)
    if holds_secret(name):
        raise InvalidRequest(TOKEN_NAME_HOLDS_SECRET)
    if len(name) > TOKEN_NAME_MAX:
        raise InvalidRequest(TOKEN_NAME_TOO_LONG)
    lifetime = _lifetime(expires_in_days)
    now = now or timezone.now()
    with transaction.atomic():
        # Two creations racing at 19 cannot both pass. The count must run after the lock: READ COMMITTED reads
        # afresh per statement.
        _lock_tokens_of(user)
        api_token_room(user=user, now=now)
        # Expired tokens stay listed for a while so their owner sees what stopped working; then they go.
        api_tokens_prune(user=user, now=now)
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken.objects.create(
            user=user, name=name, token_hash=_hash(raw), prefix=raw[:12], expires_at=now + lifetime
        )
        notifications.api_token_created(token=token)  # its user hears of it (its name, never the token), on commit
    return token, raw


def api_tokens_prune(*, user=None, now: datetime | None = None, batch_size: int = 5000, dry_run: bool = False) -> int:
    """Delete the tokens that expired more than EXPIRED_TOKENS_LISTED_FOR before `now`, the user's or (no user)
    everyone's, `batch_size` at a time; returns how many went (with `dry_run`, how many would, deleting none).
    Tokens with no expiry (made before tokens expired) are still accepted and never match."""
    now = now or timezone.now()
    tokens = ApiToken.objects.filter(expires_at__lt=now - models.EXPIRED_TOKENS_LISTED_FOR)
    if user is not None:
        tokens = tokens.filter(user=user)
    if dry_run:
        return tokens.count()
    return delete_in_batches(tokens, batch_size=batch_size)


def api_token_room(*, user, now: datetime | None = None) -> None:
    """Raises TooManyTokens if the user holds ACTIVE_TOKENS_MAX already. The console asks before spending one of the
    hour's new tokens (guards) on a creation the cap would refuse; api_token_create asks again under the lock."""
    active = ApiToken.objects.count_working(user, now or timezone.now())
    if active >= models.ACTIVE_TOKENS_MAX:
        raise TooManyTokens(_too_many(active))


def _too_many(active: int) -> str:
    if active == models.ACTIVE_TOKENS_MAX:
        return f"You have {active} active tokens: revoke one you no longer use first."
    # Only tokens from before the cap (no expiry) can take a user past it.
    return (
        f"You have {active} active tokens (at most {models.ACTIVE_TOKENS_MAX} are allowed): "
        f"revoke {active - models.ACTIVE_TOKENS_MAX + 1} you no longer use first."
    )


def api_token_revoke(*, user, token_id: int) -> str:
    """Delete one of the user's tokens; returns its name. Raises NotFound for tokens that are not theirs."""
    tokens = ApiToken.objects.filter(user=user, pk=token_id)
    name = tokens.values_list("name", flat=True).first()
    deleted, _ = tokens.delete()
    if not deleted:  # not theirs, or revoked meanwhile (a second tab): the delete, not the read, decides
        raise NotFound(models.TOKEN_NOT_FOUND)
    return name


def api_tokens_revoke_as_staff(*, tokens, staff_user) -> int:
    """Opsion staff delete `tokens` (a query of ApiToken) in admin, each through api_token_revoke, and each user is
    mailed the names of theirs once it commits; returns how many went. Raises what the database raises, and then
    deletes and mails nothing."""
    revoked = defaultdict(list)
    with transaction.atomic():  # admin's list action runs outside Django's own transaction
        for token in tokens.select_related("user").order_by("user_id", "name", "pk"):
            try:
                revoked[token.user].append(api_token_revoke(user=token.user, token_id=token.pk))
            except NotFound:
                continue  # its user revoked it as staff confirmed: theirs to know already
        at = timezone.now()
        for user, names in revoked.items():
            notifications.api_tokens_revoked_by_staff(user=user, names=names, at=at)
    for user, names in revoked.items():  # who did it: admin's own history (LogEntry) names the staff member too
        log.info("api tokens revoked by staff user=%s count=%s staff=%s", user.pk, len(names), staff_user.pk)
    return sum(len(names) for names in revoked.values())


def api_tokens_revoke_all(*, user, now: datetime | None = None) -> int:
    """Delete every token of `user`, expired ones too, at once; returns how many still worked at `now` (those whose
    loss an integration notices). Raises nothing. Called with a new password, inside its transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        # A token created meanwhile is either counted and deleted here, or created after this commits (and then the
        # user was mailed of it).
        _lock_tokens_of(user)
        tokens = ApiToken.objects.filter(user=user)
        working, _ = tokens.active(now).delete()
        tokens.delete()  # the expired ones, listed in Settings for a while: nothing is left to revoke
    if working:
        log.info("api tokens revoked user=%s count=%s", user.pk, working)
    return working


@dataclass(frozen=True)
class TokensAfterPassword:
    revoked: int  # tokens that still worked, revoked with the new password
    kept: int  # tokens that keep working


def password_changed(*, user, how: str, revoke_api_tokens: bool = False) -> TokensAfterPassword:
    """What follows a new password, set in the caller's transaction (`how`: console, reset or staff): every API
    token of `user` revoked if they chose to, and an e-mail saying so, or how many keep working, once it commits."""
    now = timezone.now()
    revoked = api_tokens_revoke_all(user=user, now=now) if revoke_api_tokens else 0
    kept = ApiToken.objects.count_working(user, now)
    notifications.password_changed(user=user, how=how, at=now, tokens_revoked=revoked, tokens_kept=kept)
    return TokensAfterPassword(revoked=revoked, kept=kept)


@sensitive_variables("raw_token")
def api_token_authenticate(raw_token: str, *, now: datetime | None = None):
    """The active user owning `raw_token`, or None; records when the token was last used. Raises TokenExpired for
    an expired token of an active user (for anyone else's, None: a new token is no way out for them)."""
    if not raw_token or not raw_token.startswith(TOKEN_PREFIX) or len(raw_token) > 200:
        return None
    try:  # the hash is unique: get(), with no ORDER BY for the database to honour
        token = ApiToken.objects.select_related("user").get(token_hash=_hash(raw_token))
    except ApiToken.DoesNotExist:
        return None
    if not token.user.is_active:
        return None
    now = now or timezone.now()
    if token.is_expired(now):
        raise TokenExpired(
            f"This API token expired on {token.expires_at.astimezone(UTC):%Y-%m-%d}. Create a new one in Settings."
        )
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
