"""Where signing in lands: the organisation the member last opened in the console (access.landing_organisation reads
it). Every console page that shows an organisation, in either app, remembers it here, by the same rule."""

from django.http import HttpRequest, HttpResponse

from orgs import services
from orgs.models import Membership


def opened(request: HttpRequest, membership: Membership, response: HttpResponse) -> HttpResponse:
    """`response`; a page shown by a GET (not a HEAD, a monitor's probe; not a 404) is where signing in lands next.
    The API never calls this, so no API request writes for it."""
    if request.method == "GET" and response.status_code == 200:
        services.organisation_opened(membership=membership)
    return response
