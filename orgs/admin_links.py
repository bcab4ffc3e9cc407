"""Admin's links to a related object (a membership's user, a query's organisation) only for staff who may open it.

Django shows a read-only foreign key as a link to the related object's page without asking whether the viewer may
open that page: support staff with only "Can change membership" or "Can view insight query" were sent to a 403. Such
a field is shown as plain text instead to whoever may not, as the user page's Organisations row is
(orgs.admin.UserAdmin.get_fieldsets), and so is an entry of the index's "Recent actions"
(orgs.templatetags.admin_links, templates/admin/index.html) and each object a deletion's confirmation lists."""

from django.contrib import admin
from django.contrib.admin.utils import NestedObjects, quote
from django.db import models, router
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from orgs.models import Organisation


def may_open(request, site: admin.AdminSite, model: type[models.Model]) -> bool:
    """Whether `site`'s page of `model` objects opens for the request's user, as its change view asks. True of a model
    admin has no page for: Django shows such an object unlinked anyway."""
    target = site._registry.get(model)
    return target is None or target.has_view_or_change_permission(request)


def link_if_allowed(request, model_admin: admin.ModelAdmin, model: type[models.Model], url: str, words: str):
    """`words` linked to `url`, a page of `model` objects, for staff who may open it; the same words otherwise (what
    admin tells staff after an action, as a field's display)."""
    if may_open(request, model_admin.admin_site, model):
        return format_html('<a href="{}">{}</a>', url, words)
    return words  # escaped where it is put into a message with format_html


def deleted_objects(objs, request, site: admin.AdminSite) -> tuple[list, dict, set, list]:
    """What Django's confirmation step lists (django.contrib.admin.utils.get_deleted_objects, which it follows line by
    line): the objects a deletion takes with it, each linked to its page only for staff who may open that page. Django
    links every one whose model has a page, and has no hook for the link alone: staff allowed to delete a user with
    their memberships and tokens, but not to look at either, were sent to a 403 by each."""
    try:
        first = objs[0]  # one row read, not the whole queryset, as Django's does
    except IndexError:
        return [], {}, set(), []
    collector = NestedObjects(using=router.db_for_write(first._meta.model), origin=objs)
    collector.collect(objs)
    perms_needed = set()
    opens = {}  # by model: one answer per model, not one per object listed

    def format_callback(obj):
        model, opts = obj.__class__, obj._meta
        no_edit_link = f"{capfirst(opts.verbose_name)}: {obj}"
        if not site.is_registered(model):
            return no_edit_link
        if not site.get_model_admin(model).has_delete_permission(request, obj):
            perms_needed.add(opts.verbose_name)
        if model not in opens:
            opens[model] = may_open(request, site, model)
        try:
            url = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_change", None, (quote(obj.pk),))
        except NoReverseMatch:
            return no_edit_link
        if not opens[model]:
            return no_edit_link
        return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)

    to_delete = collector.nested(format_callback)
    protected = [format_callback(obj) for obj in collector.protected]
    model_count = {model._meta.verbose_name_plural: len(objs) for model, objs in collector.model_objs.items()}
    return to_delete, model_count, perms_needed, protected


def unlinked(name: str, field: models.ForeignKey, empty: str):
    """A read-only display of the foreign key `name`: its object's name, linked nowhere."""

    @admin.display(description=field.verbose_name[:1].upper() + field.verbose_name[1:])
    def display(obj) -> str:
        related = getattr(obj, name)
        return empty if related is None else str(related)

    display.__name__ = name  # the row's CSS class (field-user) stays the one Django gives the field
    return display


class RelatedLinksByPermission(admin.options.BaseModelAdmin):
    """For every ModelAdmin: each read-only foreign key whose object the viewer may not open is shown unlinked, and so
    is each such object a deletion's confirmation lists.

    The unlinked displays are read-only fields of every page (a subclass's get_readonly_fields must extend its
    super()'s); the fieldsets show one in place of its field where that field is read-only."""

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self._unlinked_displays(request).values()]

    def get_deleted_objects(self, objs, request):
        return deleted_objects(objs, request, self.admin_site)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        displays = self._unlinked_displays(request)
        if not displays:
            return fieldsets
        # Read-only here: every field of an object's page its viewer may not change, otherwise those the page says.
        every_field = obj is not None and not self.has_change_permission(request, obj)
        readonly = self.get_readonly_fields(request, obj)
        swap = {name: shown for name, shown in displays.items() if every_field or name in readonly}
        unused = set(displays.values()) - set(swap.values())
        shown_fieldsets = []
        for name, options in fieldsets:
            # Where the fields are the form's and then the read-only ones (none declared), a display is listed
            # among the latter too: each is kept once, where its field is, and only in place of a read-only one.
            fields = []
            for field in options["fields"]:
                shown = swap.get(field, field) if isinstance(field, str) else field
                if shown not in fields and shown not in unused:
                    fields.append(shown)
            shown_fieldsets.append((name, {**options, "fields": fields}))
        return shown_fieldsets

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One display per foreign key, made once with the admin and the same object on every request: admin tells a
        # read-only display from a form field by identity, and one admin serves every thread of a worker. Made on
        # first use instead, two requests racing on a fresh worker each made their own, and a page whose fieldsets
        # held one while its read-only fields held the other failed (FieldError, a 500).
        self._unlinked = {
            field.name: (field.related_model, unlinked(field.name, field, self.get_empty_value_display()))
            for field in self.opts.get_fields()
            if (field.many_to_one or field.one_to_one) and field.concrete
        }

    def _unlinked_displays(self, request) -> dict:
        """The unlinked display of each foreign key of the model whose object the viewer may not open, by name."""
        return {
            name: shown
            for name, (model, shown) in self._unlinked.items()
            if not may_open(request, self.admin_site, model)
        }


class TitledByOrganisation:
    """A list reached filtered to one organisation (its page links to its memberships, audit events and queries) says
    which in its title: "Memberships of Acme Digital Assets", where Django's says "Select membership to change"."""

    list_of: str  # "Memberships", as the title begins

    def changelist_view(self, request, extra_context=None):
        org_id = request.GET.get("organisation__id__exact", "")
        org = Organisation.objects.filter(pk=org_id).first() if org_id.isdigit() else None
        if org is not None:
            extra_context = {**(extra_context or {}), "title": f"{self.list_of} of {org}"}
        return super().changelist_view(request, extra_context)
