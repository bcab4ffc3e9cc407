from django.contrib import admin

from insights.models import InsightQuery


@admin.register(InsightQuery)
class InsightQueryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "organisation",
        "user",
        "key_source",
        "outcome",
        "error_code",
        "output_tokens",
    ]
    list_filter = ["key_source", "outcome"]
    search_fields = ["organisation__slug", "user__email"]
    list_select_related = ["organisation", "user"]
    # Every query ever asked is a row: no second count of the whole table beside each filtered list ("N total").
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
