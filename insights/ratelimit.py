"""The rolling window: at most N queries per organisation in any span of W seconds.

One row per query (InsightQuery) is the log. A decision locks the organisation row, counts the
rows in the window and inserts the new one, in one short transaction committed before Anthropic
is called. Time is the database's clock, so every app server counts against the same time.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, DateTimeField, ExpressionWrapper, Max, Min
from django.db.models.functions import Now

from insights.models import InsightQuery
from opsion.errors import Refused
from orgs.models import Organisation


class RateLimited(Refused):
    code, status = "rate_limited", 429

    def __init__(self, *, limit: int, retry_after: int) -> None:
        # Wording from the product documentation: "Rate limit reached (200/hour)".
        super().__init__(f"Rate limit reached ({limit}/hour)", retry_after=retry_after)
        self.limit = limit


@dataclass(frozen=True)
class Window:
    limit: int
    window_seconds: int
    used: int
    reset_seconds: int  # until the oldest counted query leaves the window; 0 when none counts

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _stats(org_id: int, window_seconds: int) -> tuple[int, datetime | None, datetime | None]:
    cutoff = ExpressionWrapper(Now() - timedelta(seconds=window_seconds), output_field=DateTimeField())
    row = InsightQuery.objects.filter(organisation_id=org_id, created_at__gt=cutoff).aggregate(
        used=Count("id"), oldest=Min("created_at"), now=Max(Now())
    )
    return row["used"], row["oldest"], row["now"]


def _reset(oldest: datetime | None, now: datetime | None, window_seconds: int) -> int:
    if oldest is None or now is None:
        return 0
    return max(1, math.ceil((oldest + timedelta(seconds=window_seconds) - now).total_seconds()))


def peek(*, org: Organisation, limit: int, window_seconds: int) -> Window:
    """The window as it stands, without counting anything."""
    used, oldest, now = _stats(org.pk, window_seconds)
    return Window(limit, window_seconds, used, _reset(oldest, now, window_seconds))


def acquire(*, org: Organisation, limit: int, window_seconds: int, row: dict) -> tuple[InsightQuery, Window]:
    """Count one query and insert its row, or raise RateLimited with the exact Retry-After."""
    with transaction.atomic():
        # Lock the organisation row so two requests racing at 19/20 cannot both pass. The count
        # must run after the lock: under READ COMMITTED each statement takes a fresh snapshot.
        # (On SQLite select_for_update is a no-op; BEGIN IMMEDIATE has already serialised us.)
        Organisation.objects.select_for_update().filter(pk=org.pk).values_list("pk", flat=True).get()
        used, oldest, now = _stats(org.pk, window_seconds)
        if used >= limit:
            raise RateLimited(limit=limit, retry_after=_reset(oldest, now, window_seconds))
        query = InsightQuery.objects.create(organisation=org, **row)
    oldest = oldest or query.created_at
    return query, Window(limit, window_seconds, used + 1, _reset(oldest, query.created_at, window_seconds))
