"""The JSON API under /api/v1/: authentication and the error shape; routes live in each app's api.py."""

import json
import logging
import re
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, UnreadablePostError
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer, SessionAuth

from opsion import requestid
from opsion.errors import JSON, InvalidRequest, Refused, error_json, refused_json
from opsion.idempotency import names_idempotency_key
from opsion.reporting import redact
from orgs import services

log = logging.getLogger("opsion")


def bearer_credentials(request: HttpRequest) -> str | None:
    """What follows `Authorization: Bearer`, trimmed (perhaps empty), or None under another scheme or none. Read here
    rather than by ninja's HttpBearer, which with DEBUG on logs a header of any other scheme whole ("Token opsn_…"):
    a credential in a log line."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <personal API token>`; no CSRF, since a token is never sent implicitly."""

    def __call__(self, request: HttpRequest):
        token = bearer_credentials(request)
        return None if token is None else self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str):
        try:
            return services.api_token_authenticate(token)
        except services.TokenExpired as expired:
            # Refused as an unknown token is (the session may still authenticate the request); if nothing does, the
            # 401 carries these words, which tell the token's owner what to do.
            request.token_refused = expired.message
            return None


UNAUTHENTICATED = "Sign in, or send a valid personal API token as `Authorization: Bearer <token>`."


class SessionCookieAuth(SessionAuth):
    """The browser session, CSRF-checked on writes.

    Without a signed-in session there is nothing for a forged request to ride on, so a request carrying no
    valid credentials gets the 401 that says what to send, not ninja's "CSRF check failed".
    """

    def __call__(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


class NotJson(Exception):
    """The request body is not declared as JSON."""


class NotAnObject(ValueError):
    """The request body is JSON, but not an object."""


class JsonParser(Parser):
    """Request bodies are UTF-8 JSON, declared as such: a form post or text/plain body is refused with 415, not
    guessed at."""

    def parse_body(self, request: HttpRequest):
        media_type = request.content_type or ""
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise NotJson()
        # UTF-8 (a byte-order mark tolerated, as RFC 8259 allows), decoded here: json.loads would quietly take
        # bytes in UTF-16 or UTF-32 too. A UnicodeDecodeError is the 400 "must be UTF-8 encoded JSON".
        data = json.loads(request.body.decode("utf-8-sig"), object_pairs_hook=_once_each)
        if not isinstance(data, dict):  # every body is an object: "must be a JSON object", not "`query` is required"
            raise NotAnObject()
        return data

    def parse_querydict(self, data: MultiValueDict, list_fields: list[str], request: HttpRequest) -> dict:
        """An operation's query-string parameters, each given once: a repeated one is refused by name (InvalidRequest),
        before anything is validated or looked up. ninja would take its last value, so `?limit=1&limit=2` was
        answered with 2 items, the client told nothing; no parameter of ours is a list."""
        for name, values in data.lists():
            if len(values) > 1 and name not in list_fields:
                raise InvalidRequest(f"The parameter `{redact(name)}` is repeated: send each parameter once.")
        return super().parse_querydict(data, list_fields, request)


def _once_each(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose names are each given once: one named twice is refused by name (InvalidRequest), not read
    as its last value, as json.loads would. JSON leaves a repeated name's meaning open (RFC 8259 section 4), and a
    client that merged two bodies must not have the one it did not mean saved or asked."""
    seen = set()
    for name, _ in pairs:
        if name in seen:
            raise InvalidRequest(f"The field `{redact(name)}` is repeated: send each field once.")
        seen.add(name)
    return dict(pairs)


def _read_only(view):
    """The OpenAPI document and its docs page only answer GET and HEAD: any other method is the API's JSON 405
    (`method_not_allowed`), not Django's CSRF refusal (a bare 403 `forbidden`) nor, with a CSRF token, the
    document again. Exempt from the CSRF check, since nothing but a read reaches the view."""
    return csrf_exempt(require_safe(_json_as_every_answer(view)))


def _json_as_every_answer(view):
    """The document in the media type of every other JSON answer, `application/json; charset=utf-8`: ninja's own
    view says `application/json` alone. The docs page (HTML) is left as it is."""

    @wraps(view)
    def answer(request: HttpRequest, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if response.get("Content-Type") == "application/json":
            response["Content-Type"] = JSON
        return response

    return answer


REQUEST_ID_HEADER = {
    "description": "This request's ID (an error body's `requestId` is the same): quote it to Opsion support, who "
    "find the request's log lines by it.",
    "required": True,
    "schema": {"type": "string"},
}


class OpsionAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """ninja's document, with the `X-Request-ID` header on every response of every operation: RequestIdMiddleware
        puts it on every answer, whichever view, handler or middleware made it, so it is declared here once rather
        than by each operation's `openapi_extra`."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema["paths"].values():
            for operation in operations.values():
                # New dicts, never an update in place: a response or its headers may be an operation's own
                # `openapi_extra`, which ninja merges into the document by reference.
                operation["responses"] = {
                    status: response | {"headers": response.get("headers", {}) | {requestid.HEADER: REQUEST_ID_HEADER}}
                    for status, response in operation["responses"].items()
                }
        _drop_unused_components(schema)
        return schema

    def _get_urls(self):
        """ninja's routes without its root, `/api/v1/`: a view that only raises a 404 for GET, so a write there met
        Django's CSRF refusal (a 403 `forbidden`), and `/api/v1` was redirected to it (with DEBUG on, a write there was
        Django's RuntimeError, an HTML 500). Without it the base address is no route, the 404 `not_found` of any
        address without an operation."""
        return [pattern for pattern in super()._get_urls() if getattr(pattern, "name", None) != "api-root"]

    def get_root_path(self, path_params):
        """Where the operations' paths start (`/api/v1/`), read from the document's own route: the root's is gone."""
        return reverse(f"{self.urls_namespace}:openapi-json", kwargs=path_params).removesuffix(
            self.openapi_url.lstrip("/")
        )


def _drop_unused_components(schema: dict) -> None:
    """ninja declares a component for a `Query[...]` schema though it lists each of its fields as a parameter of its
    own: a generated client would make a type no operation uses. Components only other unused ones refer to go too."""
    components = schema.get("components", {}).get("schemas", {})
    while True:
        document = json.dumps(schema)
        unused = [name for name in components if f'"#/components/schemas/{name}"' not in document]
        if not unused:
            return
        for name in unused:
            del components[name]


api = OpsionAPI(
    title="Opsion API",
    version="1",
    description="Organisation settings and AI Insights. Authenticate with a personal API token "
    "(`Authorization: Bearer …`) or the browser session (CSRF token required on writes).",
    auth=[TokenAuth(), SessionCookieAuth()],
    urls_namespace="api",
    parser=JsonParser(),
    docs_decorator=_read_only,
)


@api.exception_handler(Refused)
def _refused(request, exc: Refused):
    return refused_json(exc)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    response = error_json("unauthenticated", getattr(request, "token_refused", UNAUTHENTICATED), 401)
    response["WWW-Authenticate"] = _bearer_challenge(request)
    return response


# RFC 6750 section 2.1's b64token: what a Bearer token may be made of (ours are `opsn_` and URL-safe base64).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _bearer_challenge(request) -> str:
    """RFC 6750 section 3.1: a Bearer token sent and refused (unknown, expired, its user deactivated) is an
    invalid_token; Bearer credentials that are no token at all (empty, only spaces, not b64token) a malformed request,
    invalid_request; a request with no Bearer credentials gets the challenge alone.

    The status stays 401 `unauthenticated` for a malformed one too, where the RFC says 400 (a SHOULD): to a client
    it is a missing credential like any other, and one error code for "send a valid token" is easier to act on."""
    token = bearer_credentials(request)
    if token is None:
        return "Bearer"
    if not _B64TOKEN.fullmatch(token):
        return 'Bearer error="invalid_request"'
    return 'Bearer error="invalid_token"'


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    return error_json("invalid_request", _describe(exc.errors), 400)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if exc.status_code == 403 and "CSRF" in str(exc):
        return error_json("csrf_failed", f"CSRF check failed: {_csrf_advice(request)}", 403)
    # ninja wraps every failure to parse the body in "Cannot parse request body"; say which one it was.
    if isinstance(exc.__cause__, NotJson):
        return error_json(
            "unsupported_media_type", "Send the request body as JSON (`Content-Type: application/json`).", 415
        )
    if isinstance(exc.__cause__, InvalidRequest):  # a field named twice
        return refused_json(exc.__cause__)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return error_json("invalid_request", "The request body must be UTF-8 encoded JSON.", 400)
    if exc.__cause__ is not None:  # malformed JSON, or nested too deeply to parse (RecursionError)
        return error_json("invalid_request", "The request body must be a JSON object.", 400)
    return error_json("invalid_request" if exc.status_code == 400 else "error", str(exc), exc.status_code)


def _csrf_advice(request: HttpRequest) -> str:
    """What a session write the CSRF check refused should change, from Django's reason (opsion.views.csrf_failure
    keeps it): a client that sent its X-CSRFToken must not be told to send it, when its Origin or Referer was why."""
    reason = getattr(request, "csrf_failure_reason", "")
    if reason.startswith("Origin checking failed"):
        return "the request's `Origin` is not this server's: the API answers no page of another origin."
    if reason.startswith("Referer checking failed"):
        return "a session write over HTTPS needs a `Referer` header naming this server."
    return "send the X-CSRFToken header with session requests."


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    limit_kb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024
    return error_json("payload_too_large", f"The request body is too large (at most {limit_kb} KB).", 413)


@api.exception_handler(UnreadablePostError)
def _unreadable(request, exc):
    # The client went away mid-body (a dropped connection, a killed upload): its mistake or its network's, one
    # WARNING line, not a 500 logged at ERROR with a traceback. Nothing was read, so nothing was asked or counted.
    log.warning("request body could not be read in full: %s %s", request.method, request.path)
    return error_json("invalid_request", "The request body could not be read in full.", 400)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return error_json("not_found", "Not found.", 404)


@api.exception_handler(Exception)
def _unexpected(request, exc):
    # ninja's default handler answers with a plain-text traceback when DEBUG is on. Re-raise instead, so an
    # unexpected error takes Django's path: a lost database becomes the JSON 503 of
    # DatabaseUnavailableMiddleware; anything else is logged by django.request, reported through
    # got_request_exception, and answered as a JSON 500 by ApiErrorShapeMiddleware.
    raise exc


def _describe(errors: list[dict]) -> str:
    """A short human sentence from pydantic's error list, without echoing submitted values. A field the body does not
    take is named first, whatever else is wrong, then the field required in its place if one is missing (`apikey`
    sent for `apiKey`) or else the next error: the missing field alone would not tell a client that sent a value
    under another name which name was wrong, and a field of the wrong type alone would leave the unknown one to a
    second refusal (an `idempotencyKey` in the body, say, never pointed to its header)."""
    if not errors:
        return "The request body is not valid."
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    missing = [e for e in errors if e.get("type") == "missing"]
    others = missing + [e for e in errors if e.get("type") not in ("extra_forbidden", "missing")]
    if unknown and others:
        return f"{_describe_one(unknown[0])} {_describe_one(others[0])}"
    return _describe_one(errors[0])


def _describe_one(error: dict) -> str:
    """One of pydantic's errors in words."""
    source, *names = error.get("loc", ()) or ("body",)  # ("body", "payload", "query") or ("query", "limit")
    if names[:1] == ["payload"]:  # ninja's name for the body itself; a field of that name in it stays
        names = names[1:]
    where = redact(".".join(str(p) for p in names))  # named as sent, unless it holds a key or token
    if error.get("type") == "json_invalid" or not names:
        return "The request body must be a JSON object."
    what = "parameter" if source == "query" else "field"
    if error.get("type") == "missing":
        return f"The {what} `{where}` is required."
    if error.get("type") == "extra_forbidden":
        return f"The {what} `{where}` is unknown: " + _unknown_field_hint(where)
    described = f"The {what} `{where}` is not valid: {error.get('msg', 'invalid value')}."
    if (where, error.get("type")) == ("offset", "less_than_equal"):  # the paged lists' cap
        described += " To page deeper, pass `after`: the id of the last item you have."
    return described


def _unknown_field_hint(name: str) -> str:
    """What to do instead of sending a field the body does not take."""
    if names_idempotency_key(name):
        return "an idempotency key goes in the `Idempotency-Key` header, not the body."
    return "send only the fields the OpenAPI document lists for this body (names are case-sensitive)."


api.add_router("/orgs", "orgs.api.router")  # not "/orgs/": listOrganisations is `/orgs`, no trailing slash
api.add_router("/orgs/", "insights.api.router")
