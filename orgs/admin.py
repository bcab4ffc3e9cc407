from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.db.models import Count, Exists, OuterRef
from django.template.response import TemplateResponse

from insights import services as insights_services
from opsion.http import client_ip
from orgs import services
from orgs.models import ApiToken, AuditEvent, ClaudeApiKey, Membership, Organisation, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    # The key model is deliberately not registered and not inlined: it never appears in admin,
    # so neither its value nor its ciphertext can reach a form or a change message.
    list_display = ["name", "slug", "plan", "claude_api_key_set", "member_count", "created_at"]
    list_filter = ["plan"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    actions = ["remove_claude_api_key"]
    readonly_fields = ["claude_api_key_stored"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if "plan" in form.base_fields:
            form.base_fields["plan"].help_text = (
                "Only Institutional and Custom include Bring Your Own Model. On any other plan AI Insights uses "
                f"Opsion's platform key and its limit of {settings.INSIGHTS_PLATFORM_LIMIT} queries per rolling "
                f"{settings.INSIGHTS_WINDOW_SECONDS // 60} minutes applies at once; a stored key stays stored, "
                "unused, until the organisation removes it or the plan returns."
            )
        return form

    @admin.display(description="Claude API key")
    def claude_api_key_stored(self, obj) -> str:
        # Whether one is stored, and nothing of the key itself: not even its ciphertext reaches admin.
        if obj is None or not obj._key_set:  # annotated by get_queryset, which the change page reads through
            return "None stored."
        state = "Stored, in use." if obj.allows_byom else "Stored, but unused on this plan."
        return f"{state} Remove it with the list's action “Remove the Claude API key of the selected organisations…”."

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _members=Count("memberships", distinct=True),
                _key_set=Exists(ClaudeApiKey.objects.filter(organisation=OuterRef("pk"))),
            )
        )

    @admin.display(boolean=True, description="Claude API key set", ordering="_key_set")
    def claude_api_key_set(self, obj) -> bool:
        return obj._key_set

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj) -> int:
        return obj._members

    @admin.action(description="Remove the Claude API key of the selected organisations…", permissions=["change"])
    def remove_claude_api_key(self, request, queryset):
        if request.POST.get("confirm") != "yes":
            # First a confirmation step, as for deletions: it names each key and what removing it does now.
            return self._confirm_key_removal(request, queryset)
        removed = sum(
            services.claude_api_key_remove_as_staff(org=org, staff_user=request.user, ip=client_ip(request))
            for org in queryset
        )
        self.message_user(request, f"Removed the Claude API key of {removed} organisation(s).", messages.SUCCESS)

    def _confirm_key_removal(self, request, queryset) -> TemplateResponse:
        with_key = queryset.filter(claude_api_key__isnull=False).order_by("name")
        rows = [
            {"org": org, "in_use": org.allows_byom, "after": insights_services.window_on_platform_key(org)}
            for org in with_key
        ]
        selected = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        context = {
            **self.admin_site.each_context(request),
            "title": "Remove Claude API keys?",
            "opts": self.model._meta,
            "rows": rows,
            "selected": selected,
            "without_key": len(selected) - len(rows),
            "platform_limit": settings.INSIGHTS_PLATFORM_LIMIT,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/orgs/organisation/remove_key_confirmation.html", context)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    privilege_fields = ("is_staff", "is_superuser", "groups", "user_permissions")

    # Django's UserAdmin lets anyone with "change user" edit privileges, their own included: a
    # support account could make itself a superuser. Only superusers grant or take away staff status
    # and permissions, or change another staff account (its password included).
    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return readonly if request.user.is_superuser else (*readonly, *self.privilege_fields)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_staff and obj != request.user and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_staff and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin):
    """A group's permissions are privileges too: staff who may change a group they belong to could
    otherwise grant themselves anything (Django's own GroupAdmin allows it). Only superusers create,
    change or delete groups; others with "view group" may look."""

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    search_fields = ["name", "user__email"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created by their owner (console or create_api_token), shown once


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organisation", "action", "actor_email", "ip", "via"]
    list_filter = ["action", "via"]
    search_fields = ["organisation__slug", "actor_email"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
