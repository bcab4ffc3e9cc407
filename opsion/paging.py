"""Keyset paging for the API's newest-first lists (ordered by created_at, then id, both descending)."""

from dataclasses import dataclass

from django.db.models import Q, QuerySet, Subquery

from opsion.errors import InvalidRequest


def after(rows: QuerySet, pk: int | None, *, what: str) -> QuerySet:
    """Those of `rows` that come after the row `pk` in newest-first order: the page after the one that ended
    with it. Unlike an offset, it neither repeats what new rows push down nor scans what it skips, at any depth.
    Raises InvalidRequest when `pk` is not one of `rows` (`what` names what it should be)."""
    if pk is None:
        return rows
    if not rows.filter(pk=pk).exists():
        raise InvalidRequest(f"`after` is not the id of {what}.")
    # The anchor's created_at as stored, compared in the database: SQLite keeps a timestamp as text, and one
    # stamped by its clock (Now(): milliseconds) read back and sent as a parameter (microseconds) sorts after
    # itself, so the page after a row would start with that row again.
    anchor = Subquery(rows.model._default_manager.filter(pk=pk).values("created_at"))
    # The bound on created_at alone is what an index can start from: the OR is then checked on the rows it reads.
    return rows.filter(Q(created_at__lt=anchor) | Q(created_at=anchor, pk__lt=pk), created_at__lte=anchor)


@dataclass(frozen=True)
class Page:
    items: list
    has_more: bool  # more follow the last of `items`: the next page is not empty


def one_past(items: list, limit: int) -> Page:
    """The page of `limit` from `items`, read one past its end: that one, never shown, says whether more follow,
    without counting them."""
    return Page(items=items[:limit], has_more=len(items) > limit)
