import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from opsion.errors import error_json

log = logging.getLogger("opsion")

UNAVAILABLE = "Opsion is temporarily unavailable. Please try again shortly."


class NoStoreMiddleware:
    """Pages and API answers about an organisation must never sit in a shared or browser cache."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/static/"):
            response.setdefault("Cache-Control", "no-store")
        return response


class DatabaseUnavailableMiddleware:
    """A lost database is a 503 with a plain message, never a traceback."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError) or not isinstance(exception, DatabaseError):
            return None
        log.error("database unavailable while serving %s %s", request.method, request.path)
        if request.path.startswith("/api/"):
            return error_json("service_unavailable", UNAVAILABLE, 503)
        return HttpResponse(render_to_string("503.html", {"message": UNAVAILABLE}), status=503)
