"""The JSON API under /api/v1/: authentication and the error shape; routes live in each app's api.py."""

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, SessionAuth

from opsion.errors import Refused, error_json, refused_json
from orgs import services


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <personal API token>`; no CSRF, since a token is never sent implicitly."""

    def authenticate(self, request: HttpRequest, token: str):
        return services.api_token_authenticate(token)


api = NinjaAPI(
    title="Opsion API",
    version="1",
    description="Organisation settings and AI Insights. Authenticate with a personal API token "
    "(`Authorization: Bearer …`) or the browser session (CSRF token required on writes).",
    auth=[TokenAuth(), SessionAuth()],
    urls_namespace="api",
)


@api.exception_handler(Refused)
def _refused(request, exc: Refused):
    return refused_json(exc)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    response = error_json(
        "unauthenticated",
        "Sign in, or send a valid personal API token as `Authorization: Bearer <token>`.",
        401,
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    return error_json("invalid_request", _describe(exc.errors), 400)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if exc.status_code == 403 and "CSRF" in str(exc):
        return error_json("csrf_failed", "CSRF check failed: send the X-CSRFToken header with session requests.", 403)
    return error_json("invalid_request" if exc.status_code == 400 else "error", str(exc), exc.status_code)


def _describe(errors: list[dict]) -> str:
    """A short human sentence from pydantic's error list, without echoing submitted values."""
    if not errors:
        return "The request body is not valid."
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "payload"))
    if first.get("type") == "json_invalid" or not where:
        return "The request body must be a JSON object."
    if first.get("type") == "missing":
        return f"The field `{where}` is required."
    return f"The field `{where}` is not valid: {first.get('msg', 'invalid value')}."


api.add_router("/orgs/", "orgs.api.router")
api.add_router("/orgs/", "insights.api.router")
