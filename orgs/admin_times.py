"""Times staff type into admin say their zone, as every time admin shows does ("12 Mar 2026, 08:43 UTC",
opsion/formats): a form's date and time boxes said nothing of one, and staff who think in their own zone would
enter a user's date joined hours off."""

from django.contrib import admin
from django.db import models
from django.utils import timezone


class TimesSayTheirZone(admin.options.BaseModelAdmin):
    """For every ModelAdmin and inline whose model has a time staff may edit: each such field's help text names
    the zone its value is shown and read in (TIME_ZONE, UTC)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and isinstance(db_field, models.DateTimeField):
            zone = f"In {timezone.get_current_timezone_name()}, as every time in admin."
            formfield.help_text = f"{formfield.help_text} {zone}" if formfield.help_text else zone
        return formfield
