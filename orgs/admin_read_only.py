"""Admin's pages that staff may only look at: the audit log and the outbox (and, for what it lets them look at, the
query log and the groups). A permission opens what it names and nothing else.

Django's own check lets "Can change" stand for "Can view", which is right where staff may change rows, but on these
pages no one may, so admin's pickers do not offer "Can change" (orgs.admin._permissions_admin_checks). One granted
anyway, from the shell or before the pickers were narrowed, would still have opened the page, invisibly: removing
"Can view audit event" from a support group would not have taken the audit log away from it."""

from django.contrib import admin
from django.contrib.auth import get_permission_codename

from orgs.admin_links import RelatedLinksByPermission


def may_view(request, opts) -> bool:
    """Whether the user holds the view permission of the model `opts` describes (a superuser holds every one)."""
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('view', opts)}")


class ReadOnlyAdmin(RelatedLinksByPermission, admin.ModelAdmin):
    """Rows written and deleted by Opsion alone: no one adds, changes or deletes one here, superusers included."""

    def has_view_permission(self, request, obj=None) -> bool:
        return may_view(request, self.opts)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
