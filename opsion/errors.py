"""The one error shape both surfaces speak, and the responses that carry it."""

from django.http import JsonResponse

from opsion.requestid import current as current_request_id


class Refused(Exception):
    """A request the product refuses on purpose. `message` is always safe to show a user."""

    code = "refused"
    status = 400
    default_message = ""

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        super().__init__(self.message)


class NotFound(Refused):
    code, status, default_message = "not_found", 404, "Not found."


class InvalidRequest(Refused):
    code, status = "invalid_request", 400


# Every API answer's media type, as django-ninja gives the answers it renders itself: errors and the answers built by
# hand (to carry the RateLimit fields) say it the same way.
JSON = "application/json; charset=utf-8"


def error_json(
    code: str, message: str, status: int, *, retry_after: int | None = None, extra: dict | None = None
) -> JsonResponse:
    # The request's ID beside the error, as Anthropic's own API puts it: the reference to quote to support.
    body = {"error": {"code": code, "message": message}, "requestId": current_request_id(), **(extra or {})}
    response = JsonResponse(body, status=status, content_type=JSON)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def method_not_allowed(method: str, allowed: str) -> JsonResponse:
    """The API's 405 (and /healthz's): the method named, the ones the address takes said and sent as Allow."""
    response = error_json("method_not_allowed", f"{method} is not allowed here. Use {allowed}.", 405)
    response["Allow"] = allowed
    return response


def refused_json(refused: Refused, *, extra: dict | None = None) -> JsonResponse:
    return error_json(refused.code, refused.message, refused.status, retry_after=refused.retry_after, extra=extra)
