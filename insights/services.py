"""AI Insights: validate a question, pick the key and limit, count it, ask Claude, record the outcome."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError
from django.db.models.functions import Now

from insights import claude, keys, ratelimit
from insights.models import IDEMPOTENCY_KEY_INDEX, InsightQuery, KeySource, Outcome, abandoned_after, as_asked
from opsion import paging
from opsion.errors import InvalidRequest, NotFound, Refused
from opsion.middleware import UNAVAILABLE_RETRY_SECONDS
from opsion.reporting import holds_secret
from orgs import selectors as org_selectors
from orgs import services as org_services
from orgs.crypto import DecryptionFailed
from orgs.models import KeyStatus, Membership, Organisation

log = logging.getLogger("opsion.insights")

UNAVAILABLE_MESSAGE = "AI Insights is temporarily unavailable. Please try again shortly."
INTERRUPTED = "interrupted"  # the error code of a query whose answer stopped before Anthropic ended it


# When a client is told to try again (Retry-After, in seconds). Anthropic overloaded or unreachable, or the platform key
# missing, lasts a time no one here knows: "shortly" is half a minute, long enough not to hammer an overloaded service
# and short enough to be worth waiting for. Anthropic's own wait on Opsion's platform account is not passed on: it is
# ours to manage, not the member's, and may be an hour. An answer being written takes seconds (about twice
# ANTHROPIC_TIMEOUT_SECONDS at the very most): a retry of its question looks again a few seconds later, which costs
# one lookup, no count. UNAVAILABLE_RETRY_SECONDS is the platform's, the database's 503 says it too.
IN_USE_RETRY_SECONDS = 5


class InsightsUnavailable(Refused):
    code, status, default_message = "insights_unavailable", 503, UNAVAILABLE_MESSAGE

    def __init__(self) -> None:
        super().__init__(retry_after=UNAVAILABLE_RETRY_SECONDS)


class KeyInvalid(Refused):
    # Verbatim from the product documentation.
    code, status = "claude_api_key_invalid", 400
    default_message = "Your organisation's Claude API key is invalid. Update it in Settings → AI Insights."


class KeyUnreadable(Refused):
    code, status = "claude_api_key_unreadable", 400
    default_message = (
        "Your organisation's stored Claude API key cannot be read. An Owner or Admin should save it again "
        "in Settings → AI Insights."
    )


class UpstreamRateLimited(Refused):
    code, status = "upstream_rate_limited", 429
    default_message = "Your organisation's Anthropic account is rate-limited by Anthropic."  # then when to try again

    def __init__(self, retry_after: int | None) -> None:
        when = f" Try again in {retry_after} seconds." if retry_after else " Try again shortly."
        super().__init__(self.default_message + when, retry_after=retry_after)


class UpstreamBilling(Refused):
    # The organisation's own Anthropic account cannot pay for the query: only whoever manages it can fix that
    # (often not the member asking, so the message names no Opsion role).
    code, status = "upstream_billing", 400
    default_message = (
        "Your organisation's Anthropic account refused the query for a billing reason (no credit left, or a spend "
        "limit reached). Whoever manages that account should check Plans & Billing at console.anthropic.com; then "
        "ask again."
    )


# What the reader of a failed query was told, by the error code it records (InsightQuery.error_code): each refusal's own
# message, for staff answering "our queries fail" (admin's query page). Anthropic's wait on a rate limit, which that
# message ends with, is not recorded: its first sentence is.
FAILURE_MESSAGES = {
    refusal.code: refusal.default_message
    for refusal in (KeyInvalid, KeyUnreadable, UpstreamRateLimited, UpstreamBilling, InsightsUnavailable)
}


def retry_helps(refused: Refused) -> bool:
    """Whether asking again could succeed after `refused` cut an answer off, so the notice before the part received
    invites it. A key Anthropic rejects, a key the server cannot read, or an account that cannot pay fails every
    question the same way until someone fixes it (the alert says who and where). Raises nothing."""
    return not isinstance(refused, KeyInvalid | KeyUnreadable | UpstreamBilling)


class IdempotencyKeyReused(Refused):
    code, status = "idempotency_key_reused", 422

    def __init__(self, earlier: InsightQuery) -> None:
        super().__init__(
            f"This Idempotency-Key was sent with another question (query {earlier.pk}). Send a new key with each new "
            "question."
        )


class IdempotencyKeyInUse(Refused):
    code, status = "idempotency_key_in_use", 409

    def __init__(self, earlier: InsightQuery, *, read_at: str) -> None:
        super().__init__(
            f"Your request with this Idempotency-Key (query {earlier.pk}) is still being answered. Send it again "
            f"later, or read the query: GET {read_at}.",
            retry_after=IN_USE_RETRY_SECONDS,
        )


class IdempotencyKeyContested(Refused):
    """Other requests with the member's Idempotency-Key took it each time this one went to use it, and failed before it
    looked (many copies of one request at once while Anthropic fails): the key busy, as IdempotencyKeyInUse says, with
    no query to name, as each of theirs has let it go."""

    code, status = IdempotencyKeyInUse.code, IdempotencyKeyInUse.status
    default_message = (
        "Other requests with this Idempotency-Key were being answered at the same time as this one, which was not "
        "asked. Send it again later."
    )

    def __init__(self) -> None:
        super().__init__(retry_after=IN_USE_RETRY_SECONDS)


class AlreadyAsked(Exception):  # noqa: N818 (not an error: the question was asked before, and `row` is it)
    """The member's Idempotency-Key already holds a query of this question: `row`, answered or still pending."""

    def __init__(self, row: InsightQuery) -> None:
        super().__init__(row.pk)
        self.row = row


class QueryHoldsSecret(Refused):
    """A question holding what log lines redact (a Claude API key, an API token): asked, it would be stored as typed
    in the query's row (its admin page, dumpdata, every backup) and sent to Anthropic. Refused before either, the
    message echoing none of it; the console keeps the question in its box for its user to take the key out."""

    code, status = "query_holds_secret", 400
    default_message = (
        "Your question holds what looks like a Claude API key or an API token, so it was not asked: nothing was "
        "sent to Claude or kept. Take it out and ask again."
    )


IDEMPOTENCY_KEY_MAX = 255


def validate_idempotency_key(key: str) -> str:
    """The key as sent: 1 to 255 visible ASCII characters but the comma (a UUID, say). Raises InvalidRequest."""
    # A header sent twice reaches the app as one, its values joined by a comma (gunicorn and runserver join them
    # so): taken as the key, no retry sending either value would match it, and each would be asked and counted again.
    if "," in key:
        raise InvalidRequest("The Idempotency-Key header holds a comma: send it once, with one key (a UUID, say).")
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not all("!" <= c <= "~" for c in key):
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters (a UUID, say)."
        )
    # Kept, it is stored as it came, in plain text: a Claude API key or a token sent there by mistake would sit in the
    # query's row (its admin page, dumpdata, every backup) beside the encrypted copy.
    if holds_secret(key):
        raise InvalidRequest(
            "The Idempotency-Key header holds what looks like a Claude API key or an API token: send a key of your "
            "own (a UUID, say), and if that was a real one, replace it."
        )
    return key


@dataclass(frozen=True)
class Usage:
    window: ratelimit.Window
    key_source: str
    key_status: str | None = None  # what Anthropic last said of the organisation's key
    key_readable: bool = True  # a configured FIELD_ENCRYPTION_KEYS entry opens the organisation's key
    # The limit the organisation's own key would give it: set only on a plan that allows one (Institutional,
    # Custom) with none stored, so the page can say at the platform limit that saving one raises it.
    own_key_limit: int | None = None

    @property
    def limit_reached(self) -> ratelimit.RateLimited | None:
        """At the limit, the refusal the next query would meet now: the limiter's own message and Retry-After, from
        this window (so a page can say it, and disable Ask, before anyone asks); None while a query fits, and None when
        a query would be refused before the limit is looked at (the organisation's key unreadable, no platform key):
        its refusal says that, and the page says it already."""
        if self.window.remaining or self.org_key_unreadable or self.platform_key_missing:
            return None
        return ratelimit.RateLimited(self.window)

    @property
    def org_key_invalid(self) -> bool:
        """Queries run on the organisation's key, and Anthropic rejected it last time."""
        return self.key_source == KeySource.ORGANISATION and self.key_status == KeyStatus.INVALID

    @property
    def org_key_unreadable(self) -> bool:
        """Queries would run on the organisation's key, and the server cannot decrypt it (save it again)."""
        return self.key_source == KeySource.ORGANISATION and not self.key_readable

    @property
    def platform_key_missing(self) -> bool:
        """Queries would run on the platform key, and none is configured (operators must set ANTHROPIC_API_KEY)."""
        return self.key_source == KeySource.PLATFORM and not keys.platform_key_configured()


def validate_query(text: str) -> str:
    """The trimmed question. Raises InvalidRequest when empty, too long or holding control characters, and
    QueryHoldsSecret when it holds a Claude API key or an API token (as opsion.reporting.holds_secret recognises them).

    Counted as insights.models.as_asked reads it: a line break is one character, as the browser counts it.
    """
    text = as_asked(text or "")
    if not text:
        raise InvalidRequest("Type a question first.")
    if len(text) > settings.INSIGHTS_MAX_QUERY_CHARS:
        raise InvalidRequest(
            f"Questions are limited to {settings.INSIGHTS_MAX_QUERY_CHARS:,} characters; yours has {len(text):,}. "
            "Shorten it and ask again."
        )
    if "\x00" in text:
        raise InvalidRequest("The question contains a NUL character.")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: valid JSON ("\ud800"), but no database can store it
            raise InvalidRequest("The question contains characters that are not valid text.") from None
    if holds_secret(text):
        raise QueryHoldsSecret()
    return text


def usage(org: Organisation) -> Usage:
    """The organisation's rolling window under the limit in force now."""
    choice = keys.resolve(org)
    window = ratelimit.peek(org=org, limit=choice.limit, window_seconds=settings.INSIGHTS_WINDOW_SECONDS)
    readable = not choice.uses_org_key or choice.secret.readable()  # its signature only: nothing decrypted
    own_key_limit = None
    if org.allows_byom and not choice.uses_org_key and settings.INSIGHTS_BYOM_LIMIT > choice.limit:
        own_key_limit = settings.INSIGHTS_BYOM_LIMIT
    return Usage(
        window=window,
        key_source=choice.source,
        key_status=choice.key_status,
        key_readable=readable,
        own_key_limit=own_key_limit,
    )


def window_after(refused: Refused, org: Organisation) -> ratelimit.Window:
    """The window to report beside a refusal: the limiter's own, when it was the limiter that refused."""
    return refused.window if isinstance(refused, ratelimit.RateLimited) else usage(org).window


# The columns a query's outcome writes.
_OUTCOME = (
    "answer",
    "completed_at",
    "outcome",
    "model",
    "input_tokens",
    "output_tokens",
    "error_code",
    "stop_reason",
)


@dataclass
class PendingQuery:
    """A query that has been counted and recorded; `stream()` asks Claude and records the outcome."""

    row: InsightQuery
    window: ratelimit.Window
    choice: keys.KeyChoice

    def stream(self) -> Iterator[str]:
        """Yield the answer as it arrives.

        Raises KeyInvalid, KeyUnreadable, UpstreamRateLimited, UpstreamBilling or InsightsUnavailable.

        If the reader leaves (the stream is closed: a browser tab went away), the answer is still
        read to the end and recorded, answered or failed, for the history: it has been asked and is
        being paid for. Nothing is raised to a reader who is gone.
        """
        parts: list[str] = []
        completion = None
        failure: Refused | None = None
        reader_left = False
        try:
            for item in claude.stream_answer(secret=self.choice.secret, query=self.row.query):
                if isinstance(item, claude.Completion):
                    completion = item
                    continue
                parts.append(item)
                if reader_left:
                    continue
                try:
                    yield item
                except GeneratorExit:
                    reader_left = True  # read on without yielding; close() returns when the answer ends
        except DecryptionFailed:
            org_selectors.log_unreadable_claude_api_key(self.row.organisation)
            failure = KeyUnreadable()
        except claude.UpstreamError as exc:
            failure = self._refusal(exc, answer_began=bool(parts))
        finally:
            self._record("".join(parts), completion, failure)
        if failure is not None and not reader_left:
            raise failure

    def answer(self) -> str:
        """The whole answer at once. Raises as `stream()`."""
        return "".join(self.stream())

    def answer_unread(self) -> None:
        """Ask and record the outcome for a reader who left before anything was read, as `stream()` does
        for one who leaves part-way: the query is counted, so its answer (or failure) belongs in the history."""
        try:
            self.answer()
        except Refused:
            pass  # recorded as failed

    def _refusal(self, exc: claude.UpstreamError, *, answer_began: bool) -> Refused:
        """The refusal for a failed call, logged once: the customer's own matters at INFO, ours at ERROR."""
        org = self.row.organisation
        if exc.kind == "auth" and self.choice.uses_org_key:
            log.info("org=%s: %s on the organisation's key; marked invalid", org.slug, exc)
            org_services.claude_api_key_mark(org=org, status=KeyStatus.INVALID, saved_at=self.choice.key_saved_at)
            return KeyInvalid()
        # Anthropic checks the key before its account's rate limits and balance, and began an answer only on a key
        # it accepted: Settings then says the key was accepted, not that the next query will check it.
        if self.choice.uses_org_key and (answer_began or exc.kind in ("rate_limited", "billing")):
            self._mark_accepted()
        if exc.kind == "rate_limited" and self.choice.uses_org_key:
            log.info("org=%s: %s on the organisation's key", org.slug, exc)
            return UpstreamRateLimited(exc.retry_after)
        if exc.kind == "billing" and self.choice.uses_org_key:
            log.info("org=%s: %s on the organisation's key", org.slug, exc)
            return UpstreamBilling()
        log.error("insights unavailable for org=%s: %s on the %s key", org.slug, exc, self.choice.source)
        return InsightsUnavailable()

    def _mark_accepted(self) -> None:
        if self.choice.key_status != KeyStatus.VALID:
            org_services.claude_api_key_mark(
                org=self.row.organisation, status=KeyStatus.VALID, saved_at=self.choice.key_saved_at
            )

    def _record(self, answer: str, completion, failure: Refused | None) -> None:
        row = self.row
        row.answer = answer
        row.completed_at = Now()  # the database's clock, as created_at's: a duration never reads negative
        if failure is None and completion is not None:
            row.outcome, row.model = Outcome.ANSWERED, completion.model
            row.input_tokens, row.output_tokens = completion.input_tokens, completion.output_tokens
            # Cut short at the length limit or declined is still answered (Anthropic wrote and billed it, and the
            # limit counts it): the reader is told beside the answer, which is kept as far as it went.
            row.stop_reason = completion.stop_reason
            if self.choice.uses_org_key:
                self._mark_accepted()
        else:
            row.outcome = Outcome.FAILED
            row.error_code = failure.code if failure else INTERRUPTED
        # An UPDATE, not save(update_fields=…), which raises when the row is gone: staff may delete the
        # organisation (offboarding, erasure) or the row in admin while Claude writes. The reader still gets
        # the answer; nothing is written back.
        values = {field: getattr(row, field) for field in _OUTCOME}
        if row.outcome == Outcome.FAILED and row.idempotency_key is not None:
            values["idempotency_key"] = row.idempotency_key = None  # a failure lets its key go: a retry asks again
        if not InsightQuery.objects.filter(pk=row.pk).update(**values):
            log.info("org=%s: query %s was deleted before its outcome was recorded", row.organisation.slug, row.pk)


# How many times a query chooses its key again when the choice changed as its decision waited (ratelimit.KeyChanged):
# each time another key write or plan change committed in those milliseconds.
KEY_CHOICES = 5


def start(*, membership: Membership, text: str, idempotency_key: str | None = None) -> PendingQuery:
    """Validate, choose the key and count the query.

    Raises InvalidRequest, QueryHoldsSecret, KeyUnreadable, InsightsUnavailable or RateLimited; with an
    `idempotency_key` the member sent before, AlreadyAsked (the query it holds) or IdempotencyKeyReused (it holds
    another question), or
    IdempotencyKeyContested (other requests with it kept taking it as this one decided); NotFound, a non-member's
    answer, nothing counted, when the member was removed (or deactivated) while the decision waited.

    A query counts once it is let through here; refusals before that (bad input, no platform key,
    over the limit) do not. It is counted under the limit of the key in force when it is decided, and sent with
    that key: if a key write or a plan change committed while the decision waited for it, the key is chosen again.

    An idempotency key holds the member's query in this organisation while it is pending and once answered: a
    retry is given that query rather than asking again. A failed query lets its key go (a retry asks again, and
    counts), as a refused request never took it. Two retries deciding at once are told apart by the database's
    unique index: the one whose insert it refuses is given the other's query, nothing counted; should that query fail
    before this one looks, this one decides again, and after KEY_CHOICES such rounds gives up, unasked.
    """
    query = validate_query(text)
    if idempotency_key is not None:
        _check_asked(membership=membership, key=validate_idempotency_key(idempotency_key), query=query)
    contested = False  # whether the last decision lost the Idempotency-Key to another request
    for _ in range(KEY_CHOICES):
        try:
            return _count(membership=membership, query=query, idempotency_key=idempotency_key)
        except ratelimit.NotMember:
            raise NotFound() from None
        except ratelimit.RateLimited:
            if idempotency_key is not None:
                # Another request with this key may have taken the window's last query after this one looked: the
                # limit then refuses this one before its insert meets the unique index. It is a retry of that query,
                # nothing counted, and is given it (AlreadyAsked), not "Rate limit reached".
                _check_asked(membership=membership, key=idempotency_key, query=query)
            raise
        except ratelimit.KeyChanged:
            # Read again, key included (resolve() reads it afresh), for this decision and whatever the page shows after.
            membership.organisation = Organisation.objects.get(pk=membership.organisation_id)
            contested = False
        except IntegrityError as refused:
            if idempotency_key is None or not _key_clash(refused):
                raise
            # Another request with this key inserted its query first: this one is a retry of it.
            _check_asked(membership=membership, key=idempotency_key, query=query)
            # That query failed in the moments since, letting the key go: decide again.
            contested = True
    if contested:
        # The client's own copies of this request kept taking the key and failing (Anthropic failing, each a 503 of
        # its own): this one was never asked, so it is no failure of AI Insights but a key still busy. The client
        # retries as after any 409, and asks then.
        log.info(
            "org=%s: a request gave up its Idempotency-Key to others %s times",
            membership.organisation.slug,
            KEY_CHOICES,
        )
        raise IdempotencyKeyContested()
    log.error(
        "org=%s: one query was decided %s times (its key or plan changed as it waited)",
        membership.organisation.slug,
        KEY_CHOICES,
    )
    raise InsightsUnavailable()


def _key_clash(refused: IntegrityError) -> bool:
    """Whether the Idempotency-Key's unique index refused the insert (not another constraint: a row it names gone).
    PostgreSQL names the index, SQLite its columns."""
    return IDEMPOTENCY_KEY_INDEX in str(refused) or ".idempotency_key" in str(refused)


def _check_asked(*, membership: Membership, key: str, query: str) -> None:
    """Raise AlreadyAsked or IdempotencyKeyReused when `key` holds one of the member's queries here."""
    earlier = _by_idempotency_key(membership=membership, key=key)
    if earlier is None:
        return
    if earlier.query != query:
        raise IdempotencyKeyReused(earlier)
    raise AlreadyAsked(earlier)


def _by_idempotency_key(*, membership: Membership, key: str) -> InsightQuery | None:
    """The member's query here holding `key`: pending or answered (a failed one has let it go). One whose process
    died before recording its outcome is recorded as interrupted first, and lets it go too."""
    rows = InsightQuery.objects.filter(organisation=membership.organisation, user=membership.user, idempotency_key=key)
    found = _settled(list(rows[:1]))  # at most one: the unique index
    if found and found[0].outcome == Outcome.FAILED:
        # A failed query found still holding it (recorded as interrupted by a worker on older code, during a deploy)
        # lets it go now, or the index would refuse every retry's insert.
        rows.filter(pk=found[0].pk, outcome=Outcome.FAILED).update(idempotency_key=None)
        return None
    return found[0] if found else None


def _count(*, membership: Membership, query: str, idempotency_key: str | None = None) -> PendingQuery:
    org = membership.organisation
    choice = keys.resolve(org)
    if choice.uses_org_key and not org_selectors.claude_api_key_readable(org, choice.secret):
        # Checked before counting: nothing can be sent, so the query must not count.
        raise KeyUnreadable()
    if not choice.uses_org_key and not keys.platform_key_configured():
        log.error("ANTHROPIC_API_KEY is not set: AI Insights cannot answer on the platform key")
        raise InsightsUnavailable()
    fields = {
        "user": membership.user,
        "key_source": choice.source,
        "query": query,
        "model": settings.ANTHROPIC_MODEL,
        "idempotency_key": idempotency_key,
    }
    try:
        row, window = ratelimit.acquire(
            org=org,
            limit=choice.limit,
            window_seconds=settings.INSIGHTS_WINDOW_SECONDS,
            row=fields,
            key_saved_at=choice.key_saved_at,  # None on the platform key
            member_id=membership.user_id,
        )
    except ratelimit.RateLimited as refused:
        refused.key_source = choice.source  # the page's meter names the key beside the limit that refused
        raise
    return PendingQuery(row=row, window=window, choice=choice)


def own_query(*, membership: Membership, pk: int) -> InsightQuery | None:
    """One of the member's own queries in this organisation, or None."""
    rows = InsightQuery.objects.recent_for(org=membership.organisation, user=membership.user).filter(pk=pk)
    return next(iter(_settled(list(rows[:1]))), None)


def recent_queries(
    *, membership: Membership, limit: int = 20, offset: int = 0, after: int | None = None
) -> paging.Page:
    """A page of `limit` of the member's own queries, newest first, from the `offset`-th after the query `after` (if
    given), and whether more follow: "Your recent queries" and listQueries alike. Raises InvalidRequest if `after` is
    not one of them."""
    rows = InsightQuery.objects.recent_for(org=membership.organisation, user=membership.user)
    rows = paging.after(rows, after, what="one of your queries here")
    return paging.one_past(_settled(list(rows[offset : offset + limit + 1])), limit)


def settle_abandoned() -> int:
    """Record every abandoned query (see InsightQuery.abandoned) as failed, `interrupted`. Returns how many."""
    return _record_interrupted(InsightQuery.objects.all())


def _abandoned(rows):
    """Those of `rows` abandoned by the database's clock (an app server's may run ahead)."""
    return rows.filter(outcome=Outcome.PENDING, created_at__lt=Now() - abandoned_after())


def _record_interrupted(rows) -> int:
    # Its Idempotency-Key let go as a failure's is: a retry asks again. Should the answer arrive after all (its process
    # outlived the deadline), it is recorded without the key, which may be a retry's by then.
    return _abandoned(rows).update(
        outcome=Outcome.FAILED, error_code=INTERRUPTED, completed_at=Now(), idempotency_key=None
    )


def _settled(rows: list[InsightQuery]) -> list[InsightQuery]:
    """`rows`, any abandoned one recorded (and shown) as failed, `interrupted`, not "still being written"
    forever. A write only when the app's clock says there is one; the database's decides."""
    if stale := [row for row in rows if row.abandoned]:
        pks = set(
            _abandoned(InsightQuery.objects.filter(pk__in=[row.pk for row in stale])).values_list("pk", flat=True)
        )
        _record_interrupted(InsightQuery.objects.filter(pk__in=pks))
        for row in stale:
            if row.pk in pks:
                row.outcome, row.error_code = Outcome.FAILED, INTERRUPTED
    return rows
