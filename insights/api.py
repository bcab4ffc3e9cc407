from typing import Annotated, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.responses import Response
from pydantic import WithJsonSchema

from insights import examples, services
from insights.http import add_ratelimit_headers, window_json
from insights.models import KeySource, Outcome, StopReason
from insights.ratelimit import window_words
from opsion.errors import JSON, InvalidRequest, NotFound, Refused, refused_json
from opsion.idempotency import names_idempotency_key
from orgs import access
from orgs.api import (
    AFTER,
    ANY,
    AUTH_ERRORS,
    BODY,
    BODY_ERRORS,
    CREATED_AT,
    CSRF_ERRORS,
    REQUEST_ERRORS,
    After,
    BodyIn,
    PageOut,
    always,
    errors,
    headers,
    page_body,
    refuse_unknown_parameters,
    responses,
)

RATE_LIMIT = ("RateLimit-Policy", "RateLimit")
REPLAYED = "Idempotent-Replayed"
RATE_LIMIT_HEADERS = (
    "Every answer to a member, refusals included, carries the organisation's rolling window as "
    '`RateLimit-Policy: "insights";q=<limit>;w=<window seconds>` and `RateLimit: "insights";r=<remaining>;'
    "t=<seconds until one frees up>`, except the refusal of a malformed request (body or parameters). "
)

router = Router(tags=["insights"])


class QueryIn(BodyIn):
    # Stated for clients built from the document; the service checks it, after trimming.
    query: str = Field(
        description=f"The question, 1 to {settings.INSIGHTS_MAX_QUERY_CHARS:,} characters once trimmed.",
        json_schema_extra={"minLength": 1, "maxLength": settings.INSIGHTS_MAX_QUERY_CHARS},
    )


class TokensOut(Schema):
    inputTokens: int | None
    outputTokens: int | None


# The rolling window's numbers, as getUsage and an answer's `rateLimit` give them (RateLimit's `q`, `r`, `t`).
LIMIT = Field(
    description="Queries allowed in the rolling window under the limit in force now: "
    f"{settings.INSIGHTS_PLATFORM_LIMIT} on Opsion's platform key, {settings.INSIGHTS_BYOM_LIMIT} on the "
    "organisation's own key."
)
REMAINING = Field(description="Queries that can still be asked in the window: `limit` minus `used`, never below 0.")
RESET_SECONDS = Field(
    description="Seconds until the window frees up a query: until the oldest counted query leaves it, or, while "
    "`used` is over `limit`, until enough have left for one more to fit; 0 when none counts. A `limit` of 0 lets "
    "nothing through: a whole window."
)


class RateLimitOut(Schema):
    limit: int = LIMIT
    remaining: int = REMAINING
    resetSeconds: int = RESET_SECONDS


STOP_REASON = (
    "How Claude ended `answer`: `complete`; `max_tokens`, cut short at the length limit (`usage.outputTokens` "
    "tokens, the server's ANTHROPIC_MAX_TOKENS), so `answer` is incomplete (it usually stops mid-sentence): ask "
    "a narrower question; or `refusal`, Claude declined to answer, so `answer` (possibly empty) is no answer to "
    "rely on. Either still counts against the limit (Anthropic wrote and billed it)."
)


class AnswerOut(Schema):
    id: int
    query: str
    answer: str
    model: str
    keySource: Literal[tuple(KeySource.values)] = Field(description="Whose Anthropic key answered.")
    stopReason: Literal[tuple(StopReason.values)] = Field(description=STOP_REASON)
    usage: TokensOut
    rateLimit: RateLimitOut


class UsageOut(Schema):
    limit: int = LIMIT
    windowSeconds: int = Field(description="The rolling window's length, in seconds.")
    used: int = Field(
        description="Queries counted in the window: those sent to Anthropic in the last `windowSeconds`. It can "
        "exceed `limit`: queries counted under a higher limit stay counted when the limit falls (the organisation's "
        "key removed, or its plan downgraded), and none can be asked until enough have left the window."
    )
    remaining: int = REMAINING
    resetSeconds: int = RESET_SECONDS
    keySource: Literal[tuple(KeySource.values)] = Field(description="Whose Anthropic key the next query uses.")


# The codes a failed query records: the refusal its reader was given, or `interrupted` when none could be (the process
# answering it died). Named here because `interrupted` is no operation's refusal: the document would not show it.
ERROR_CODE = (
    "Empty unless the outcome is `failed`; then why: the code of the refusal its request was answered with "
    f"(`{services.KeyInvalid.code}`, `{services.KeyUnreadable.code}`, `{services.UpstreamRateLimited.code}`, "
    f"`{services.UpstreamBilling.code}`, `{services.InsightsUnavailable.code}`, as askQuestion describes them), or "
    f"`{services.INTERRUPTED}` when the answer stopped with no refusal given (the server answering it stopped, or "
    "failed unexpectedly; `answer` keeps what had arrived)."
)


class HistoryItem(Schema):
    id: int
    query: str
    answer: str
    model: str
    keySource: Literal[tuple(KeySource.values)]
    outcome: Literal[tuple(Outcome.values)]
    errorCode: str = Field(description=ERROR_CODE)
    stopReason: Literal[tuple(StopReason.values)] | None = Field(
        description=STOP_REASON + " `null` while `pending`, and when `failed` (Claude did not end it: see `errorCode`)."
    )
    createdAt: str = CREATED_AT
    usage: TokensOut


class HistoryOut(PageOut):
    items: list[HistoryItem]


MAX_OFFSET = 100_000  # deep OFFSETs scan what they skip: offsets reach back this far, `after` further


class Page(Schema):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    after: After = AFTER


def _answer(body: dict, window) -> Response:
    # Built here rather than returned for ninja to render, to carry the RateLimit fields; in ninja's media type.
    return add_ratelimit_headers(Response(body, content_type=JSON), window)


def _tokens(row) -> dict:
    return {"inputTokens": row.input_tokens, "outputTokens": row.output_tokens}


# Read from the request by the view and checked by the service (one rule, with its own message and the RateLimit fields
# of any member's refusal): declared here for the document only.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Optional, and recommended for a client that retries: a key of your own for this question (a new "
    "UUID per question, say), 1 to 255 visible ASCII characters but the comma (the header sent twice arrives as its "
    "values joined by one, and is refused). A retry with the same key and question is given the "
    "answer to the first request, marked `Idempotent-Replayed: true`, without asking Claude or counting again; while "
    "the first is still being answered it is a 409 (its Retry-After says when to look again). A key is yours in "
    "this organisation for as long as its query is in your history; a failed query lets it go, so a retry after a "
    "failure asks again. The same key with another question, while it holds a query, is a 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": services.IDEMPOTENCY_KEY_MAX, "pattern": "^[!-+\\--~]+$"},
}


def _with_examples(extra: dict, by_status: dict) -> dict:
    """`extra`, an operation's `openapi_extra` for its answers, with examples of the JSON body of some of them: ninja
    merges them beside the schema it documents there."""
    for status, shown in by_status.items():
        extra["responses"].setdefault(status, {})["content"] = {"application/json": {"examples": shown}}
    return extra


@router.post(
    "/{slug}/insights/queries",
    operation_id="askQuestion",
    response=responses(AnswerOut, *BODY, 409, 422, 429),
    openapi_extra={
        "parameters": [IDEMPOTENCY_KEY],
        "requestBody": {"content": {"application/json": {"examples": examples.QUESTION_EXAMPLES}}},
        **_with_examples(
            # A retry's refusals (409, 422) and the limits' (429) are only ever a member's, given after the
            # organisation's lookup: they always carry its window. Every 409 says when to look again; a 429 from
            # Anthropic passes on its Retry-After only when it gave one. A malformed request's 400 and the database's
            # 503 come before the lookup.
            headers(
                s200=(*RATE_LIMIT, REPLAYED),
                s400=RATE_LIMIT,
                s409=always(*RATE_LIMIT, "Retry-After"),
                s422=always(*RATE_LIMIT),
                s429=(*always(*RATE_LIMIT), "Retry-After"),
                s503=(*RATE_LIMIT, "Retry-After"),
            ),
            {200: examples.ANSWER_EXAMPLES, 429: examples.TOO_MANY_EXAMPLES},
        ),
    },
    summary="Ask AI Insights a question",
    description=f"Any member. Counts against the organisation's rolling limit ({settings.INSIGHTS_PLATFORM_LIMIT} "
    f"queries per rolling {window_words(settings.INSIGHTS_WINDOW_SECONDS)} on Opsion's platform key, "
    f"{settings.INSIGHTS_BYOM_LIMIT} on its own key) once sent to Anthropic. "
    "`rate_limited` (429, Retry-After: when the next query fits), `claude_api_key_invalid` (400: Anthropic "
    "rejected the organisation's key), `claude_api_key_unreadable` (400), `upstream_rate_limited` (429: the "
    "organisation's Anthropic account), `upstream_billing` (400: the organisation's Anthropic account cannot pay: "
    "no credit, or a spend limit reached), `insights_unavailable` (503, Retry-After: "
    f"{services.UNAVAILABLE_RETRY_SECONDS}, a hint), `idempotency_key_in_use` (409, Retry-After: "
    f"{services.IN_USE_RETRY_SECONDS}: the first request with this `Idempotency-Key` is still being answered, or "
    "copies of it sent at once kept taking the key while failing), "
    "`idempotency_key_reused` (422: this `Idempotency-Key` was sent with another question), "
    f"`{services.QueryHoldsSecret.code}` (400: the question holds what looks like a Claude API key or an API token, "
    "which would be stored with it and sent to Anthropic: nothing is stored, sent or counted; take it out and ask "
    "again). It takes no query-string "
    "parameter, and does not read `X-Idempotency-Key`: either is an `invalid_request` (400) naming it. "
    + RATE_LIMIT_HEADERS
    + errors(AUTH_ERRORS, BODY_ERRORS, CSRF_ERRORS),
)
def post_query(request: HttpRequest, slug: str, payload: QueryIn):
    _refuse_misplaced_input(request)
    membership = access.membership_or_404(request.auth, slug)
    try:
        idempotency_key = request.headers.get("Idempotency-Key")
        pending = services.start(membership=membership, text=payload.query, idempotency_key=idempotency_key)
        pending.answer()
    except services.AlreadyAsked as asked:
        return _replay(request, asked.row, membership.organisation)
    except NotFound:
        raise  # removed as the query waited: a non-member's answer, without the organisation's window
    except Refused as refused:
        return add_ratelimit_headers(refused_json(refused), services.window_after(refused, membership.organisation))
    return _answer(_answer_body(pending.row, pending.window), pending.window)


def _refuse_misplaced_input(request: HttpRequest) -> None:
    """askQuestion takes nothing in its query string, and refuses what comes there by name rather than ignore it, as
    it refuses `X-Idempotency-Key` (another API's name for its header): an idempotency key sent either way would
    leave a client believing its retries safe while each one was asked and counted again."""
    if "X-Idempotency-Key" in request.headers:
        raise InvalidRequest("The header `X-Idempotency-Key` is not read: send the key as `Idempotency-Key`.")
    if names_idempotency_key(next(iter(request.GET), "")):
        why = "an idempotency key goes in the `Idempotency-Key` header, not the query string."
    else:
        why = "this operation takes no query-string parameter (the question goes in the JSON body)."
    refuse_unknown_parameters(request, why=why)


def _answer_body(row, window) -> dict:
    body = {
        "id": row.pk,
        "query": row.query,
        "answer": row.answer,
        "model": row.model,
        "keySource": row.key_source,
        "stopReason": row.ended,
        "usage": _tokens(row),
        "rateLimit": window_json(window),
    }
    return AnswerOut(**body).model_dump()


def _replay(request: HttpRequest, row, org) -> Response:
    """The answer a retry with the same Idempotency-Key is given: the first request's, with the window as it stands
    now; or, while the first is still being answered, a 409 saying where to read it."""
    window = services.usage(org).window
    if row.outcome == Outcome.PENDING:
        refused = services.IdempotencyKeyInUse(row, read_at=f"{request.path}/{row.pk}")
        return add_ratelimit_headers(refused_json(refused), window)
    response = _answer(_answer_body(row, window), window)
    response[REPLAYED] = "true"
    return response


@router.get(
    "/{slug}/insights/usage",
    operation_id="getUsage",
    response=responses(UsageOut, *ANY),
    openapi_extra=headers(s200=RATE_LIMIT),
    summary="The rolling window",
    description="Any member: the organisation's queries in the rolling window, under the limit in force now. "
    + RATE_LIMIT_HEADERS
    + errors(AUTH_ERRORS, REQUEST_ERRORS),
)
def get_usage(request: HttpRequest, slug: str):
    refuse_unknown_parameters(request)
    membership = access.membership_or_404(request.auth, slug)
    usage = services.usage(membership.organisation)
    w = usage.window
    body = {
        "limit": w.limit,
        "windowSeconds": w.window_seconds,
        "used": w.used,
        "remaining": w.remaining,
        "resetSeconds": w.reset_seconds,
        "keySource": usage.key_source,
    }
    return _answer(body, w)


@router.get(
    "/{slug}/insights/queries",
    operation_id="listQueries",
    response=responses(HistoryOut, *ANY),
    openapi_extra=headers(s200=RATE_LIMIT, s400=RATE_LIMIT),
    summary="Your recent queries",
    description="Your own queries in this organisation, newest first, `limit` (1–100) at a time from `offset` "
    f"(0–{MAX_OFFSET:,}), after the query `after` if given (page by `after`, the last `id` seen: offsets repeat what "
    "new queries push down); `hasMore` says whether the next page holds more. "
    + RATE_LIMIT_HEADERS
    + errors(
        AUTH_ERRORS,
        "`invalid_request` (400: `limit` or `offset` out of range, `after` not one of yours, a parameter this "
        "list does not take, or one given more than once)",
    ),
)
def list_queries(request: HttpRequest, slug: str, page: Query[Page]):
    refuse_unknown_parameters(request, Page)
    membership = access.membership_or_404(request.auth, slug)
    limit, offset = page.limit, page.offset
    try:
        history = services.recent_queries(membership=membership, limit=limit, offset=offset, after=page.after)
    except Refused as refused:  # `after` not one of theirs here: a member's refusal, with the window as any other
        return add_ratelimit_headers(refused_json(refused), services.usage(membership.organisation).window)
    window = services.usage(membership.organisation).window
    items = [_history_item(r) for r in history.items]
    body = page_body(items, has_more=history.has_more, limit=limit, offset=offset, after=page.after)
    return _answer(body, window)


QUERY_NOT_FOUND = "You have no query with this id in this organisation."

# Documented as the address takes it: digits only (`int:`), so a negative id is no address at all (the 404 of any
# address without an operation), and a document offering any integer promised an operation it does not reach. 0
# reaches it, and is no query's id: the operation's own 404, as for any id of no query of yours (declared for the
# document only, not validated by a `ge=1` whose 400 would tell 0 apart from every other id that is not yours).
QueryId = Annotated[
    int,
    WithJsonSchema(
        {"type": "integer", "minimum": 1, "description": "The query's `id`, as askQuestion and listQueries give it."}
    ),
]


@router.get(
    "/{slug}/insights/queries/{int:query_id}",  # not a number: no such address (404), as a trailing slash
    operation_id="getQuery",
    response=responses(HistoryItem, *ANY),
    openapi_extra=headers(s200=RATE_LIMIT, s404=RATE_LIMIT),
    summary="One of your queries",
    description="One of your own queries in this organisation, as the history lists it: how a query ended, for a "
    "client that stopped waiting for its answer (a timeout, a dropped connection). A query still being answered "
    "is `pending`. "
    + RATE_LIMIT_HEADERS
    + errors(
        AUTH_ERRORS, "`not_found` (404: no query of yours with this id here; the same for another's)", REQUEST_ERRORS
    ),
)
def get_query(request: HttpRequest, slug: str, query_id: QueryId):
    refuse_unknown_parameters(request)
    membership = access.membership_or_404(request.auth, slug)
    row = services.own_query(membership=membership, pk=query_id)
    window = services.usage(membership.organisation).window
    if row is None:
        return add_ratelimit_headers(refused_json(NotFound(QUERY_NOT_FOUND)), window)
    return _answer(_history_item(row), window)


def _history_item(r) -> dict:
    return {
        "id": r.pk,
        "query": r.query,
        "answer": r.answer,
        "model": r.model,
        "keySource": r.key_source,
        "outcome": r.outcome,
        "errorCode": r.error_code,
        "stopReason": r.ended,
        "createdAt": r.created_at.isoformat(),
        "usage": _tokens(r),
    }
