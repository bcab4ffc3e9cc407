"""The project's URLs plus one test-only view that fails while the organisation's key is in scope."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.debug import sensitive_variables

from insights import keys
from opsion.urls import urlpatterns as project_urlpatterns
from orgs.models import Organisation

DB_PASSWORD = "db-password-canary-8c41"


@sensitive_variables("api_key")
def _use_key(choice: keys.KeyChoice) -> None:
    api_key = choice.secret.reveal()
    raise RuntimeError(f"failed after reading a key of {len(api_key)} characters")


def boom(request: HttpRequest, slug: str) -> HttpResponse:
    org = Organisation.objects.get(slug=slug)
    choice = keys.resolve(org)  # the sealed key, in an undecorated frame as in the real views
    _use_key(choice)
    return HttpResponse("unreachable")


def boom_with_credentials(request: HttpRequest) -> HttpResponse:
    """Fails with a database URL and a driver's connection parameters in its local variables."""
    dsn = f"postgres://opsion:{DB_PASSWORD}@db.internal:5432/opsion"
    conn_params = {"host": "db.internal", "user": "opsion", "password": DB_PASSWORD}
    raise RuntimeError(f"could not connect with {len(dsn)}-character DSN and {len(conn_params)} parameters")


urlpatterns = [
    *project_urlpatterns,
    path("boom/<slug:slug>/", boom),
    path("boom-with-credentials/", boom_with_credentials),
]
