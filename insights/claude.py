"""The only module that talks to Anthropic (and the only one importing its SDK).

Every SDK exception is translated here into an `UpstreamError` carrying no SDK object: an SDK
exception's `.request.headers` holds the raw key, so it must never reach a log or a traceback.
"""

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Protocol

import anthropic
import httpx2
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from orgs.crypto import DecryptionFailed

log = logging.getLogger("opsion.insights")


def _keep_configured_levels() -> None:
    """ANTHROPIC_LOG (debug, info) makes the SDK lower its loggers' levels as it is imported, after LOGGING set them:
    its debug lines hold each request's options, the member's question and the system prompt included, and
    httpcore2's a header it rejects whole. The levels LOGGING gives them stand."""
    loggers = settings.LOGGING.get("loggers", {})
    for name in ("anthropic", "httpx2", "httpcore2"):
        if level := loggers.get(name, {}).get("level"):
            logging.getLogger(name).setLevel(level)


_keep_configured_levels()

SYSTEM_PROMPT = (
    "You are Opsion's AI Insights assistant for regulatory-compliance teams at crypto-asset and "
    "financial firms. Answer precisely and practically about MiCAR (Regulation (EU) 2023/1114) and "
    "related regimes (DORA, AMLR, the Transfer of Funds Regulation, MiFID II). Cite articles where "
    "you can, say when something depends on national implementation or on RTS/ITS still in "
    "development, and do not invent citations. Use short Markdown sections and lists."
)


class UpstreamError(Exception):
    """Anthropic did not answer. `kind` is auth, rate_limited, billing or unavailable; never holds SDK objects."""

    def __init__(self, kind: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"anthropic {kind} (status {status})")


@dataclass(frozen=True)
class Completion:
    model: str
    input_tokens: int | None
    output_tokens: int | None
    stop_reason: str  # an insights.models.StopReason value: see _stop_reason


# Anthropic's stop reasons that leave the answer unfinished, as Opsion records them. `model_context_window_exceeded`
# is the length limit too (the model's own, reached before ANTHROPIC_MAX_TOKENS). Any other (`end_turn`,
# `stop_sequence`) is a complete answer: tools, whose `tool_use` and `pause_turn` would stop one part-way, are
# never offered.
_UNFINISHED = {"max_tokens": "max_tokens", "model_context_window_exceeded": "max_tokens", "refusal": "refusal"}


def _stop_reason(value: str | None) -> str:
    if value not in _UNFINISHED and value not in ("end_turn", "stop_sequence"):
        # A reason newer than this code: the answer is shown as complete, and the operator told. (None never comes
        # here: stream_answer fails a reply that ended without one.)
        log.warning("anthropic ended an answer with an unknown stop_reason: %.40r", value)
    return _UNFINISHED.get(value, "complete")


# Past a day a retry time is no wait anyone could act on (a misbehaving proxy, not Anthropic's limits): unknown.
RETRY_AFTER_MAX_SECONDS = 24 * 60 * 60


def _retry_after(headers) -> int | None:
    try:
        value = headers.get("retry-after")
        seconds = max(1, math.ceil(float(value))) if value else None  # rounded up: never early
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf", "1e400" (no whole number of seconds)
        return None
    return seconds if seconds is None or seconds <= RETRY_AFTER_MAX_SECONDS else None


def _classify(exc: Exception) -> UpstreamError:
    """Map an SDK exception to an UpstreamError, keeping only the status and retry time."""
    if isinstance(exc, anthropic.APITimeoutError):
        return UpstreamError("unavailable", status=None)
    if isinstance(exc, anthropic.APIConnectionError):
        return UpstreamError("unavailable", status=None)
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return UpstreamError("auth", status=exc.status_code)
    if isinstance(exc, anthropic.RateLimitError):
        return UpstreamError("rate_limited", status=429, retry_after=_retry_after(exc.response.headers))
    if isinstance(exc, anthropic.APIStatusError):
        # An `error` event inside a 200 stream carries its type in the body.
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = error.get("type")
        if kind == "authentication_error" or kind == "permission_error":
            return UpstreamError("auth", status=exc.status_code)
        if kind == "rate_limit_error":
            return UpstreamError("rate_limited", status=exc.status_code)
        if _is_billing(exc.status_code, kind, error.get("message")):
            return UpstreamError("billing", status=exc.status_code)
        return UpstreamError("unavailable", status=exc.status_code)
    return UpstreamError("unavailable", status=None)


def _is_billing(status: int, kind: str | None, message) -> bool:
    """The account behind the key cannot pay: Anthropic's 402 `billing_error`, or the 400 it answers when the
    credit balance runs out or the account's own spend limit is reached (an `invalid_request_error` told apart
    only by its message). Any other 400 is about our own request."""
    if status == 402 or kind == "billing_error":
        return True
    if kind != "invalid_request_error" or not isinstance(message, str):
        return False
    return any(words in message.lower() for words in _BILLING_WORDS)


_BILLING_WORDS = ("credit balance", "api usage limits")


@cache
def _http_client() -> anthropic.DefaultHttpxClient:
    """One HTTP connection pool per process, shared by every call.

    Building a client loads the CA bundle and opens new TLS connections (tens of milliseconds in
    docs/benchmarks.md, more than all of Opsion's own work per query), so only the per-call Anthropic wrapper is
    created each time.
    The pool holds no credentials: the key travels in each request's headers. Nor does it keep
    cookies: a cookie set in reply to one organisation's call (by a CDN or balancer in front of the
    API) would otherwise ride along with every other organisation's. Nor does it follow redirects (the
    SDK's default would): Anthropic's API never redirects, and one (a hijacked name, a misconfigured
    proxy) would carry the customer's question, and on a same-origin hop the key, wherever it pointed.
    """
    return anthropic.DefaultHttpxClient(
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        follow_redirects=False,
        event_hooks={"response": [_cut_off_at_deadline]},
    )


class AnswerTooLong(Exception):
    """The reply was still arriving ANTHROPIC_TIMEOUT_SECONDS after it started."""


class _Deadline(httpx2.SyncByteStream):
    """A response body that stops at a deadline, checked at every read, whatever arrives: the SDK drops
    Anthropic's keep-alive `ping` events before our loop could see them, and each one restarts the
    per-read timeout, so a reply of pings alone would otherwise hold a worker thread for as long as they came."""

    def __init__(self, stream: httpx2.SyncByteStream, deadline: float) -> None:
        self._stream, self._deadline = stream, deadline

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._deadline:
                raise AnswerTooLong()
            yield chunk

    def close(self) -> None:
        self._stream.close()


class AnswerCutShort(Exception):
    """The reply ended without a stop reason: its connection closed before Anthropic finished it."""


def _cut_off_at_deadline(response: httpx2.Response) -> None:
    """Event hook of the shared client: each reply's body may take ANTHROPIC_TIMEOUT_SECONDS from its headers."""
    response.stream = _Deadline(response.stream, time.monotonic() + settings.ANTHROPIC_TIMEOUT_SECONDS)


class Secret(Protocol):
    """A key that is revealed only when a client is built: `orgs.crypto.Sealed` or `keys.PlatformKey`."""

    def reveal(self) -> str: ...


@sensitive_variables("api_key")
def _client(secret: Secret) -> anthropic.Anthropic:
    """A light client for one call over the shared pool. Raises orgs.crypto.DecryptionFailed.

    The plain key exists only in this (ordinary, so filterable) frame and inside the client object,
    whose repr does not show it; the generator below never holds it in a local variable, because
    Django's sensitive_variables cannot hide the locals of a generator's frame.
    """
    api_key = secret.reveal()
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=settings.ANTHROPIC_BASE_URL,
        timeout=settings.ANTHROPIC_TIMEOUT_SECONDS,
        max_retries=0,  # see settings: the SDK would obey an uncapped retry-after
        http_client=_http_client(),
    )


def _client_or_unavailable(secret: Secret) -> anthropic.Anthropic:
    """_client, or UpstreamError("unavailable") if it cannot be built. Raises DecryptionFailed as it is."""
    try:
        return _client(secret)
    except DecryptionFailed:
        raise
    except Exception as exc:  # e.g. a malformed ANTHROPIC_BASE_URL; the message names no key
        log.error("anthropic client could not be built: %s", type(exc).__name__)
    # Raised outside the except block, so the SDK's exception is not even its implicit context.
    raise UpstreamError("unavailable")


def stream_answer(*, secret: Secret, query: str) -> Iterator[str | Completion]:
    """Yield the answer's text as Anthropic writes it, then one Completion (which says whether Claude finished it).

    Raises UpstreamError, or DecryptionFailed before anything is sent. The timeout bounds each read
    and, checked between chunks, the whole answer: a reply that drips forever is cut off too.
    """
    client = _client_or_unavailable(secret)
    failure: UpstreamError | None = None
    deadline = time.monotonic() + settings.ANTHROPIC_TIMEOUT_SECONDS
    try:
        with client.messages.stream(
            model=settings.ANTHROPIC_MODEL,
            max_tokens=settings.ANTHROPIC_MAX_TOKENS,
            system=SYSTEM_PROMPT,
            messages=[{"role": "user", "content": query}],
        ) as stream:
            for text in stream.text_stream:
                yield text
                if time.monotonic() > deadline:
                    failure = UpstreamError("unavailable")
                    break
            else:
                final = stream.get_final_message()
                if final.stop_reason is None:
                    # Anthropic sends the stop reason (`message_delta`) just before `message_stop`: a reply without
                    # one lost its connection part-way, and a body that ends with its connection ends cleanly.
                    # What came is the first words of an answer, not an answer.
                    log.warning("anthropic's reply ended before its stop_reason: the connection closed part-way")
                    raise AnswerCutShort()
                yield Completion(
                    model=final.model,
                    input_tokens=final.usage.input_tokens,
                    output_tokens=final.usage.output_tokens,
                    stop_reason=_stop_reason(final.stop_reason),
                )
    except anthropic.AnthropicError as exc:
        failure = _classify(exc)
    except (AnswerTooLong, AnswerCutShort):
        failure = UpstreamError("unavailable")
    except Exception as exc:
        # Anything else (a mistyped ANTHROPIC_BASE_URL, a reply the SDK cannot parse) is still "Anthropic did
        # not answer" to the user. Its traceback runs through SDK frames holding the key in local variables, so
        # it goes no further: the operator gets its type and its message with the key cut out.
        log.error("anthropic call failed unexpectedly: %s: %s", type(exc).__name__, _redact(str(exc), client))
        failure = UpstreamError("unavailable")
    if failure is not None:
        # Raised outside the except block so the SDK exception is not even the implicit context.
        # Logged once, by the service, which knows the organisation and whose key it was.
        raise failure


@sensitive_variables("client")
def _redact(text: str, client: anthropic.Anthropic) -> str:
    return text.replace(client.api_key, "[key]") if client.api_key else text
