"""The limiter's first design, kept only to measure it beside the current one (the "before").

Five round trips on PostgreSQL: BEGIN, lock the organisation row, count the window (COUNT(id),
which has to visit the heap), insert, COMMIT. Copied from insights/ratelimit.py as it was.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, DateTimeField, ExpressionWrapper, Max, Min
from django.db.models.functions import Now

from insights.models import InsightQuery
from insights.ratelimit import RateLimited, Window, _reset
from orgs.models import Organisation


def _stats(org_id: int, window_seconds: int):
    cutoff = ExpressionWrapper(Now() - timedelta(seconds=window_seconds), output_field=DateTimeField())
    row = InsightQuery.objects.filter(organisation_id=org_id, created_at__gt=cutoff).aggregate(
        used=Count("id"), oldest=Min("created_at"), now=Max(Now())
    )
    return row["used"], row["oldest"], row["now"]


def acquire(*, org: Organisation, limit: int, window_seconds: int, row: dict) -> InsightQuery:
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=org.pk).values_list("pk", flat=True).get()
        used, oldest, now = _stats(org.pk, window_seconds)
        if used >= limit:
            raise RateLimited(Window(limit, window_seconds, used, _reset(oldest, now, window_seconds)))
        return InsightQuery.objects.create(organisation=org, **row)
