from collections import defaultdict
from functools import partial

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.http import HttpRequest
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import capfirst

from insights import ratelimit
from insights.models import InsightQuery
from insights.ratelimit import window_words
from opsion.http import atomic_for_post, client_ip
from orgs import selectors, services
from orgs.admin_key_state import KEY_STATES, ClaudeApiKeyFilter, KeyStateChangeList, key_state
from orgs.admin_links import RelatedLinksByPermission, TitledByOrganisation, link_if_allowed, may_open
from orgs.admin_memberships import MembershipInline, audit_staff, joined
from orgs.admin_outbox import OutboxMailAdmin
from orgs.admin_read_only import ReadOnlyAdmin, may_view
from orgs.admin_times import TimesSayTheirZone
from orgs.forms import NOT_AN_ADDRESS, AddressField
from orgs.models import (
    BYOM_PLANS,
    MANAGING_ROLES,
    ApiToken,
    AuditAction,
    AuditEvent,
    ClaudeApiKey,
    KeyStatus,
    Membership,
    Organisation,
    OutboxMail,
    Plan,
    Role,
    User,
)
from orgs.templatetags.orgs_tags import utc_time


def anthropics_answer(row: ClaudeApiKey) -> str:
    """What Anthropic last said of a stored key, and when, in the console's words. Only a change of answer is
    recorded (services.claude_api_key_mark), so an accepted key says since when it has been accepted (it may have
    been rejected before), not when it was last used."""
    if row.status == KeyStatus.VALID:
        return f"Accepted by Anthropic since {utc_time(row.status_changed_at)}."
    if row.status == KeyStatus.INVALID:
        return f"Rejected by Anthropic on {utc_time(row.status_changed_at)}."
    return f"None yet: Anthropic has neither accepted nor rejected it since it was saved on {utc_time(row.saved_at)}."


def encryption_state(org: Organisation, row: ClaudeApiKey) -> str:
    """Whether a configured FIELD_ENCRYPTION_KEYS entry opens a stored key: its signature is checked, nothing is
    decrypted (an unreadable one is logged for operators, as the console's Settings does)."""
    if selectors.claude_api_key_readable(org, row.secret):
        return "A configured FIELD_ENCRYPTION_KEYS entry opens it."
    return (
        "No configured FIELD_ENCRYPTION_KEYS entry opens it: its AI Insights queries are refused until an Owner or "
        "Admin saves the key again, or the encryption key it was sealed with is configured again."
    )


@admin.register(Organisation)
class OrganisationAdmin(RelatedLinksByPermission, admin.ModelAdmin):
    # The key model is deliberately not registered and not inlined: it never appears in admin,
    # so neither its value nor its ciphertext can reach a form or a change message.
    list_display = ["name", "slug", "plan", "claude_api_key_state", "member_count", "created_at"]
    list_filter = ["plan", ClaudeApiKeyFilter]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    actions = ["remove_claude_api_key"]

    # Its page's link to its AI Insights queries counts no further: a busy organisation has hundreds of thousands, and
    # the page is opened far more often than the list, which counts them exactly.
    query_count_cap = 1_000

    class Media:
        css = {"all": ["css/admin/lists.css"]}  # a long name or slug wraps: the list fits a laptop's screen

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None:
            context["related_lists"] = self._related_lists(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _related_lists(self, request, org: Organisation) -> list[tuple[str, str]]:
        """The organisation's audit events and AI Insights queries: each list filtered to it, with how many it holds,
        beside the page's History (admin's own log). Staff who may not open a list are not sent to it, nor is it
        counted for them. The audit count is exact (an index range, and an organisation's events are few)."""
        lists = []
        if may_open(request, self.admin_site, AuditEvent):
            events = AuditEvent.objects.filter(organisation=org).order_by().count()
            url = f"{reverse('admin:orgs_auditevent_changelist')}?organisation__id__exact={org.pk}"
            lists.append((url, f"Audit events ({events:,})"))
        if may_open(request, self.admin_site, InsightQuery):
            cap = self.query_count_cap
            queries = InsightQuery.objects.filter(organisation=org).order_by()[: cap + 1].count()
            url = f"{reverse('admin:insights_insightquery_changelist')}?organisation__id__exact={org.pk}"
            lists.append((url, f"AI Insights queries ({f'more than {cap:,}' if queries > cap else f'{queries:,}'})"))
        return lists

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if "plan" in form.base_fields:
            form.base_fields["plan"].help_text = (
                "Only Institutional and Custom include Bring Your Own Model. On any other plan AI Insights uses "
                f"Opsion's platform key and its limit of {settings.INSIGHTS_PLATFORM_LIMIT} queries per rolling "
                f"{window_words(settings.INSIGHTS_WINDOW_SECONDS)} applies at once; a stored key stays stored, "
                "unused, until the organisation removes it or the plan returns."
            )
        return form

    def get_readonly_fields(self, request, obj=None):
        # Staff who may not change organisations have no removal action: they are not sent to look for it.
        key = "claude_api_key_stored" if self.has_change_permission(request, obj) else "claude_api_key_stored_only"
        # What is known of a stored key (never the key, any part of it or its ciphertext), below whether one is.
        known = ["claude_api_key_answer", "claude_api_key_encryption"] if obj is not None and obj._key_set else []
        return [*super().get_readonly_fields(request, obj), key, *known]

    @staticmethod
    def _stored_key(obj: Organisation) -> ClaudeApiKey:
        """The change page's organisation's key row, read once for both of its lines."""
        if not hasattr(obj, "_key_row"):
            obj._key_row = selectors.stored_claude_api_key(obj)
        return obj._key_row

    @admin.display(description="Anthropic's answer")
    def claude_api_key_answer(self, obj) -> str:
        row = self._stored_key(obj)
        return "" if row is None else anthropics_answer(row)  # removed since the page's own query

    @admin.display(description="Encryption")
    def claude_api_key_encryption(self, obj) -> str:
        row = self._stored_key(obj)
        return "" if row is None else encryption_state(obj, row)

    @admin.display(description="Claude API key")
    def claude_api_key_stored_only(self, obj) -> str:
        # Whether one is stored, and nothing of the key itself: not even its ciphertext reaches admin.
        # The change page reads through get_queryset, which annotates `_key_set`. The add page's is a new, unsaved
        # organisation, not read so: admin showed "-" for the error reading it raised.
        return f"{KEY_STATES['none' if obj is None or obj.pk is None else key_state(obj)]}."

    @admin.display(description="Claude API key")
    def claude_api_key_stored(self, obj) -> str:
        state = self.claude_api_key_stored_only(obj)
        if obj is None or obj.pk is None or not obj._key_set:
            return state
        return f"{state} Remove it with the list's action “Remove the Claude API key of the selected organisations…”."

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:  # its log starts with the plan it began on (save_formset records its first members)
            audit_staff(request, obj, AuditAction.ORGANISATION_CREATED, f"on the {obj.get_plan_display()} plan")
        elif "plan" in form.changed_data:
            old = Plan(form.initial["plan"])
            after = services.plan_changed_as_staff(
                org=obj, staff_user=request.user, old_plan=old, ip=client_ip(request)
            )
            if (old in BYOM_PLANS) != obj.allows_byom:
                self._say_which_key_is_used_now(request, obj, after)

    def construct_change_message(self, request, form, formsets, add=False):
        """Django's message, which History renders from its JSON, with the plan's change saying from which plan to
        which: "Changed Plan." left staff to find the audit log for it. Only form fields are named, as in Django's,
        and the key is none of them."""
        message = super().construct_change_message(request, form, formsets, add)
        if add or "plan" not in form.changed_data:
            return message
        form_entry, *formsets_entries = message  # the form's own entry comes first, then the inline's rows
        fields = form_entry["changed"]["fields"]
        fields.remove(form.fields["plan"].label or "plan")  # as Django named it
        old, new = Plan(form.initial["plan"]).label, Plan(form.cleaned_data["plan"]).label
        plan = {"changed": {"fields": [f"plan from {old} to {new}"]}}  # History reads "Changed plan from … to …."
        return [*([form_entry] if fields else []), plan, *formsets_entries]

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, MembershipInline) and getattr(obj, "_members", 0) > inline.all_rows_up_to:
            kwargs["queryset"] = kwargs["queryset"].filter(role__in=MANAGING_ROLES)
            if request.method == "GET":
                self._say_only_managers_are_listed(request, obj)
        return kwargs

    def _say_only_managers_are_listed(self, request, org: Organisation) -> None:
        listing = f"{reverse('admin:orgs_membership_changelist')}?organisation__id__exact={org.pk}"
        # Staff who may only add or delete memberships see the inline but cannot open the list: named, not linked.
        memberships = link_if_allowed(request, self, Membership, listing, "all its memberships")
        messages.info(
            request,
            format_html(
                "{} has {} members: only its Owners and Admins are listed below (every row would not fit in one "
                "form). New members can still be added here; {} can be changed or removed on their own page.",
                org,
                f"{org._members:,}",
                memberships,
            ),
        )

    @staticmethod
    def _say_which_key_is_used_now(request, org: Organisation, after: ratelimit.Window | None) -> None:
        """A plan change across the BYOM line changes which key a stored one's organisation is answered with: off it,
        the key stays stored, unused, and the platform key's limit applies at once to the queries already counted (as
        when the key is removed, whose confirmation says so too); back on it, a key perhaps saved long ago is used
        again. Staff are told either way; an organisation without a key notices nothing. `after`: the window on the
        platform key plan_changed_as_staff counted for its e-mail, None when it took no key out of use."""
        if org.allows_byom:
            key = ClaudeApiKey.objects.filter(organisation=org).first()
            if key is not None:
                saved = date_format(timezone.localtime(key.saved_at), "j M Y")
                window = window_words(settings.INSIGHTS_WINDOW_SECONDS)
                limit = f"{settings.INSIGHTS_BYOM_LIMIT} queries per rolling {window}"
                in_use = f"The stored Claude API key of {org} (saved {saved}) is in use again"
                remove = "remove it with the list's action."
                # Unreadable first, as the organisation's e-mail says it first: a key Anthropic rejected that no
                # configured entry opens is refused before Anthropic could be asked again (and before any limit).
                if not selectors.claude_api_key_readable(org, key.secret):
                    said = (
                        f"{in_use}, but no configured FIELD_ENCRYPTION_KEYS entry opens it: its AI Insights queries "
                        "are refused until an Owner or Admin saves the key again, or the encryption key it was sealed "
                        f"with is configured again. If the organisation no longer wants it used, {remove}"
                    )
                elif key.status == KeyStatus.INVALID:
                    # Not promised to answer, as the organisation's e-mail does not promise it either.
                    said = (
                        f"{in_use}, limited to {limit}, but Anthropic rejected it when it was last used: its AI "
                        f"Insights queries will fail until the organisation saves a valid key. If it no longer wants "
                        f"it used, {remove}"
                    )
                else:
                    said = (
                        f"{in_use}: its AI Insights queries now go to that key, limited to {limit}. If the "
                        f"organisation no longer wants it used, {remove}"
                    )
                messages.warning(request, said)
            return
        if after is None:
            return
        now_on = (
            f"{org} now uses Opsion's platform key, limited to {after.limit} queries per rolling "
            f"{window_words(after.window_seconds)}."
        )
        kept = "Its Claude API key stays stored, unused, until it is removed or the plan returns."
        if locked_out := ratelimit.locked_out_words(after, who="It", counted_in="in the window"):
            messages.warning(request, f"{now_on} {locked_out}. {kept}")
        else:
            messages.info(request, f"{now_on} {kept}")

    def save_formset(self, request, form, formset, change) -> None:
        """Memberships changed in the inline reach the organisation's own audit log, as its key changes do."""
        super().save_formset(request, form, formset, change)
        if formset.model is not Membership:
            return
        org, removed, added = form.instance, AuditAction.MEMBER_REMOVED, AuditAction.MEMBER_ADDED
        for row in formset.initial_forms:
            member, was = row.instance, Role(row.initial["role"]).label
            if row in formset.deleted_forms:
                audit_staff(request, org, removed, f"{member.user.email} ({was})")
            elif not row.has_changed():  # unchanged, or shown read-only (staff who may only view memberships)
                continue
            elif "user" in row.changed_data:  # the row now names someone else
                audit_staff(request, org, removed, f"{User.objects.get(pk=row.initial['user']).email} ({was})")
                audit_staff(request, org, added, joined(member))
            elif "role" in row.changed_data:
                detail = f"{member.user.email}: {was} → {member.get_role_display()}"
                audit_staff(request, org, AuditAction.ROLE_CHANGED, detail)
        for member in formset.new_objects:
            audit_staff(request, org, added, joined(member))

    def get_deleted_objects(self, objs, request):
        """What deleting organisations (offboarding, erasure) takes with it, counted, not loaded: Django's own
        list fetches every row, and a busy organisation has hundreds of thousands of queries. Its audit events
        go with it, though they are never deleted one by one; other rows need their delete permission, as in
        Django's own check. The deletion itself deletes those rows in bulk, without loading them either."""
        orgs = list(objs)
        counts, per_org, perms_needed = {Organisation._meta.verbose_name_plural: len(orgs)}, defaultdict(list), set()
        for relation in Organisation._meta.related_objects:  # each cascades (memberships, key, queries, audit)
            model, field = relation.related_model, relation.field.name
            rows = (
                model._default_manager.filter(**{f"{field}__in": orgs}).order_by().values(field).annotate(n=Count("pk"))
            )
            for row in rows:
                per_org[row[field]].append(f"{capfirst(model._meta.verbose_name_plural)}: {row['n']:,}")
            if total := sum(row["n"] for row in rows):
                counts[model._meta.verbose_name_plural] = total
                model_admin = self.admin_site._registry.get(model)
                if model is not AuditEvent and model_admin and not model_admin.has_delete_permission(request):
                    perms_needed.add(model._meta.verbose_name)
        deleted = []
        for org in orgs:
            deleted += [f"{capfirst(Organisation._meta.verbose_name)}: {org}", per_org[org.pk]]
        return deleted, counts, perms_needed, []

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _members=Count("memberships", distinct=True),
                _key_set=Exists(ClaudeApiKey.objects.filter(organisation=OuterRef("pk"))),
                # Read for key_state's signature check only (never shown), in the list's own query: no query per row.
                _key_secret=Subquery(ClaudeApiKey.objects.filter(organisation=OuterRef("pk")).values("secret")[:1]),
            )
        )

    def get_changelist(self, request, **kwargs):
        return KeyStateChangeList  # the key column sorts by the state it shows

    # Whether a key is stored is not whether it is used: one left behind by a downgrade is stored but unused, and a
    # tick beside it read as Bring Your Own Model still on. Sorted by the state shown: the rank KeyStateChangeList
    # annotates when the column is sorted.
    @admin.display(description="Claude API key", ordering="_key_rank")
    def claude_api_key_state(self, obj) -> str:
        return KEY_STATES[key_state(obj)]

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj) -> int:
        return obj._members

    @admin.action(description="Remove the Claude API key of the selected organisations…", permissions=["change"])
    def remove_claude_api_key(self, request, queryset):
        if request.POST.get("confirm") != "yes":
            # First a confirmation step, as for deletions: it names each key and what removing it does now.
            return self._confirm_key_removal(request, queryset)
        removed = 0
        for org in queryset:
            if services.claude_api_key_remove_as_staff(org=org, staff_user=request.user, ip=client_ip(request)):
                # The organisation's History (admin's own log) shows it beside staff's plan changes.
                self.log_change(request, org, "Removed the Claude API key.")
                removed += 1
        if not removed:  # removed meanwhile (by the customer, or other staff) while the confirmation stood open
            self.message_user(
                request, "No key was removed: none of the selected organisations has one stored now.", messages.WARNING
            )
            return
        orgs = "organisation" if removed == 1 else "organisations"
        self.message_user(request, f"Removed the Claude API key of {removed} {orgs}.", messages.SUCCESS)

    def _confirm_key_removal(self, request, queryset) -> TemplateResponse:
        with_key = list(queryset.filter(claude_api_key__isnull=False).order_by("name"))
        # Every organisation's window read together: one query (two when some used more than the limit), not one or
        # two for each organisation selected.
        windows = ratelimit.windows_on_platform_key(with_key)
        rows = [
            {
                "org": org,
                "in_use": org.allows_byom,
                "locked_out": ratelimit.locked_out_words(windows[org.pk], who="It", counted_in="in the window"),
            }
            for org in with_key
        ]
        selected = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        one_key = len(rows) == 1  # the title, the question and its button each say "key" or "keys" by it
        context = {
            **self.admin_site.each_context(request),
            "title": "Remove the Claude API key?" if one_key else "Remove Claude API keys?",
            "one_key": one_key,
            "opts": self.model._meta,
            "rows": rows,
            "selected": selected,
            "without_key": len(selected) - len(rows),
            "platform_limit": settings.INSIGHTS_PLATFORM_LIMIT,
            "window": window_words(settings.INSIGHTS_WINDOW_SECONDS),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "preserved_filters": self.get_preserved_filters(request),
        }
        return TemplateResponse(request, "admin/orgs/organisation/remove_key_confirmation.html", context)


class _HoldsEveryPermission:
    """A staff member, not a superuser, holding every permission: what admin lets them do is what a permission can
    grant at all."""

    pk = None
    is_active = is_staff = is_authenticated = True
    is_superuser = False

    def has_perm(self, perm, obj=None) -> bool:
        return True

    def has_module_perms(self, app_label) -> bool:
        return True


def _permissions_admin_checks(site: admin.AdminSite):
    """The permissions admin honours: those of the models `site` has pages for, less those admin refuses whoever
    holds them (adding or changing audit events, queries and outbox e-mails, deleting audit events and outbox e-mails,
    adding or changing tokens, managing groups, which only superusers do). Any other (sessions, content types, the
    Claude API key, which is deliberately not in admin) grants nothing in admin or anywhere else in Opsion, and in a
    picker "Can view Claude API key" read as if staff could grant access to customers' keys, "Can delete audit event"
    as if they could erase an audit log."""
    request = HttpRequest()
    request.user = _HoldsEveryPermission()
    honoured = Q(pk__in=[])
    for model, model_admin in site._registry.items():
        actions = {
            "add": model_admin.has_add_permission(request),
            "change": model_admin.has_change_permission(request),
            "delete": model_admin.has_delete_permission(request),
            "view": model_admin.has_view_permission(request),
        }
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        codenames = [get_permission_codename(action, model._meta) for action, allowed in actions.items() if allowed]
        honoured |= Q(content_type=content_type, codename__in=codenames)
    return Permission.objects.filter(honoured).select_related("content_type")


def _left_without_manager(users) -> list[Organisation]:
    """The organisations whose every active Owner and Admin is among `users` (an inactive one cannot
    sign in to manage anything)."""
    managing = Membership.objects.filter(role__in=MANAGING_ROLES, user__is_active=True)
    orgs = Organisation.objects.filter(pk__in=managing.filter(user__in=users).values("organisation"))
    return list(orgs.exclude(pk__in=managing.exclude(user__in=users).values("organisation")))


class _PasswordRequired:
    """Django's admin password forms, less their choice to disable password-based authentication, which says the user
    may still sign in "using other backends, such as Single Sign-On or LDAP". Opsion has none: the user could neither
    sign in nor reset (no reset link goes to an account without a usable password). A password is required; a posted
    `usable_password` is ignored."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.pop("usable_password", None)
        self.fields["password1"].required = self.fields["password2"].required = True


class StaffSetPasswordForm(_PasswordRequired, AdminPasswordChangeForm):
    """Staff setting a user's password (whose e-mail says a password was set): a new one is required."""


class StaffAddUserForm(_PasswordRequired, AdminUserCreationForm):
    """Staff adding a user: its page shows no `usable_password`, and one posted is not obeyed."""


@admin.register(User)
class UserAdmin(RelatedLinksByPermission, TimesSayTheirZone, BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name", "organisations"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    privilege_fields = ("is_staff", "is_superuser", "groups", "user_permissions")
    add_form = StaffAddUserForm
    change_password_form = StaffSetPasswordForm
    change_user_password_template = "admin/orgs/user/change_password.html"

    class Media:
        css = {"all": ["css/admin/lists.css"]}  # a long e-mail address wraps: the list fits a laptop's screen

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self._may_open_memberships(request):
            return fieldsets
        # The same names without the link: it led staff who may not view memberships to a 403.
        unlinked = {"organisations": "organisations_unlinked"}
        return [(name, {**opts, "fields": [unlinked.get(f, f) for f in opts["fields"]]}) for name, opts in fieldsets]

    def _may_open_memberships(self, request) -> bool:
        memberships = self.admin_site._registry.get(Membership)
        return memberships is not None and memberships.has_view_or_change_permission(request)

    # Django's UserAdmin lets anyone with "change user" edit privileges, their own included: a
    # support account could make itself a superuser. Only superusers grant or take away staff status
    # and permissions, or change another staff account (its password included).
    def get_readonly_fields(self, request, obj=None):
        organisations = "organisations" if self._may_open_memberships(request) else "organisations_unlinked"
        readonly = (*super().get_readonly_fields(request, obj), organisations)
        if obj is not None and obj.pk == request.user.pk:
            # Nor their own e-mail address: a password reset link goes there, so someone holding a staff member's
            # session could have it mailed to them and set the password that outlives the session, past admin's
            # password change, which asks for the old one. Another superuser changes it.
            readonly = (*readonly, "email")
        return readonly if request.user.is_superuser else (*readonly, *self.privilege_fields)

    @staticmethod
    def _memberships_of(obj: User) -> str:
        """Where the user is a member, and as what: staff deactivating or resetting an account ask that first."""
        return ", ".join(f"{m.organisation} ({m.get_role_display()})" for m in Membership.objects.for_user(obj))

    @admin.display(description="Organisations")
    def organisations_unlinked(self, obj: User) -> str:
        return self._memberships_of(obj) or "None."

    @admin.display(description="Organisations")
    def organisations(self, obj: User) -> str:
        listed = self._memberships_of(obj)
        if not listed:
            return "None."
        changelist = f"{reverse('admin:orgs_membership_changelist')}?user__id__exact={obj.pk}"
        return format_html('{} <a href="{}">Their memberships</a>', listed, changelist)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "email":
            # Django's e-mail check lets `sk-ant-…@acme.test` through: the sign-in form would refuse it, and log lines
            # and audit details would blank it. Refused as sign-in refuses it: not typed back, nor in the page's title.
            refusal = f"{NOT_AN_ADDRESS} Enter the user's e-mail address."
            kwargs["form_class"] = partial(AddressField, holds_secret_message=refusal)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "user_permissions":
            kwargs["queryset"] = _permissions_admin_checks(self.admin_site)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_staff and obj != request.user and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_staff and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def user_change_password(self, request, id, form_url=""):
        """Django's form sets a password without asking for the old one. For one's own account that would let
        someone holding a staff member's session set the password that outlives it, past the guess limit on
        admin's own password change (orgs.account_views.admin_password_change), which asks for the old one: sent
        there."""
        user = self.get_object(request, unquote(id))  # as Django reads the address ("01" is user 1 too)
        if user is not None and user.pk == request.user.pk:
            return redirect("admin:password_change")
        if request.method == "GET" and user is not None and self.has_change_permission(request, user):
            self._say_tokens_outlive_the_password(request, user)
        # The new password and its e-mail's outbox row commit together: a password saved always has its e-mail.
        with atomic_for_post(request):
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and user is not None:
                # Django's view saves its own copy of the user: whether the password changed is read back.
                now = User.objects.filter(pk=user.pk).values_list("password", flat=True).first()
                if now is not None and now != user.password:
                    services.password_changed(user=user, how="staff")
        return response

    def _say_tokens_outlive_the_password(self, request, user: User) -> None:
        """A new password signs the user out of every session, but their API tokens keep working: staff resetting
        a compromised account's password are told, and where to delete them."""
        count = selectors.api_tokens_working(user)  # expired ones work no more
        if not count:
            return
        tokens, them = ("API token keeps", "it") if count == 1 else (f"{count} API tokens keep", "them")
        listed = f"{reverse('admin:orgs_apitoken_changelist')}?user__id__exact={user.pk}"
        delete = link_if_allowed(request, self, ApiToken, listed, f"delete {them}")
        messages.warning(
            request,
            format_html(
                "A new password signs {} out of every session, but their {} working. If the account was "
                "compromised, {} too.",
                user.email,
                tokens,
                delete,
            ),
        )

    def save_model(self, request, obj, form, change) -> None:
        """Django's; deactivating an organisation's last active Owner or Admin is allowed (staff may be
        locking out a compromised account) but staff are told what it leaves behind. A deactivation or
        reactivation reaches the audit log of each organisation the user belongs to."""
        toggled = change and "is_active" in form.changed_data
        deactivated = toggled and not obj.is_active
        stranded = _left_without_manager(User.objects.filter(pk=obj.pk)) if deactivated else []
        super().save_model(request, obj, form, change)
        if toggled:  # each organisation the user belongs to sees it in its audit log, as it would a deletion
            action = AuditAction.ACCOUNT_DEACTIVATED if deactivated else AuditAction.ACCOUNT_REACTIVATED
            for membership in Membership.objects.filter(user=obj).select_related("organisation"):
                detail = f"{obj.email} ({membership.get_role_display()})"
                audit_staff(request, membership.organisation, action, detail)
        for org in stranded:
            messages.warning(
                request,
                f"The user {obj.email} was the last active Owner or Admin of {org}: no one there can manage its Claude "
                "API key now. Make another member Owner or Admin, or reactivate this user.",
            )
        if deactivated:
            self._say_what_deactivation_ends(request, obj)

    def _say_what_deactivation_ends(self, request, user: User) -> None:
        """Deactivation refuses the user's sessions and tokens from the next request and deletes nothing: staff
        locking out a compromised account are told the tokens come back with a reactivation, and where to delete
        them."""
        count = selectors.api_tokens_working(user)
        if not count:
            messages.info(
                request, f"The user {user.email} can no longer sign in, and their sessions are refused from now on."
            )
            return
        # "their sessions and … are refused": the verb agrees with the sessions and the tokens together, one or many.
        tokens, them = ("API token", "its API token") if count == 1 else (f"{count} API tokens", "its API tokens")
        listed = f"{reverse('admin:orgs_apitoken_changelist')}?user__id__exact={user.pk}"
        delete = link_if_allowed(request, self, ApiToken, listed, f"delete {them}")
        messages.info(
            request,
            format_html(
                "The user {} can no longer sign in, and their sessions and {} are refused from now on. Nothing is "
                "deleted: reactivating the account brings them back. If it was compromised, set a new password and {} "
                "too.",
                user.email,
                tokens,
                delete,
            ),
        )

    def get_deleted_objects(self, objs, request):
        """Django's, and on the confirmation step a warning naming each organisation the deletion would leave
        without an Owner or Admin (no one there could manage its Claude API key). It does not refuse: an
        erasure request must still go through, or the organisation may be closing."""
        result = super().get_deleted_objects(objs, request)
        if request.POST.get("post") != "yes":
            for org in _left_without_manager(objs):
                messages.warning(
                    request,
                    f"Deleting this leaves {org} without an Owner or Admin: no one there could manage its Claude "
                    "API key. Make another member Owner or Admin first, unless the organisation is closing.",
                )
        return result

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, User.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        """Each organisation the users belonged to records their removal in its own audit log, as when
        staff remove a member on the organisation's page. One transaction: the list's bulk action runs outside
        Django's own, and a removal must not be recorded for users a failed deletion kept."""
        with transaction.atomic():
            for membership in Membership.objects.filter(user__in=queryset).select_related("user", "organisation"):
                detail = f"{membership.user.email} ({membership.get_role_display()}; user deleted)"
                audit_staff(request, membership.organisation, AuditAction.MEMBER_REMOVED, detail)
            super().delete_queryset(request, queryset)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(RelatedLinksByPermission, BaseGroupAdmin):
    """A group's permissions are privileges too: staff who may change a group they belong to could
    otherwise grant themselves anything (Django's own GroupAdmin allows it). Only superusers create,
    change or delete groups; others with "view group" may look."""

    def formfield_for_manytomany(self, db_field, request=None, **kwargs):
        if db_field.name == "permissions":
            kwargs["queryset"] = _permissions_admin_checks(self.admin_site)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_view_permission(self, request, obj=None) -> bool:
        return may_view(request, self.opts)  # "Can change group", never offered, does not stand for it

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


class TokenExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("never", "No expiry (made before tokens expired)")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.active(now)
        if self.value() == "expired":
            return queryset.expired(now)
        if self.value() == "never":
            return queryset.filter(expires_at__isnull=True)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(RelatedLinksByPermission, admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "expires_at", "last_used_at"]
    list_filter = [TokenExpiryFilter]
    # The prefix is how its owner names a token (Settings lists it): a leaked one is reported by it.
    search_fields = ["name", "user__email", "prefix"]
    search_help_text = "A token's name, its user's e-mail address, or its prefix as Settings lists it (opsn_…)."
    fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at"]
    readonly_fields = fields

    class Media:
        css = {"all": ["css/admin/lists.css"]}  # a long name or address wraps: expiry and last use stay on screen

    def has_view_permission(self, request, obj=None) -> bool:
        return may_view(request, self.opts)  # "Can change API token", never offered, does not stand for it

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created by their owner (console or create_api_token), shown once

    def has_change_permission(self, request, obj=None) -> bool:
        # Nothing of a token is staff's to change (moved to another user, whoever held it would act as them): its
        # page is for viewing and deleting. Its Save buttons said "changed successfully" and logged "No fields changed."
        return False

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, ApiToken.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        """Through the service the console's revocation uses: each user is mailed that Opsion staff deleted their
        tokens (as they are of a token created on their account), once the deletion commits."""
        services.api_tokens_revoke_as_staff(tokens=queryset, staff_user=request.user)

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # The hash is never shown, but a filter on it (?token_hash__startswith=) would read it out a character
        # at a time: refused, a 400.
        return not lookup.startswith("token_hash") and super().lookup_allowed(lookup, value, request)


# Where an audited change was made (AuditEvent.via, a plain string), in the words of the list's column and filter.
MADE_IN = {"console": "Console", "api": "API", "admin": "Admin (Opsion staff)"}


class MadeInFilter(admin.SimpleListFilter):
    title = "where it was made"  # Django prefixes "By": the field's own name read "By via"
    parameter_name = "via__exact"  # the field's own lookup, so links made for the stock filter still work

    def lookups(self, request, model_admin):
        return list(MADE_IN.items())

    def queryset(self, request, queryset):
        return queryset.filter(via=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(TitledByOrganisation, ReadOnlyAdmin):
    list_of = "Audit events"
    # What changed ("Institutional → Professional", whose membership) beside who changed it: without it staff opened
    # each row to answer a customer's "who changed what?".
    list_display = ["created_at", "organisation", "action", "detail", "actor_email", "ip_address", "made_in"]
    list_filter = ["action", MadeInFilter]
    # What changed too: "who removed member@globex.test?" is answered by the detail, which never holds a key
    # (services._audit blanks one; a search holding one is refused before it is run, opsion.middleware).
    search_fields = ["organisation__slug", "organisation__name", "actor_email", "detail"]
    search_help_text = (
        "An organisation's name or slug, who made the change (e-mail), or what changed (an address, a plan)."
    )
    # An event's own page, read-only: when it happened first (created_at is no form field, so Django's default left
    # it out), then who did what, and from where.
    fields = ["created_at", "organisation", "action", "detail", "actor", "actor_email", "ip_address", "made_in"]
    readonly_fields = fields
    # A count of the whole table beside each filtered list ("N total"): the log only grows, and counting a
    # million rows on PostgreSQL reads them all, on every page of every search.
    show_full_result_count = False
    # Newest first by the primary key's index: the model's order (created_at, across every organisation) has no
    # index of its own, so every page of the list sorted the whole table.
    ordering = ["-pk"]

    class Media:
        css = {"all": ["css/admin/audit_list.css"]}  # its long values wrap: the list fits a laptop's screen

    @admin.display(description="IP", ordering="ip")
    def ip_address(self, obj: AuditEvent) -> str | None:
        return obj.ip

    @admin.display(description="Where it was made", ordering="via")
    def made_in(self, obj: AuditEvent) -> str:
        return MADE_IN.get(obj.via, obj.via)


# The security e-mails' outbox, read-only (orgs.admin_outbox): support staff see whether an e-mail went.
admin.site.register(OutboxMail, OutboxMailAdmin)
