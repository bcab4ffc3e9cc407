"""Memberships in Django admin: the organisation page's inline (its user picker without a query per row, the rule
that an organisation keeps an active Owner or Admin) and the audit of what staff change there."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.shortcuts import redirect
from django.utils.html import conditional_escape

from opsion.http import client_ip
from orgs import services
from orgs.admin_links import RelatedLinksByPermission, TitledByOrganisation, may_open
from orgs.models import MANAGING_ROLES, AuditAction, Membership, Organisation, Role, User

LEAVES_NO_MANAGER = (
    "This would leave the organisation without an active Owner or Admin, so no one in it could manage its Claude "
    "API key."
)


def audit_staff(request, org: Organisation, action: str, detail: str) -> None:
    """Record a change staff made in admin in the organisation's own audit log."""
    ip = client_ip(request)
    services.audit_staff_change(org=org, staff_user=request.user, action=action, detail=detail, ip=ip)


def joined(member: Membership) -> str:
    return f"{member.user.email} as {member.get_role_display()}"


class MemberSelect(AutocompleteSelect):
    """Admin's autocomplete for a membership's user, naming the row's current member from the user the inline's
    query already joined (`member`): Django's own widget looks each row's user up again, one query per member,
    which made a 5,000-member organisation's page take 5,000 queries. Any other value (a posted choice) is looked
    up as usual."""

    member: User | None = None

    def optgroups(self, name, value, attr=None):
        member = self.member
        if member is None or [str(v) for v in value if v not in self.choices.field.empty_values] != [str(member.pk)]:
            return super().optgroups(name, value, attr)
        label = self.choices.field.label_from_instance(member)
        return [(None, [self.create_option(name, member.pk, label, True, 0)], 0)]


class NameOnly(forms.Widget):
    """A read-only row's user by name, linked nowhere: admin's read-only display of a form field whose widget says it
    is read-only is the widget's own (helpers.AdminReadonlyField.contents), given the row's user."""

    read_only = True

    def render(self, name, value, attrs=None, renderer=None) -> str:
        return conditional_escape("" if value is None else str(value))


class MembershipFormSet(BaseInlineFormSet):
    # Set by MembershipInline.get_formset: the rows are read-only (their viewer may not change memberships) and their
    # viewer may not open a user's page, which Django's read-only display links each row's user to.
    users_unlinked = False

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        if self.users_unlinked and i < self.initial_form_count() and "user" in form.fields:
            form.fields["user"].widget = NameOnly()
        field = form.fields.get("user")  # absent when shown read-only
        widget = getattr(field, "widget", None)
        widget = getattr(widget, "widget", widget)  # inside admin's RelatedFieldWidgetWrapper
        if isinstance(widget, MemberSelect) and form.instance.user_id is not None:
            widget.member = form.instance.user  # joined by MembershipInline.get_queryset: no query
        return form

    def clean(self) -> None:
        """Refuse a save that would leave an organisation that had an active Owner or Admin with none: no one
        in it could then save, rotate or remove its Claude API key (a compromised one included)."""
        super().clean()
        if self.instance.pk is None:
            return
        self._refuse_members_not_listed()
        if any(self.errors):
            return
        # Only an active account counts: a deactivated Owner cannot sign in to manage anything.
        managers = self.instance.memberships.filter(role__in=MANAGING_ROLES, user__is_active=True)
        had_manager = managers.exists()
        # Rows this formset does not hold (staff who may only add or delete memberships see none) stay as they are.
        untouched = managers.exclude(pk__in=[f.instance.pk for f in self.initial_forms]).exists()
        kept = [f.cleaned_data for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        # A read-only row's cleaned data is its initial data, which names the user by primary key.
        managing = [
            getattr(row.get("user"), "pk", row.get("user")) for row in kept if row.get("role") in MANAGING_ROLES
        ]
        if had_manager and not untouched and not User.objects.filter(pk__in=managing, is_active=True).exists():
            raise ValidationError(
                f"{LEAVES_NO_MANAGER} Keep one, or make another active member Owner or Admin in the same save."
            )

    def _refuse_members_not_listed(self) -> None:
        # A large organisation's page lists only its Owners and Admins, so Django's own check for one user on two
        # rows cannot see a Member added again: the database's unique constraint would refuse the save (a 500).
        added = {
            form.cleaned_data["user"].pk: form
            for form in self.extra_forms
            if form.has_changed() and form.cleaned_data.get("user") and not form.cleaned_data.get("DELETE")
        }
        listed = [form.instance.pk for form in self.initial_forms]
        hidden = self.instance.memberships.exclude(pk__in=listed).filter(user__in=added).select_related("user")
        for member in hidden:
            added[member.user_id].add_error(
                "user",
                f"{member.user.email} is already a member of this organisation, as {member.get_role_display()} "
                "(not listed: for an organisation this large the page lists only its Owners and Admins). Change "
                "their role on the Memberships page.",
            )


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    # Each row posts four fields: past about 250 rows Django's cap on a form's fields (1,000) refuses the whole
    # change form, the plan (the BYOM gate) with it. A larger organisation lists only its Owners and Admins,
    # the rows that decide who manages the key; new members can still be added.
    all_rows_up_to = 200  # 800 fields of the 1,000, with room for the organisation's own and a few new rows
    autocomplete_fields = ["user"]
    # A deactivated Owner or Admin keeps the role but cannot sign in to manage anything: a save refused for leaving
    # no *active* one named no row, so each says so. Read from the user already joined: no query per row.
    readonly_fields = ["account"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "organisation")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)  # a class of its own, made for this request
        formset.users_unlinked = not self.has_change_permission(request, obj) and not may_open(
            request, self.admin_site, User
        )
        return formset

    @admin.display(description="Account")
    def account(self, obj: Membership) -> str:
        if obj is None or obj.pk is None or obj.user.is_active:
            return ""
        if obj.role in MANAGING_ROLES:
            return "Deactivated: cannot sign in to manage the organisation or its key"
        return "Deactivated"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["widget"] = MemberSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def _last_manager(member: Membership) -> bool:
    """Whether `member` is, as stored, its organisation's last active Owner or Admin (an inactive account cannot
    sign in to manage anything)."""
    if member.role not in MANAGING_ROLES or not member.user.is_active:
        return False
    others = Membership.objects.filter(organisation_id=member.organisation_id, role__in=MANAGING_ROLES)
    return not others.filter(user__is_active=True).exclude(pk=member.pk).exists()


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "organisation", "role"]

    def clean_role(self):
        role = self.cleaned_data["role"]
        if self.instance.pk and role not in MANAGING_ROLES and _last_manager(self.instance):
            raise ValidationError(f"{LEAVES_NO_MANAGER} Make another active member Owner or Admin first.")
        return role


class AccountActiveFilter(admin.BooleanFieldListFilter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = "account active"  # the column's words, not the user field's "is active"


@admin.register(Membership)
class MembershipAdmin(TitledByOrganisation, RelatedLinksByPermission, admin.ModelAdmin):
    """Every membership, searchable: where a large organisation's members are managed, since its own page lists only
    its Owners and Admins. Changes reach the organisation's audit log, as the inline's do; a membership's user and
    organisation are fixed once made (remove it and add another)."""

    list_of = "Memberships"

    form = MembershipForm
    # A deactivated Owner or Admin still holds the role but cannot sign in to manage the key: staff refused a save for
    # leaving no *active* Owner or Admin see which ones are not.
    list_display = ["user", "organisation", "role", "account_active"]
    list_filter = ["role", ("user__is_active", AccountActiveFilter)]
    search_fields = ["user__email", "organisation__slug", "organisation__name"]
    list_select_related = ["user", "organisation"]
    autocomplete_fields = ["user", "organisation"]

    class Media:
        css = {"all": ["css/admin/lists.css"]}  # a long e-mail address or name wraps: the list fits a laptop's screen

    def get_readonly_fields(self, request, obj=None):
        fixed = ["user", "organisation"] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    @admin.display(boolean=True, description="Account active", ordering="user__is_active")
    def account_active(self, obj: Membership) -> bool:
        return obj.user.is_active

    def get_actions(self, request):
        # Removals one at a time, each checked against leaving an organisation without an Owner or Admin.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            audit_staff(request, obj.organisation, AuditAction.MEMBER_ADDED, joined(obj))
        elif "role" in form.changed_data:
            detail = f"{obj.user.email}: {Role(form.initial['role']).label} → {obj.get_role_display()}"
            audit_staff(request, obj.organisation, AuditAction.ROLE_CHANGED, detail)

    def delete_view(self, request, object_id, extra_context=None):
        member = self.get_object(request, object_id)
        if member is not None and _last_manager(member):
            self.message_user(
                request, f"{LEAVES_NO_MANAGER} Make another active member Owner or Admin first.", messages.ERROR
            )
            return redirect("admin:orgs_membership_change", member.pk)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj) -> None:
        org, detail = obj.organisation, f"{obj.user.email} ({obj.get_role_display()})"
        super().delete_model(request, obj)
        audit_staff(request, org, AuditAction.MEMBER_REMOVED, detail)
