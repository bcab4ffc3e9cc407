"""The request ID: the reference a user quotes to support, tying what they saw to the server's log lines.

Each request gets one before anything else runs (RequestIdMiddleware, first in MIDDLEWARE): on its response as
`X-Request-ID`, on every log record made while serving it (opsion.reporting's record factory reads `current()`),
in the API's error body (`requestId`) and on the console's error pages ("Reference: …", `{% request_reference %}`).

It is either ours (a uuid4, 32 hex digits) or, behind a trusted proxy (BEHIND_PROXY=1), the proxy's own
`X-Request-ID`, so one ID follows the request through the proxy's logs and ours. An incoming value is kept only when
it is 1-64 letters, digits, `.`, `-` or `_`, and holds nothing redaction would hide (an Anthropic key's form, the
platform key): it is written into every log line and shown on pages, where a visitor's newline, markup or key must
never land. Anything else, or any value at all without a trusted proxy (a client could choose one to tie its
requests together, or to collide with another user's), is replaced by one of ours.
"""

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django import template
from django.http import FileResponse, HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.log import log_response

from opsion.http import trusts_proxy_headers
from opsion.reporting import holds_secret

HEADER = "X-Request-ID"
SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
NONE = "-"  # in a log line made outside any request (start-up, a command)

_current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current() -> str:
    """The ID of the request being served on this thread, or "" outside one."""
    return _current.get()


@contextmanager
def bound(request_id: str) -> Iterator[None]:
    """`request_id` is this thread's for the block: work done for a request after its view (a streamed body read, the
    response closed, an e-mail sent on the mail thread) logs under the request's ID."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def choose(request: HttpRequest) -> str:
    """A trusted proxy's ID when it is safe to log and show, otherwise a new one."""
    if trusts_proxy_headers():
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        if SAFE.fullmatch(incoming) and not holds_secret(incoming):
            return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE, so every other layer's log lines and answers (a refusal, a redirect, a 500) have it.

    The ID is set for the request's thread while the request is served, and again while a streamed body is read
    and while the response is closed: the server does both after this returns (an insights answer is asked and
    logged as its stream is read, or as it closes when the reader left), and a worker thread's next request must
    not inherit it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = choose(request)
        # Error reports (the technical 500 page with DEBUG on, an error e-mail) list the request's headers: they
        # show this ID, and not a value it replaced.
        request.META["HTTP_X_REQUEST_ID"] = request_id
        with bound(request_id):
            response = self.get_response(request)
            if response.status_code >= 400:
                # Django logs an error answer ("Not Found: /x") once the middleware has returned, where the ID is
                # no longer set; logged here, a moment earlier, the record carries it (and Django skips it).
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        response[HEADER] = request_id
        if response.streaming and not isinstance(response, FileResponse) and not response.is_async:
            # A file (static, whitenoise) logs nothing as it is read; re-wrapping it would lose the server's sendfile.
            response.streaming_content = _with_id(request_id, response.streaming_content)
        close = response.close

        def close_with_id() -> None:
            with bound(request_id):
                close()

        response.close = close_with_id
        return response


def _with_id(request_id: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`chunks`, each made with the request's ID set, and unset again before it is handed on."""
    chunks = iter(chunks)
    while True:
        with bound(request_id):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk


register = template.Library()  # {% load request_id %}: TEMPLATES' OPTIONS name this module


@register.simple_tag
def request_reference() -> str:
    """ "Reference: <id>", for an error page or message, whoever renders it (Django's 500 page has no request)."""
    request_id = current()
    return format_html('<p class="reference">Reference: <code>{}</code></p>', request_id) if request_id else ""
