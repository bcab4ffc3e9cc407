from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import ConfigDict

from opsion.errors import InvalidRequest
from opsion.http import client_ip
from opsion.middleware import UNAVAILABLE_RETRY_SECONDS
from opsion.reporting import redact
from orgs import access, selectors, services, validation
from orgs.models import AuditAction, KeyStatus, Membership, Plan, Role

router = Router(tags=["settings"])

# Refusals shared by routes, in each operation's description: the `code` is stable, the `message` is for people.
UNAUTHENTICATED_ERRORS = "`unauthenticated` (401)"
AUTH_ERRORS = UNAUTHENTICATED_ERRORS + ", `not_found` (404: not a member, or no such organisation)"
# Where an operation has no parameter or body of its own to refuse: the 400 every request can meet (see ANY).
REQUEST_ERRORS = (
    "`invalid_request` (400: a query-string parameter the operation does not take, a NUL in the query string, more "
    "than 1,000 parameters in it, or a `Host` this server does not answer to)"
)
BODY_ERRORS = (
    "`invalid_request` (400: a body field missing, not valid, given twice, or one the body does not take, or a "
    "query-string parameter the operation does not take), "
    "`payload_too_large` (413), `unsupported_media_type` (415)"
)
CSRF_ERRORS = "`csrf_failed` (403, writes with the browser session)"
# Every operation's, named in each description by errors().
SERVER_ERRORS = (
    "`server_error` (500: our failure, logged), `service_unavailable` (503: the database unavailable, Retry-After: "
    f"{UNAVAILABLE_RETRY_SECONDS}, a hint)"
)


def errors(*groups: str) -> str:
    return "Also: " + ", ".join((*groups, SERVER_ERRORS)) + "."


class ErrorBody(Schema):
    code: str = Field(description="Stable machine-readable code, e.g. `rate_limited`, `byom_plan_required`.")
    message: str = Field(description="Human-readable, safe to show.")


class ErrorOut(Schema):
    error: ErrorBody
    requestId: str = Field(
        description="This request's ID, as in the `X-Request-ID` response header (every answer carries it): quote it "
        "to Opsion support to find the request in the server's logs."
    )


class OrganisationOut(Schema):
    slug: str
    name: str
    plan: Literal[tuple(Plan.values)]


# Said alike by getSettings and listOrganisations.
ROLE = Field(description="Your role in the organisation.")
BYOM_AVAILABLE = Field(description="The plan allows the organisation's own Claude API key.")


class SettingsOut(Schema):
    organisation: OrganisationOut
    role: Literal[tuple(Role.values)] = ROLE
    byomAvailable: bool = BYOM_AVAILABLE
    claudeApiKeySet: bool = Field(description="A key is stored. The key itself is never returned.")
    claudeApiKeyInUse: bool = Field(
        description="Whether the organisation's AI Insights queries use the stored key: true when one is stored "
        "and the plan allows it (`byomAvailable`), so a key Anthropic rejected (`invalid`) or the server cannot "
        "decrypt (`unreadable`) fails them. False when none is stored, and for a key left behind by a downgrade: it "
        "stays stored, unused (queries use Opsion's platform key, at its limit), until an Owner or Admin removes it, "
        "and is used again if the plan allows it again."
    )
    claudeApiKeyStatus: Literal[(*KeyStatus.values, selectors.KEY_UNREADABLE)] | None = Field(
        description="What Anthropic last said of the stored key; `unreadable` when the server cannot decrypt "
        "it (save it again); null when none is stored. Given for a stored key whether or not it is used "
        "(`claudeApiKeyInUse`): a key left behind by a downgrade keeps what was known of it when it was last used, "
        "and fails no query while it is not used."
    )


class MembershipOut(OrganisationOut):
    role: Literal[tuple(Role.values)] = ROLE
    byomAvailable: bool = BYOM_AVAILABLE


class OrganisationsOut(Schema):
    items: list[MembershipOut]


# Sent as ISO 8601 with the offset (datetime.isoformat()); the format lets a generated client parse it.
CREATED_AT = Field(description="When, in ISO 8601 with its UTC offset.", json_schema_extra={"format": "date-time"})


class AuditEventOut(Schema):
    id: int
    action: Literal[tuple(AuditAction.values)]
    description: str = Field(description="The action in words, with what changed, e.g. `Plan changed: …`.")
    actorEmail: str = Field(description="Who made the change; empty when unknown.")
    via: Literal["console", "api", "admin"] = Field(description="`admin`: a change made by Opsion staff.")
    ip: str | None = Field(description="Where the change came from; null for Opsion staff's changes.")
    createdAt: str = CREATED_AT


class PageOut(Schema):
    """The envelope of a paged list (page_body): its items, as asked for, and whether more follow."""

    limit: int
    offset: int
    after: int | None
    hasMore: bool


class AuditEventsOut(PageOut):
    items: list[AuditEventOut]


AUDIT_MAX_OFFSET = 1_000_000  # deep OFFSETs scan what they skip: offsets reach back this far, `after` further


def _never_null(schema: dict) -> None:
    """Documents an optional `int | None` parameter as the integer alone, without its default (null)."""
    schema.pop("default", None)
    schema.update(next(member for member in schema.pop("anyOf") if member.get("type") != "null"))


# A list's `after` is an id or left out (the first page); `?after=null` is no id and is refused. `int | None` would be
# documented as nullable, and a client generated from the document would send the null it allows: the None that
# stands for "left out" is kept out of the document. Not by a union with SkipJsonSchema[None], which pydantic
# validates member by member: its errors name the member (`after.constrained-int`), and ninja then names the
# parameter by the schema's Python name too (`page.after.constrained-int`, where `limit` is `limit`).
After = Annotated[int, Field(ge=1)] | None

AFTER = Field(
    None,
    description="The `id` of the previous page's last item: this page continues after it, as the list stood then "
    "(nothing repeated or skipped as new items arrive), at any depth. Leave it out for the first page.",
    json_schema_extra=_never_null,
)


class AuditPage(Schema):
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=AUDIT_MAX_OFFSET)
    after: After = AFTER


class BodyIn(Schema):
    """A request body. A field it does not declare is refused (a 400 naming it), not ignored: a client that misspelt
    one (`apikey`) or put a header in the body (`idempotencyKey`) must not take it for acted on. The document says
    so (`additionalProperties: false`)."""

    model_config = ConfigDict(extra="forbid")


class KeyIn(BodyIn):
    # Stated for clients built from the document; the service checks it (orgs.validation), and says what is wrong.
    apiKey: str = Field(
        description=f"Your Anthropic API key: `{validation.KEY_PREFIX}` then letters, digits, `-` and `_`, "
        f"{validation.MIN_LENGTH}–{validation.MAX_LENGTH} characters in all (surrounding spaces are trimmed); "
        f"not an Admin API key (`{validation.ADMIN_KEY_PREFIX}…`), which cannot ask Claude.",
        json_schema_extra={"pattern": validation.KEY_PATTERN},
    )


class KeySetOut(Schema):
    claudeApiKeySet: bool


# The error statuses an operation can answer with, each in the error shape. Every operation: 400 (a request
# refused before it is read: a NUL in its query string, more than 1,000 parameters in it, a Host not served), 401
# (unauthenticated), 404 (not a member), 500 (our failure) and 503 (the database unavailable).
ANY = (400, 401, 404, 500, 503)
UNNAMED = tuple(status for status in ANY if status != 404)  # an operation naming no organisation
WRITE = (*ANY, 403)  # csrf_failed, with the browser session
BODY = (*WRITE, 413, 415)  # operations that read a JSON body


def responses(ok: type[Schema], *statuses: int) -> dict:
    """An operation's documented answers: `ok` for 200, the error shape for each error status."""
    return {200: ok, **dict.fromkeys(sorted(statuses), ErrorOut)}


HEADERS = {
    "WWW-Authenticate": {
        "description": '`Bearer`; `Bearer error="invalid_token"` when a Bearer token was sent and refused, '
        '`Bearer error="invalid_request"` when the Bearer credentials are not a token (empty, or not `b64token`) '
        "(RFC 6750; the status stays 401).",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {"description": "Seconds until a retry can succeed.", "schema": {"type": "integer"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the answer given to an earlier request with the same `Idempotency-Key`; "
        "absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RateLimit-Policy": {
        "description": 'The rolling limit: `"insights";q=<limit>;w=<window seconds>`.',
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'The rolling window now: `"insights";r=<remaining>;t=<seconds until one frees up>`.',
        "required": True,
        "schema": {"type": "string"},
    },
}


TAKES_NONE = "this operation takes no query-string parameter."


def refuse_unknown_parameters(request: HttpRequest, page: type[Schema] | None = None, *, why: str = TAKES_NONE) -> None:
    """Refuse a query-string parameter the list `page` does not declare, or any for an operation without one (`why`
    saying it takes none), by name (InvalidRequest, the name redacted), as a body field is refused: ninja drops it
    unread, and a misspelt or guessed paging parameter (`?cursor=`, `?page=2`, `?Limit=5`) would be answered with the
    first page, `hasMore` true, again and again (listOrganisations: every organisation, for the page asked for)."""
    taken = page.model_fields if page else {}
    unknown = [name for name in request.GET if name not in taken]
    if not unknown:
        return
    if page:
        *names, last = (f"`{name}`" for name in taken)
        why = f"this list takes {', '.join(names)} and {last} (names are case-sensitive)."
    raise InvalidRequest(f"The parameter `{redact(unknown[0])}` is unknown: {why}")


def page_body(items: list, *, has_more: bool, limit: int, offset: int, after: int | None) -> dict:
    """A list endpoint's page of `items` as asked for (paging.Page says whether more follow, past the offset cap
    too: `after` reaches them)."""
    return {"items": items, "limit": limit, "offset": offset, "after": after, "hasMore": has_more}


# Sent with every answer of that status, on every operation: 401's challenge, and 503's Retry-After (the database
# unavailable, or Anthropic on askQuestion).
ALWAYS = {401: ("WWW-Authenticate",), 503: ("Retry-After",)}


class Always(str):
    """A response header's name, for a status every answer of which carries it (always()): documented as required."""


def always(*names: str) -> tuple[Always, ...]:
    """`names` as sent with every answer of the status they are given for (`s409=always("Retry-After")`)."""
    return tuple(Always(name) for name in names)


def headers(**by_status: tuple[str, ...]) -> dict:
    """`openapi_extra` documenting the response headers clients read, by status (`s429=("Retry-After",)`),
    and ALWAYS's on every operation. A 200's are as HEADERS declares them; an error status's are optional unless
    named by always(): one may come from a check made before the header's value is known (a malformed body's 400
    carries no RateLimit fields, say), and a client generated from the document must not count on it then."""
    documented = {status: {name: {"required": True} for name in names} for status, names in ALWAYS.items()}
    for key, names in by_status.items():
        status = int(key[1:])
        for name in names:
            documented.setdefault(status, {}).setdefault(
                name, {} if status == 200 else {"required": isinstance(name, Always)}
            )
    return {
        "responses": {
            status: {"headers": {name: HEADERS[name] | sent for name, sent in names.items()}}
            for status, names in documented.items()
        }
    }


def _organisation(org) -> dict:
    return {"slug": org.slug, "name": org.name, "plan": org.plan}


def _settings(membership) -> dict:
    org = membership.organisation
    state = selectors.claude_api_key_state(org)
    return {
        "organisation": _organisation(org),
        "role": membership.role,
        "byomAvailable": org.allows_byom,
        "claudeApiKeySet": state.is_set,
        "claudeApiKeyInUse": state.in_use,
        "claudeApiKeyStatus": state.status,
    }


# Not paged: a user belongs to a few organisations (each membership is granted by Opsion staff), and one page of
# every one of them keeps a client from having to page through a list so short. Nothing is cut off: should someone
# belong to thousands, they get thousands, in one query.
@router.get(
    "",
    operation_id="listOrganisations",
    response=responses(OrganisationsOut, *UNNAMED),
    openapi_extra=headers(),
    summary="Your organisations",
    description="The organisations you belong to, whatever their plan, by name then slug, each with your role "
    "there: the `slug` the other operations take. Every one of them, in one answer (not paged: a user belongs to "
    "few organisations). It takes no query-string parameter: any is an `invalid_request` (400) naming it. "
    + errors(UNAUTHENTICATED_ERRORS, REQUEST_ERRORS),
)
def list_organisations(request: HttpRequest):
    refuse_unknown_parameters(
        request,
        why="this list takes no parameter (it is not paged: every organisation you belong to is in one answer).",
    )
    return {"items": [_membership(m) for m in Membership.objects.for_user(request.auth)]}


def _membership(membership) -> dict:
    """An item of listOrganisations: the organisation as getSettings gives it, with the caller's role there."""
    org = membership.organisation
    return _organisation(org) | {"role": membership.role, "byomAvailable": org.allows_byom}


@router.get(
    "/{slug}/settings",
    operation_id="getSettings",
    response=responses(SettingsOut, *ANY),
    openapi_extra=headers(),
    summary="Organisation settings",
    description="Any member. " + errors(AUTH_ERRORS, REQUEST_ERRORS),
)
def get_settings(request: HttpRequest, slug: str):
    refuse_unknown_parameters(request)
    return _settings(access.membership_or_404(request.auth, slug))


@router.get(
    "/{slug}/audit-events",
    operation_id="listAuditEvents",
    response=responses(AuditEventsOut, *ANY, 403),
    openapi_extra=headers(),
    summary="The audit log",
    description="Owners and Admins: changes to the organisation's Claude API key, plan and members, newest "
    "first, `limit` (1–200) at a time from `offset` (0–1,000,000), after the event `after` if given (page by "
    "`after`, the last `id` seen: offsets repeat what new events push down). `forbidden_role` (403). "
    + errors(
        AUTH_ERRORS,
        "`invalid_request` (400: `limit` or `offset` out of range, `after` not an event here, a parameter this "
        "list does not take, or one given more than once)",
    ),
)
def list_audit_events(request: HttpRequest, slug: str, page: Query[AuditPage]):
    refuse_unknown_parameters(request, AuditPage)
    membership = access.membership_or_404(request.auth, slug)
    access.require_audit_reader(membership)
    events = selectors.audit_events_page(
        membership.organisation, offset=page.offset, limit=page.limit, after=page.after
    )
    items = [
        {
            "id": e.pk,
            "action": e.action,
            "description": e.description,
            "actorEmail": e.actor_email,
            "via": e.via,
            "ip": e.customer_ip,
            "createdAt": e.created_at.isoformat(),
        }
        for e in events.items
    ]
    return page_body(items, has_more=events.has_more, limit=page.limit, offset=page.offset, after=page.after)


@router.put(
    "/{slug}/settings/claude-api-key",
    operation_id="setClaudeApiKey",
    response=responses(KeySetOut, *BODY, 429),
    openapi_extra=headers(s429=always("Retry-After")),  # the abuse guard's, the only 429: its wait always said
    summary="Save the Claude API key",
    description="Owners and Admins, on the Institutional or Custom plan. Checked in this order: "
    "`forbidden_role` (403), `byom_plan_required` (403), `too_many_attempts` (429, with Retry-After: 10 key "
    "changes a minute per user and per organisation), `claude_api_key_malformed` (400). "
    + errors(AUTH_ERRORS, BODY_ERRORS, CSRF_ERRORS),
)
def put_claude_api_key(request: HttpRequest, slug: str, payload: KeyIn):
    refuse_unknown_parameters(request)
    membership = access.membership_or_404(request.auth, slug)
    services.claude_api_key_set(membership=membership, raw_key=payload.apiKey, ip=client_ip(request), via="api")
    return {"claudeApiKeySet": True}


@router.delete(
    "/{slug}/settings/claude-api-key",
    operation_id="removeClaudeApiKey",
    response=responses(KeySetOut, *WRITE, 429),
    openapi_extra=headers(s429=always("Retry-After")),
    summary="Remove the Claude API key",
    description="Owners and Admins, on any plan (a key left from a BYOM plan can always be removed); idempotent. "
    "`forbidden_role` (403), `too_many_attempts` (429). " + errors(AUTH_ERRORS, REQUEST_ERRORS, CSRF_ERRORS),
)
def delete_claude_api_key(request: HttpRequest, slug: str):
    refuse_unknown_parameters(request)
    membership = access.membership_or_404(request.auth, slug)
    services.claude_api_key_remove(membership=membership, ip=client_ip(request), via="api")
    return {"claudeApiKeySet": False}
