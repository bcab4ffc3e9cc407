from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from orgs.models import Organisation


class KeySource(models.TextChoices):
    ORGANISATION = "organisation", "Your organisation's Anthropic key"
    PLATFORM = "platform", "Opsion's platform key"


class Outcome(models.TextChoices):
    PENDING = "pending", "In progress"
    ANSWERED = "answered", "Answered"
    FAILED = "failed", "Failed"


class StopReason(models.TextChoices):
    """How Claude ended an answer it wrote (Anthropic's `stop_reason`, in the few ways a reader must tell apart).
    Labels are staff's (admin); the customer's page says it in full sentences."""

    COMPLETE = "complete", "Complete"
    # Anthropic billed every token of it: still an answered query, but one no reader may take for the whole answer.
    MAX_TOKENS = "max_tokens", "Cut short at the length limit"
    REFUSAL = "refusal", "Claude declined"


IDEMPOTENCY_KEY_INDEX = "insight_idempotency_key"

# An answered row without a stop reason was written by a worker still on older code during a deploy: it reads
# "complete" (InsightQuery.ended). The same, in SQL, for admin's filter and sort by how an answer ended.
_WRITTEN_MID_DEPLOY = models.Q(stop_reason__isnull=True, outcome=Outcome.ANSWERED)
ENDED = models.Case(
    models.When(_WRITTEN_MID_DEPLOY, then=models.Value(StopReason.COMPLETE.value)), default=models.F("stop_reason")
)


FAILED_BY_CODE_INDEX = "insight_failed_by_code"


class InsightQueryQuerySet(models.QuerySet):
    def ended(self, value: str) -> "InsightQueryQuerySet":
        """The queries whose InsightQuery.ended is `value` (a StopReason value), as that reads each row."""
        ended = models.Q(stop_reason=value)
        return self.filter(ended | _WRITTEN_MID_DEPLOY if value == StopReason.COMPLETE else ended)

    def recent_for(self, *, org: Organisation, user) -> "InsightQueryQuerySet":
        return self.filter(organisation=org, user=user).order_by("-created_at", "-id")


class InsightQuery(models.Model):
    """One query sent to Anthropic. The rows are the rolling limit's log and the usage history."""

    # No index of its own: the (organisation, created_at) index leads with it, one index fewer per insert.
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="insight_queries", db_index=False
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # The database's clock, not each process's: every app server counts against the same time.
    created_at = models.DateTimeField(db_default=Now())
    key_source = models.CharField(max_length=12, choices=KeySource.choices)
    query = models.TextField()
    answer = models.TextField(blank=True)
    model = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    error_code = models.CharField(max_length=40, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Null until Claude ends the answer, and for ever when it never did (failed: `error_code` says why).
    stop_reason = models.CharField(max_length=10, choices=StopReason.choices, null=True, blank=True)
    # The API client's `Idempotency-Key`, when it sent one and until the query fails: a retry with it is given this
    # query's answer. Null, not blank, when none was sent, so that workers still on older code during a deploy (the
    # limiter's function inserts only the columns it is given) leave it empty, and the unique index ignores them.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    objects = InsightQueryQuerySet.as_manager()

    class Meta:
        indexes = [
            # The window count is a range scan on this index, however long the history grows.
            models.Index(fields=["organisation", "created_at"], name="insight_org_created"),
            models.Index(fields=["organisation", "user", "-created_at"], name="insight_org_user_recent"),
            # Admin's error-code filter, its count and its newest page, without reading the whole log (a 1 M-row log
            # took about a second a page: docs/benchmarks.md). Failed rows only: a query is inserted with no error
            # code and an answered one keeps none, so it adds no entry, and its outcome's UPDATE stays heap-only.
            models.Index(fields=["error_code", "id"], condition=~models.Q(error_code=""), name=FAILED_BY_CODE_INDEX),
        ]
        constraints = [
            # One query per member's key, decided by the database when two retries race. A failed query lets its key
            # go (a retry asks again) by clearing it as its outcome is recorded, as does a query recorded as
            # interrupted: the condition names no column that the outcome's UPDATE of every query writes, which
            # PostgreSQL can then keep a heap-only update.
            models.UniqueConstraint(
                fields=["organisation", "user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name=IDEMPOTENCY_KEY_INDEX,
            ),
        ]
        verbose_name_plural = "insight queries"

    def __str__(self) -> str:
        return f"{self.organisation} #{self.pk}"

    @property
    def ended(self) -> str | None:
        """How Claude ended the answer (a StopReason value), or None when it never did (pending, failed). An answered
        row without one was written by a worker still on older code during a deploy (after migration 0006 filled
        the rest): it was shown as complete then, and reads so."""
        if self.stop_reason is None and self.outcome == Outcome.ANSWERED:
            return StopReason.COMPLETE
        return self.stop_reason

    @property
    def abandoned(self) -> bool:
        """Still pending long after any answer could have ended: the process writing it was killed (a
        deploy's SIGKILL after gunicorn's graceful timeout, running out of memory) before it recorded one."""
        return self.outcome == Outcome.PENDING and self.created_at < timezone.now() - abandoned_after()


def abandoned_after() -> timedelta:
    """How long a pending query may take: the first read and the whole answer each have
    ANTHROPIC_TIMEOUT_SECONDS, plus a minute for clocks and the outcome's write."""
    return timedelta(seconds=2 * settings.ANTHROPIC_TIMEOUT_SECONDS + 60)


def as_asked(text: str) -> str:
    """A question as asking reads and counts it (insights.services.validate_query) and the history keeps it: trimmed,
    each line break one character, as the browser counts it (a plain form post sends each as CRLF)."""
    return text.replace("\r\n", "\n").strip()
