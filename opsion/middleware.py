import logging

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

from opsion.errors import error_json, method_not_allowed
from opsion.reporting import holds_secret, redact

log = logging.getLogger("opsion")

UNAVAILABLE = "Opsion is temporarily unavailable. Please try again shortly."
# "Shortly", as a client can read it (Retry-After): a hint, as no one here knows how long the database (or, for AI
# Insights' own 503, Anthropic) stays away.
UNAVAILABLE_RETRY_SECONDS = 30


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's, sparing with DEBUG on Django's technical page for a suspicious request (a 400: an unknown
    Host) as it spares its 404 and 500 pages: their inline style would be blocked. It sits above the middleware
    that refuses such requests, so their 400s carry the policy in production."""

    def process_response(self, request, response):
        if settings.DEBUG and response.status_code == 400:
            return response
        return super().process_response(request, response)


class WithholdHttpsRedirectMiddleware:
    """Directly above Django's SecurityMiddleware: with HTTPS on (SECURE_SSL_REDIRECT), a plain-HTTP request whose
    address holds a Claude API key or an API token (in its path or query string, percent-encoded or not) is not
    redirected to HTTPS, whose Location sent the address back whole (a copy in every proxy log, and in browser
    histories that keep redirects). RejectNulMiddleware refuses it instead, below every layer that adds headers, so
    the 400 carries them all, as over HTTPS; the API's too, whose query string HTTPS would have served as it came. A
    static file's address is served by WhiteNoise, above the refusal, over plain HTTP as over HTTPS (nothing of the
    address goes back).

    SecurityMiddleware reads only `request.is_secure()` to decide, and stays in MIDDLEWARE under its own name, which
    `check --deploy`'s HSTS and redirect checks look for: this request alone is told it is secure while it passes,
    and the HSTS header that then adds is dropped (browsers ignore one sent over HTTP; it would still be untrue)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.SECURE_SSL_REDIRECT or request.is_secure() or not holds_secret(request.get_full_path()):
            return self.get_response(request)
        setattr(request, HTTPS_REDIRECT_WITHHELD, True)
        request.is_secure = lambda: True
        try:
            response = self.get_response(request)
        finally:
            del request.is_secure
        response.headers.pop("Strict-Transport-Security", None)
        return response


HTTPS_REDIRECT_WITHHELD = "opsion_https_redirect_withheld"


class HeadWithoutBodyMiddleware:
    """A HEAD answer is headers only (RFC 9110, 9.3.2). Django leaves dropping the body to the server, and
    gunicorn sends whatever it is given: on a kept-alive connection the client then reads that body as the
    start of the next answer (Node's http client fails the HEAD itself). Outermost but for the request ID, so a
    body any other layer wrote (the API's error shape) goes too; Content-Length, set further in, still gives the
    GET's length."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method == "HEAD":
            if response.streaming:
                response.streaming_content = []  # the original's close() still runs with the response's
            else:
                response.content = b""
        return response


class NulInQueryString(SuspiciousOperation):
    """A NUL in the query string (RejectNulMiddleware), passed to the 400 page so the API's error names it."""


class SecretInAddress(SuspiciousOperation):
    """A Claude API key or an API token in a request's path, or in a console address's query string
    (RejectNulMiddleware)."""


class RejectNulMiddleware:
    """A NUL in the query string means nothing to any page, and PostgreSQL refuses it in a text
    comparison (a 500 from an admin filter or search): it is a 400, in the API's shape under /api/.

    It is the first to read the query string, so it also refuses one of more parameters than Django reads
    (TooManyFieldsSent). Left to Django, that was logged at ERROR with a traceback and, with DEBUG on, a plain-text
    500: the technical 400 page reads the query string again and raises inside Django's own error handling.

    A console address whose query string holds a Claude API key or an API token (anything log lines hide) is refused
    too, echoing nothing: nothing Opsion links to puts one there (a script or a hand-made form can: a key sent as a GET
    to the URL its form posts to), and left alone the address came back whole, in the sign-in redirect's `next` and
    its page, and in every redirect keeping the query string. The API never sends a query string back (an unknown
    parameter is named redacted), so its requests are left as they were.

    So is any address whose path holds one (a key pasted into the address bar, `/orgs/acme/sk-ant-…`), the API's
    included: the sign-in redirect's `next`, a missing slash's redirect, admin's own sign-in redirect and the DEBUG 404
    page sent it back. No address Opsion serves holds one (an organisation's slug may not take that form). Its log line
    names the path redacted, as every log line would write it. Over plain HTTP with HTTPS on, so is any address holding
    one, its query string included (the API's too), whose redirect to HTTPS WithholdHttpsRedirectMiddleware withheld.

    A form body of more fields than that, or larger than DATA_UPLOAD_MAX_MEMORY_SIZE (a huge paste), is refused the same
    way: read here just before the CSRF check would read it (a POST to a view it guards), or caught as it leaves a view
    that read it itself (the API's CSRF check of a session request; the API answers a body too large itself, 413).
    Left to Django, each was logged at ERROR with a traceback, and with DEBUG on answered with the technical page
    (for a paste, instead of the page saying it was too large)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Each refused here, at WARNING: scanners send these by the thousand; no traceback is worth logging.
        if holds_secret(request.path):
            log.warning("a key or token in the path of %s %s", request.method, redact(request.path))
            return _bad_request(request, SecretInAddress())
        if getattr(request, HTTPS_REDIRECT_WITHHELD, False):
            # Over plain HTTP, its redirect to HTTPS withheld (SecurityMiddleware, above): the query string holds one.
            log.warning("a key or token in the query string of %s %s over plain HTTP", request.method, request.path)
            return _bad_request(request, SecretInAddress())
        try:
            parameters = request.GET.lists()
        except TooManyFieldsSent as refused:
            log.warning("too many parameters in the query string of %s %s", request.method, request.path)
            return _bad_request(request, refused)
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in parameters):
            log.warning("NUL in the query string of %s %s", request.method, request.path)
            return _bad_request(request, NulInQueryString())
        if not request.path.startswith("/api/") and _parameters_hold_secret(request.GET.lists()):
            log.warning("a key or token in the query string of %s %s", request.method, request.path)
            return _bad_request(request, SecretInAddress())
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        # Exactly when CsrfViewMiddleware, below, would read the form: no body is parsed that it would not parse.
        if request.method != "POST" or getattr(view_func, "csrf_exempt", False):
            return None
        try:
            request.POST  # noqa: B018 (parsed here, once; the CSRF check and the view reuse it)
        except (TooManyFieldsSent, RequestDataTooBig) as refused:
            return _unreadable_form(request, refused)
        except UnreadablePostError:
            # The client went away mid-body: left to the CSRF check, which takes it for a form without a token (a
            # 403), as it did before this read; raised here it was a 500 logged at ERROR for each dropped post.
            return None
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, TooManyFieldsSent | RequestDataTooBig):
            return _unreadable_form(request, exception)
        return None


def _parameters_hold_secret(parameters) -> bool:
    return any(holds_secret(key) or any(holds_secret(value) for value in values) for key, values in parameters)


def _unreadable_form(request: HttpRequest, refused: TooManyFieldsSent | RequestDataTooBig) -> HttpResponse:
    if isinstance(refused, RequestDataTooBig):
        log.warning("request body too large: %s %s", request.method, request.path)
    else:
        log.warning("too many form fields in the body of %s %s", request.method, request.path)
    return _bad_request(request, refused)


def _bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    from opsion.views import bad_request  # opsion.views imports this module

    return bad_request(request, exception)


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
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        return database_unavailable(request)


def is_api_path(path: str) -> bool:
    """Whether an address answers in the API's JSON shape: everything under /api/, and "/api" itself, the API's
    root without its slash (a client's base URL cut short), which would otherwise get the console's HTML 404."""
    return path == "/api" or path.startswith("/api/")


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """The 503 for a lost database: JSON under /api/, a plain page elsewhere."""
    log.error("database unavailable while serving %s %s", request.method, request.path)
    if is_api_path(request.path):
        return error_json("service_unavailable", UNAVAILABLE, 503, retry_after=UNAVAILABLE_RETRY_SECONDS)
    response = HttpResponse(render_to_string("503.html", {"message": UNAVAILABLE}), status=503)
    response["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
    return response


class ApiHeadMiddleware:
    """HEAD on an API address answers as its GET does: HTTP requires HEAD wherever GET works (uptime monitors
    use it), and django-ninja answers only the methods an operation names. The body is dropped by
    HeadWithoutBodyMiddleware, as for Django's own views. A 405's `Allow` names HEAD beside GET, in a fixed order
    (ninja builds it from a set)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request.path):
            # A console page answers HEAD only if its view says so: its Allow is left as the view wrote it.
            return self.get_response(request)
        if request.method != "HEAD":
            return self._allow_head(self.get_response(request))
        request.method = "GET"
        try:
            # A path without GET answers 405, naming what it takes; the error shape then says HEAD was refused.
            return self._allow_head(self.get_response(request))
        finally:
            request.method = "HEAD"

    @staticmethod
    def _allow_head(response: HttpResponse) -> HttpResponse:
        if response.status_code == 405 and "Allow" in response:
            allowed = {method.strip().upper() for method in response["Allow"].split(",")} - {""}
            if "GET" in allowed:
                allowed.add("HEAD")
            response["Allow"] = ", ".join(sorted(allowed, key=_method_order))
        return response


METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]


def _method_order(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


API_ERRORS = {
    400: ("invalid_request", "The request is not valid."),
    403: ("forbidden", "You may not do that."),
    # Only an address no route matches reaches here: an organisation's own 404 is the API's ("Not found."), so a
    # typo in the path (a trailing slash) does not read as "not a member".
    404: ("not_found", "No API operation at this address: see /api/v1/openapi.json."),
    413: ("payload_too_large", "The request body is too large."),
    500: ("server_error", "Something went wrong on our side. It has been logged; please try again."),
}


# Said only of an address ending in a slash that names an operation without it: elsewhere it would send a client
# looking for a slash it did not send, or dropping one to meet the same 404 ("/api/v1/", a misspelt path).
NO_TRAILING_SLASH = "No API operation at this address (paths take no trailing slash): see /api/v1/openapi.json."


def _only_the_slash_is_wrong(path_info: str) -> bool:
    if not path_info.endswith("/"):
        return False
    try:
        resolve(path_info.rstrip("/"))
    except Resolver404:
        return False
    return True


class ApiErrorShapeMiddleware:
    """Every API error speaks the JSON error shape, even one Django or ninja answers before our code runs.

    That covers an unknown path under /api/ (404), a method the path does not take (ninja's plain-text 405),
    a request Django refuses to read (400) and an unexpected error (500, the technical page when DEBUG is on).
    Sits innermost, so the security and no-store headers still apply to the replacement.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not is_api_path(request.path)
            or response.status_code < 400
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        if response.status_code == 405:
            replacement = method_not_allowed(request.method, response.get("Allow", ""))
        else:
            code, message = API_ERRORS.get(response.status_code, ("error", response.reason_phrase))
            if response.status_code == 404 and _only_the_slash_is_wrong(request.path_info):
                message = NO_TRAILING_SLASH
            replacement = error_json(code, message, response.status_code)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                replacement[header] = response[header]
        return replacement
