"""Admin's query log pages: a count capped where an exact one would read the whole log at every page."""

from django.contrib.admin.views.main import IS_FACETS_VAR, ORDER_VAR, PAGE_VAR
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most `cap` + 1 rows: a list longer than `cap` has pages up to the one holding its row past the cap,
    and says "more than `cap`" (`capped`); one up to `cap` long is counted, paged and shown exactly as before."""

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, cap: int) -> None:
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.cap = cap

    @cached_property
    def count(self) -> int:
        # Newest first, as the list's own page reads them unsorted (ChangeList counts first, then reads the page: the
        # rows it reads next), whatever column the list is sorted by: under a sort by another column, a LIMIT would
        # have the database sort every match first.
        return self.object_list.order_by("-pk")[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


def page_number(request: HttpRequest) -> int:
    """The page asked for, read as the admin's ChangeList reads it (anything but a number is the first page)."""
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


def only_filtered_by(request: HttpRequest, parameters: set[str]) -> bool:
    """Whether the list asked for is filtered by one of `parameters` and by nothing else (a search included), paged,
    sorted or with its filters' counts as it may be."""
    asked = {name for name, value in request.GET.items() if value} - {PAGE_VAR, ORDER_VAR, IS_FACETS_VAR}
    return bool(asked) and asked <= parameters
