"""What staff are told of an organisation's Claude API key on the organisations list: its column, its filter, and the
column's sort. Never anything of the key itself."""

import json

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db import connections
from django.db.models import Case, Q, Value, When
from django.db.models.expressions import RawSQL
from django.http import HttpRequest

from orgs.models import BYOM_PLANS, ClaudeApiKey, Organisation

# In use, stored on a BYOM plan but opened by no configured FIELD_ENCRYPTION_KEYS entry (its queries are all refused),
# left behind by a downgrade (stored, unused), or none: in the list's column, its filter and the change page alike.
# Their order is the filter's, and the column's when sorted ascending.
KEY_STATES = {
    "in_use": "In use",
    "unreadable": "Stored, unreadable",
    "unused": "Stored, unused on this plan",
    "none": "None stored",
}
STATE_RANKS = {state: rank for rank, state in enumerate(KEY_STATES)}


def key_state(org: Organisation) -> str:
    """The organisation's KEY_STATES entry (`_key_set` and `_key_secret` are annotated by
    OrganisationAdmin.get_queryset, `_key_rank` by KeyStateChangeList when it has checked every key already). Only
    the stored key's signature is checked: nothing is decrypted."""
    if getattr(org, "_key_rank", None) is not None:
        return list(KEY_STATES)[org._key_rank]
    if not org._key_set:
        return "none"
    if not org.allows_byom:
        return "unused"
    # Not selectors.claude_api_key_readable: a list page of unreadable keys would log an ERROR line per row at
    # every view. The change page's Encryption line, Settings and each refused query log it.
    return "in_use" if org._key_secret is not None and org._key_secret.bound_to(org.pk).readable() else "unreadable"


def byom_keys_readable(request: HttpRequest) -> dict[int, bool]:
    """Whether a configured FIELD_ENCRYPTION_KEYS entry opens each key stored on a BYOM plan, by organisation id.

    SQL cannot check a Fernet signature, so every such key is read and checked here (about 11 µs each with its
    fetch on SQLite, nothing decrypted, and about 15 µs more to derive its organisation's key, orgs.crypto: under a
    second for 30,000), once per request however many of the
    list's filter choices, their counts (?_facets=1) and its sort ask: each asked on its own, and the counts ask
    once per choice and again for each other filter's counts. Only ids and answers are kept, no ciphertext.
    """
    if not hasattr(request, "_byom_keys_readable"):
        keys = ClaudeApiKey.objects.filter(organisation__plan__in=BYOM_PLANS).values_list("organisation_id", "secret")
        request._byom_keys_readable = {org_id: secret.bound_to(org_id).readable() for org_id, secret in keys.iterator()}
    return request._byom_keys_readable


def _one_value(ids: list[int], vendor: str):
    """`ids` as a subquery bound as a single value (a JSON list on SQLite, an array on PostgreSQL): one value each
    would pass SQLite's limit on values per statement (32,766 as upstream builds it) with tens of thousands."""
    if vendor == "sqlite":
        return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(ids)])
    if vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", [ids])
    return ids


def _readable_or_not(request: HttpRequest, readable: bool, vendor: str):
    """The organisations whose key on a BYOM plan a configured entry opens (or, `readable` false, does not)."""
    ids = [org_id for org_id, opens in byom_keys_readable(request).items() if opens == readable]
    return _one_value(ids, vendor)


class ClaudeApiKeyFilter(admin.SimpleListFilter):
    """The list's key column, as a filter."""

    title = "Claude API key"
    parameter_name = "claude_api_key"
    CHECKING = ("in_use", "unreadable")  # the choices that check each key's signature

    def lookups(self, request, model_admin):
        return list(KEY_STATES.items())

    def queryset(self, request, queryset):
        if self.value() in self.CHECKING:
            readable = _readable_or_not(request, self.value() == "in_use", connections[queryset.db].vendor)
            return queryset.filter(_key_set=True, plan__in=BYOM_PLANS, pk__in=readable)
        if self.value() == "unused":
            return queryset.filter(_key_set=True).exclude(plan__in=BYOM_PLANS)
        if self.value() == "none":
            return queryset.filter(_key_set=False)
        return queryset


class KeyStateChangeList(ChangeList):
    """The organisations list, whose key column sorts by the state it shows (KEY_STATES' order ascending).

    "Stored, unreadable" is known only once each key's signature is checked, so a sort by the column checks every
    key on a BYOM plan first, as the filter's choices do, and ranks each row by its state in the list's own query.
    So does a view that checks them anyway (those choices, or the filter's counts): its rows then show the rank
    rather than check their own keys a second time."""

    def get_queryset(self, request, exclude_parameters=None):
        if "_key_rank" not in self.root_queryset.query.annotations and self._checks_every_key():
            vendor = connections[self.root_queryset.db].vendor
            unreadable = _readable_or_not(request, False, vendor)
            rank = Case(
                When(Q(_key_set=False), then=Value(STATE_RANKS["none"])),
                When(~Q(plan__in=BYOM_PLANS), then=Value(STATE_RANKS["unused"])),
                When(Q(pk__in=unreadable), then=Value(STATE_RANKS["unreadable"])),
                default=Value(STATE_RANKS["in_use"]),
            )
            self.root_queryset = self.root_queryset.annotate(_key_rank=rank)
        return super().get_queryset(request, exclude_parameters)

    def _checks_every_key(self) -> bool:
        sorted_by = [self.list_display[i] for i in self.get_ordering_field_columns() if i < len(self.list_display)]
        return (
            "claude_api_key_state" in sorted_by
            or self.add_facets
            or self.params.get(ClaudeApiKeyFilter.parameter_name) in ClaudeApiKeyFilter.CHECKING
        )
