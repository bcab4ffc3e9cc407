from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected

from insights import services
from insights.admin_paging import CappedCountPaginator, only_filtered_by, page_number
from insights.models import ENDED, InsightQuery, KeySource, StopReason
from insights.ratelimit import counted, window_words
from insights.services import FAILURE_MESSAGES, INTERRUPTED
from orgs.admin_links import RelatedLinksByPermission, TitledByOrganisation
from orgs.admin_read_only import may_view

# The customer's history says "Your organisation's Anthropic key"; to Opsion staff "your organisation" is
# Opsion, the opposite of the key it names. Admin says it in staff's own words.
STAFF_KEY_LABELS = {
    KeySource.ORGANISATION: "The organisation's own Anthropic key",
    KeySource.PLATFORM: "Opsion's platform key",
}


class KeySourceFilter(admin.SimpleListFilter):
    title = "key"
    parameter_name = "key_source__exact"  # the field's own lookup, so links made for the stock filter still work

    def lookups(self, request, model_admin):
        return list(STAFF_KEY_LABELS.items())

    def queryset(self, request, queryset):
        return queryset.filter(key_source=self.value()) if self.value() else queryset


class EndedFilter(admin.SimpleListFilter):
    """The list's "Ended" column, as a filter: its Complete choice, and its count, hold the answers written mid-deploy
    without a stop reason, which the column says are complete (the stock filter on the field left them out)."""

    title = "how it ended"  # beside the list's "Ended" column, in its words, not the field's "stop reason"
    parameter_name = "stop_reason__exact"  # the field's own lookup, so links made for the stock filter still work

    def lookups(self, request, model_admin):
        return StopReason.choices

    def queryset(self, request, queryset):
        return queryset.ended(self.value()) if self.value() else queryset


# Each error code a failed query records, in words, with the code itself (which the list's column, the query's page
# and the API show, and which support are given by customers). Every code the app records has one: a test keeps them
# in step with services.FAILURE_MESSAGES.
ERROR_CODE_LABELS = {
    services.KeyInvalid.code: "Key rejected by Anthropic",
    services.KeyUnreadable.code: "Stored key unreadable",
    services.UpstreamRateLimited.code: "Rate-limited by Anthropic",
    services.UpstreamBilling.code: "Refused by Anthropic for billing",
    services.InsightsUnavailable.code: "Temporarily unavailable",
    INTERRUPTED: "Stopped with no refusal given",
}


class ErrorCodeFilter(admin.SimpleListFilter):
    """The list's error code column, as a filter ("all queries that failed on an invalid key last week", with the
    date filter). Its choices are the codes the app records, not the table's distinct values: no scan of every
    query ever asked at each view."""

    title = "error code"
    parameter_name = "error_code__exact"  # the field's own lookup, so links staff made by hand still work

    def lookups(self, request, model_admin):
        return [(code, f"{label} ({code})") for code, label in ERROR_CODE_LABELS.items()]

    def queryset(self, request, queryset):
        return queryset.filter(error_code=self.value()) if self.value() else queryset


@admin.register(InsightQuery)
class InsightQueryAdmin(TitledByOrganisation, RelatedLinksByPermission, admin.ModelAdmin):
    list_of = "AI Insights queries"
    list_display = [
        "created_at",
        "organisation",
        "user",
        "key",
        "outcome",
        "error_code",
        "ended",
        "output_tokens",
    ]
    list_filter = [KeySourceFilter, "outcome", ErrorCodeFilter, EndedFilter, "created_at"]
    # Shown as `key` and `ended` below, in staff's words: the query's own page said "Stop reason" (and "-" for an
    # answer written mid-deploy) beside a list that says "Ended: Complete".
    exclude = ["key_source", "stop_reason"]
    readonly_fields = ["key", "ended", "message_shown"]
    search_fields = ["organisation__slug", "organisation__name", "user__email"]
    list_select_related = ["organisation", "user"]
    actions = ["delete_selected"]  # the stock action, in the window's words below
    # Every query ever asked is a row: no second count of the whole table beside each filtered list ("N total").
    show_full_result_count = False
    # Filtered by outcome, by how it ended or by key alone, the list's count would read the whole table at every page
    # (about a second at a million queries, docs/benchmarks.md): no index can serve them without costing every
    # insert, or the outcome's UPDATE its heap-only write. Those lists count at most one row past `count_cap` (or
    # past the page asked for, so staff can page on) and say "More than 1000". The others keep their exact count:
    # the whole log's, the error code's and the date's are counted by an index, and a search is left as it was.
    count_cap = 1_000
    CAPPED_FILTERS = {"outcome__exact", KeySourceFilter.parameter_name, EndedFilter.parameter_name}

    class Media:
        css = {"all": ["css/admin/lists.css"]}  # the error code and the columns after it stay on a laptop's screen

    # How Claude ended an answer: "Cut short at the length limit" is an answered query whose customer was told it is
    # incomplete. Empty ("-") for one Claude did not end (pending, or failed: its error code says why), written out
    # here: the query's own page prints what a method returns as it is, and read "Ended: None" for a failed query.
    @admin.display(description="Ended", ordering=ENDED)  # by what it shows, a mid-deploy answer among the complete
    def ended(self, obj: InsightQuery) -> str:
        if not obj.ended:
            return self.get_empty_value_display()
        return StopReason(obj.ended).label  # as the API reads it, a mid-deploy row included

    # Beside the error code (which staff search and filter by, and which the API gives): what the customer was told,
    # in the words the API and console gave, for support answering "our queries fail".
    @admin.display(description="Message shown")
    def message_shown(self, obj: InsightQuery) -> str:
        if obj.error_code == INTERRUPTED:
            # No refusal reached an API client or a plain post, but a page streaming the answer (static/js/insights.js,
            # whose words these are) told its reader the answer was interrupted.
            return (
                "No refusal: the answer stopped unfinished (the server answering it stopped). A page streaming it said "
                "“The answer was interrupted before it finished. Please try again.”"
            )
        return FAILURE_MESSAGES.get(obj.error_code) or self.get_empty_value_display()

    @admin.display(description="Key", ordering="key_source")
    def key(self, obj: InsightQuery) -> str:
        return STAFF_KEY_LABELS.get(obj.key_source, obj.key_source)

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        if not only_filtered_by(request, self.CAPPED_FILTERS):
            return super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
        cap = max(self.count_cap, page_number(request) * per_page)  # the page asked for, and one more if there is
        return CappedCountPaginator(queryset, per_page, orphans, allow_empty_first_page, cap=cap)

    def has_view_permission(self, request, obj=None) -> bool:
        return may_view(request, self.opts)  # "Can change insight query", never offered, does not stand for it

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    # The limit counts the query log: a query inside the rolling window is the limit's to let go of, not staff's
    # (a deleted one would give its organisation a query back), as prune_insight_queries never deletes inside it.
    def has_delete_permission(self, request, obj=None) -> bool:
        if (
            obj is not None
            and counted(InsightQuery.objects.filter(pk=obj.pk), settings.INSIGHTS_WINDOW_SECONDS).exists()
        ):
            return False
        return super().has_delete_permission(request, obj)

    @admin.action(permissions=["delete"], description=delete_selected.short_description)
    def delete_selected(self, request, queryset):
        inside = counted(queryset, settings.INSIGHTS_WINDOW_SECONDS).count()
        if not inside:
            return delete_selected(self, request, queryset)
        total = queryset.count()
        # Counted as selected: "1 of the 1 selected queries" read as if a second one had been left out.
        if total == 1:
            which, them = "The selected query is", "it"
        elif inside == total:
            which, them = f"All {total} selected queries are", "them"
        else:
            verb, them = ("is", "it") if inside == 1 else ("are", "them")
            which = f"{inside} of the {total} selected queries {verb}"
        self.message_user(
            request,
            f"{which} inside the rolling window (the last {window_words(settings.INSIGHTS_WINDOW_SECONDS)}): the "
            f"limit counts {them}, so nothing was deleted. Select only older queries.",
            messages.ERROR,
        )
        return None
