"""Deleting many rows without one long lock or one huge statement."""

from django.db.models import QuerySet


def delete_in_batches(rows: QuerySet, *, batch_size: int) -> int:
    """Delete `rows`, `batch_size` at a time, each batch its own statement (and, in autocommit, its own transaction):
    a first run over years of old rows neither holds one long lock nor builds one huge DELETE. Returns how many rows
    of the queryset's model went (a batch another process deleted meanwhile only counts for less)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    model = rows.model
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:batch_size]):
        deleted += model._default_manager.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
    return deleted
