"""Keyset paging for the API's newest-first lists (ordered by created_at, then id, both descending)."""

from django.db.models import Q, QuerySet

from opsion.errors import InvalidRequest


def after(rows: QuerySet, pk: int | None, *, what: str) -> QuerySet:
    """Those of `rows` that come after the row `pk` in newest-first order: the page after the one that ended
    with it. Unlike an offset, it neither repeats what new rows push down nor scans what it skips, at any depth.
    Raises InvalidRequest when `pk` is not one of `rows` (`what` names what it should be)."""
    if pk is None:
        return rows
    anchor = list(rows.filter(pk=pk).values_list("created_at", flat=True)[:1])
    if not anchor:
        raise InvalidRequest(f"`after` is not the id of {what}.")
    return rows.filter(Q(created_at__lt=anchor[0]) | Q(created_at=anchor[0], pk__lt=pk))
