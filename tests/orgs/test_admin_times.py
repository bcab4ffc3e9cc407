"""Times staff type into admin: each field says its zone, as every time admin shows does ("08:43 UTC")."""

import re

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.utils import timezone

from insights.models import InsightQuery, KeySource
from orgs import services
from orgs.models import AuditAction, AuditEvent, OutboxMail
from tests.clients import console

TIME_FIELDS = (forms.DateTimeField, forms.SplitDateTimeField)


def help_of(page: str, field: str) -> str:
    """The help text under a field's row on a rendered admin form, as a reader sees it."""
    row = re.search(rf'<div class="form-row field-{field}">(.*?)(?=<div class="form-row|</fieldset>)', page, re.S)
    assert row, f"no {field} on the page"
    helps = re.findall(r'<div class="help"[^>]*>(.*?)</div>', row.group(1), re.S)
    return " ".join(" ".join(re.sub(r"<[^>]+>", "", text).split()) for text in helps)


def test_a_users_last_login_and_date_joined_say_they_are_utc(world):
    # The list and every read-only time said "08:43 UTC"; the two times staff could edit said nothing of a zone.
    world.acme_admin.last_login = timezone.now().replace(2026, 3, 12, 8, 43, 0, 0)
    world.acme_admin.save(update_fields=["last_login"])

    page = console(world.staff).get(f"/admin/orgs/user/{world.acme_admin.pk}/change/").content.decode()

    assert 'name="last_login_1" value="08:43:00"' in page  # shown in UTC, so the help text is true
    assert "UTC" in help_of(page, "last_login") and "UTC" in help_of(page, "date_joined")


def test_a_time_typed_into_a_users_page_is_stored_as_the_utc_time_it_says(world):
    data = {"email": world.acme_admin.email, "name": "", "is_active": "on"}
    data |= {"date_joined_0": "2026-03-12", "date_joined_1": "08:43:00", "last_login_0": "", "last_login_1": ""}

    response = console(world.staff).post(f"/admin/orgs/user/{world.acme_admin.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:2000]
    world.acme_admin.refresh_from_db()
    assert world.acme_admin.date_joined == timezone.now().replace(2026, 3, 12, 8, 43, 0, 0)
    assert world.acme_admin.date_joined.utcoffset().total_seconds() == 0


def test_every_time_field_on_any_admin_form_says_its_zone(world):
    # Any admin page that lets staff type a time, now or added later, inlines included: each such field says UTC.
    Group.objects.create(name="Support")
    services.api_token_create(user=world.acme_admin, name="pipeline")
    AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_SAVED)
    InsightQuery.objects.create(
        organisation=world.acme, user=world.acme_admin, query="q", key_source=KeySource.PLATFORM
    )
    OutboxMail.objects.create(to="admin@acme.test", subject="s", body="b", what="w", due_at=timezone.now())
    request = RequestFactory().get("/admin/")
    request.user = world.staff  # a superuser: every field they may edit is on the form

    checked, silent = set(), []
    for model, model_admin in admin.site._registry.items():
        obj = model_admin.get_queryset(request).first()  # as admin reads it, annotations included
        assert obj is not None, f"no {model.__name__} to open"
        forms_shown = []
        for opened in (obj, None) if model_admin.has_add_permission(request) else (obj,):  # change and add pages
            forms_shown.append(model_admin.get_form(request, opened, change=opened is not None))
            forms_shown += [formset.form for formset, _ in model_admin.get_formsets_with_inlines(request, opened)]
        for form_class in forms_shown:
            for name, field in form_class.base_fields.items():
                if isinstance(field, TIME_FIELDS):
                    checked.add(f"{form_class._meta.model.__name__}.{name}")
                    if "UTC" not in (field.help_text or ""):
                        silent.append(f"{form_class._meta.model.__name__}.{name}")

    assert {"User.last_login", "User.date_joined"} <= checked  # the walk reached the forms staff type times into
    assert not silent, f"time fields that do not say their zone: {silent}"
