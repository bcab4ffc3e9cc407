from django import template
from django.contrib import admin
from django.contrib.admin.models import LogEntry

from orgs.admin_links import may_open

register = template.Library()


@register.simple_tag(takes_context=True)
def may_open_logged(context, entry: LogEntry) -> bool:
    """Whether the index's "Recent actions" may link `entry` to its object's page: Django links each one whatever the
    viewer may now open (staff who may only add memberships were sent to a 403 by the one they had just added)."""
    model = entry.content_type.model_class() if entry.content_type_id else None
    return model is not None and may_open(context["request"], admin.site, model)
