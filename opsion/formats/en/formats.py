"""Dates and times wherever a page leaves the format to Django (admin's lists and detail pages, its History), written
as the customer's pages write them: "12 Mar 2026, 08:43 UTC". Django's en-gb "12 Mar 2026, 8:43 a.m." named no zone,
and staff comparing it with a customer's audit log had to know the server's. Only the display changes: sorting and
filtering work on the stored values, and forms still read what Django's own input formats accept."""

DATETIME_FORMAT = "j M Y, H:i e"  # e: the zone's name (TIME_ZONE, UTC)
SHORT_DATETIME_FORMAT = "d/m/Y H:i e"
