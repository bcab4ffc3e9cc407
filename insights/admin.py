from django.contrib import admin

from insights.models import InsightQuery, KeySource

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


@admin.register(InsightQuery)
class InsightQueryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "organisation",
        "user",
        "key",
        "outcome",
        "error_code",
        "output_tokens",
    ]
    list_filter = [KeySourceFilter, "outcome"]
    exclude = ["key_source"]  # shown as `key` below, in staff's words
    readonly_fields = ["key"]
    search_fields = ["organisation__slug", "user__email"]
    list_select_related = ["organisation", "user"]
    # Every query ever asked is a row: no second count of the whole table beside each filtered list ("N total").
    show_full_result_count = False

    @admin.display(description="Key", ordering="key_source")
    def key(self, obj: InsightQuery) -> str:
        return STAFF_KEY_LABELS.get(obj.key_source, obj.key_source)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
