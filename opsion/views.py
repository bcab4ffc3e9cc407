"""Error pages Django renders itself, before any of our views runs."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from opsion.errors import error_json
from opsion.middleware import API_ERRORS

TOO_LARGE = "What you sent is too large. Go back, check what you pasted, and try again."


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 page; for a body over DATA_UPLOAD_MAX_MEMORY_SIZE (say, a huge paste) it says so.

    The CSRF check reads the form before any view can, so this is the only place a console user
    can be told why such a request failed. Nothing of the request is echoed.
    """
    if request.path.startswith("/api/"):  # e.g. a Host not in ALLOWED_HOSTS: API clients get the JSON shape
        return error_json(*API_ERRORS[400], 400)
    if isinstance(exception, RequestDataTooBig):
        return HttpResponse(render_to_string("400.html", {"title": "Too large", "message": TOO_LARGE}), status=400)
    return HttpResponse(render_to_string("400.html"), status=400)
