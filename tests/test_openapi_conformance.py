"""Every answer the OpenAPI document declares, driven through the test client and checked against the document.

For each operation and each status it lists, at least one real request reaches that status, and its answer must be
what the document says of it: the status declared, `application/json; charset=utf-8`, a body the declared schema takes
(its `$ref`s resolved in the document's components, its formats checked, and no property it does not list), every
header the document calls required, of its declared type, and no Claude API key anywhere in it. A status an operation
answers with but does not declare fails here; a case for a status no longer declared fails too, and
`test_every_declared_answer_is_driven` fails when an operation or a status is added without a case, so the list cannot
fall behind the document.

Schemathesis (tests/security/test_schemathesis.py) checks whatever answers its generated requests happen to reach;
this module makes sure each declared one is reached. Faults are real: the database refusing a read (a connection-class
error is the 503, any other the 500), Anthropic's fake answering with an error, a client's malformed request.
"""

import json
from collections.abc import Callable
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client
from jsonschema import Draft202012Validator

from insights.models import InsightQuery, KeySource
from orgs import services as org_services
from tests.base import CANARY_KEY, GOOD_KEY
from tests.clients import bearer, console
from tests.insights.helpers import seed

API = "/api/v1"
JSON = "application/json; charset=utf-8"

PATHS = {
    "listOrganisations": ("get", "/api/v1/orgs"),
    "getSettings": ("get", "/api/v1/orgs/{slug}/settings"),
    "setClaudeApiKey": ("put", "/api/v1/orgs/{slug}/settings/claude-api-key"),
    "removeClaudeApiKey": ("delete", "/api/v1/orgs/{slug}/settings/claude-api-key"),
    "listAuditEvents": ("get", "/api/v1/orgs/{slug}/audit-events"),
    "askQuestion": ("post", "/api/v1/orgs/{slug}/insights/queries"),
    "getUsage": ("get", "/api/v1/orgs/{slug}/insights/usage"),
    "listQueries": ("get", "/api/v1/orgs/{slug}/insights/queries"),
    "getQuery": ("get", "/api/v1/orgs/{slug}/insights/queries/{query_id}"),
}


class Ctx:
    """What a case needs: the shared world, the fake Anthropic server, and a way to send the operation's request."""

    def __init__(self, world, fake_anthropic, operation: str) -> None:
        self.world, self.fake, self.operation = world, fake_anthropic, operation
        self.query_id = None

    def url(self, slug: str = "acme", query_id: int | None = None) -> str:
        _, path = PATHS[self.operation]
        return path.format(slug=slug, query_id=query_id or self.query_id or 1)

    def send(self, client: Client, *, slug: str = "acme", body=None, query: str = "", **kwargs):
        method, _ = PATHS[self.operation]
        url = self.url(slug) + query
        if body is None and method == "put":
            body = {"apiKey": GOOD_KEY}
        if body is None and method == "post":
            body = {"query": "Which reserve rules apply to asset-referenced tokens?"}
        if body is not None:
            kwargs.setdefault("content_type", "application/json")
            kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
        return getattr(client, method)(url, **kwargs)


def token(user) -> Client:
    return Client(headers=bearer(user))


def own_query(ctx: Ctx) -> None:
    """A query of acme's Owner for getQuery to read."""
    (row,) = seed(ctx.world.acme, 10, user=ctx.world.acme_owner)
    ctx.query_id = row.pk


@contextmanager
def membership_reads_fail(kind: str):
    """Every read of a membership fails in the database itself, inside the test's transaction (rolled back with it):
    `unavailable` with a connection-class error (OperationalError, the 503), `broken` with another (DataError, the
    500). The table is renamed and a view of its name put in its place, whose rows cannot be read."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE orgs_membership RENAME TO conformance_membership")
        if connection.vendor == "postgresql":
            errcode = {"unavailable": "08006", "broken": "22012"}[kind]
            cursor.execute(
                "CREATE FUNCTION conformance_fail() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ "
                f"BEGIN RAISE EXCEPTION 'membership unreadable' USING ERRCODE = '{errcode}'; END $$"
            )
            condition = "conformance_fail()"
        elif kind == "unavailable":
            connection.connection.create_function("conformance_fail", 0, _unreadable)
            condition = "conformance_fail()"
        else:  # SQLITE_TOOBIG: sqlite3.DataError
            condition = "length(zeroblob(2000000000)) > 0"
        cursor.execute(f"CREATE VIEW orgs_membership AS SELECT * FROM conformance_membership WHERE {condition}")
    try:
        yield
    finally:
        if connection.vendor == "sqlite" and kind == "unavailable":
            connection.connection.create_function("conformance_fail", 0, None)


def _unreadable():
    raise OSError("disk I/O error")


# Each case: (operationId, status, expected error code or None for a 200, what it shows, driver). A driver gets the
# Ctx and returns the response.
Driver = Callable[[Ctx], object]
CASES: list[tuple[str, int, str | None, str, Driver]] = []


def case(operations, status: int, code: str | None, what: str):
    def register(driver: Driver) -> Driver:
        for operation in [operations] if isinstance(operations, str) else operations:
            CASES.append((operation, status, code, what, driver))
        return driver

    return register


EVERY = list(PATHS)
NAMED = [operation for operation in EVERY if operation != "listOrganisations"]
GETS = [operation for operation, (method, _) in PATHS.items() if method == "get"]
WRITES = ["setClaudeApiKey", "removeClaudeApiKey", "askQuestion"]
WITH_BODY = ["setClaudeApiKey", "askQuestion"]
PAGED = ["listAuditEvents", "listQueries"]


# --- 200 ---


@case(EVERY, 200, None, "an Owner's request")
def _ok(ctx: Ctx):
    org_services.claude_api_key_set(
        membership=ctx.world.membership(ctx.world.acme_owner, ctx.world.acme), raw_key=GOOD_KEY, ip="192.0.2.1"
    )
    own_query(ctx)
    return ctx.send(token(ctx.world.acme_owner))


@case("askQuestion", 200, None, "a retry answered from the first request (Idempotent-Replayed)")
def _replayed(ctx: Ctx):
    client = token(ctx.world.acme_owner)
    assert ctx.send(client, headers={"Idempotency-Key": "conformance-1"}).status_code == 200
    replayed = ctx.send(client, headers={"Idempotency-Key": "conformance-1"})
    assert replayed["Idempotent-Replayed"] == "true"
    return replayed


@case(["askQuestion", "getQuery"], 200, None, "a query Claude cut short (max_tokens)")
def _cut_short(ctx: Ctx):
    ctx.fake.default = "max_tokens"
    client = token(ctx.world.acme_owner)
    asked = API + "/orgs/acme/insights/queries"
    response = client.post(asked, {"query": "Summarise MiCAR."}, content_type="application/json")
    ctx.query_id = response.json()["id"]
    return response if ctx.operation == "askQuestion" else ctx.send(client)


@case(["getQuery", "listQueries"], 200, None, "a query that failed, and one still pending")
def _failed_and_pending(ctx: Ctx):
    ctx.fake.default = "server_error"
    client = token(ctx.world.acme_owner)
    client.post(API + "/orgs/acme/insights/queries", {"query": "Summarise MiCAR."}, content_type="application/json")
    ctx.query_id = InsightQuery.objects.get().pk
    InsightQuery.objects.create(
        organisation=ctx.world.acme, user=ctx.world.acme_owner, key_source=KeySource.PLATFORM, query="pending"
    )
    return ctx.send(client)


@case(GETS, 200, None, "a request from the browser session")
def _session(ctx: Ctx):
    own_query(ctx)
    return ctx.send(console(ctx.world.acme_owner))


# --- 400 ---


@case(EVERY, 400, "invalid_request", "a NUL in the query string")
def _nul(ctx: Ctx):
    own_query(ctx)
    return ctx.send(token(ctx.world.acme_owner), query="?x=%00")


@case(EVERY, 400, "invalid_request", "a query-string parameter it does not take")
def _unknown_parameter(ctx: Ctx):
    # Refused by name, not ignored: `?page=2` answered with the first page, or a write that went ahead beside a
    # misplaced argument, would leave the client believing it was heard. Nothing is written first.
    own_query(ctx)
    response = ctx.send(token(ctx.world.acme_owner), query="?page=2")
    assert response.json()["error"]["message"].startswith("The parameter `page` is unknown: ")
    return response


@case(NAMED, 400, "invalid_request", "a key in the path")
def _key_in_path(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), slug=CANARY_KEY)


@case(WITH_BODY, 400, "invalid_request", "invalid JSON")
def _invalid_json(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), body='{"apiKey": "' + CANARY_KEY + '",')


@case(WITH_BODY, 400, "invalid_request", "an unknown field")
def _unknown_field(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), body={"query": "a", "apiKey": "b", CANARY_KEY: 1})


@case(PAGED, 400, "invalid_request", "`limit` out of range")
def _limit(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), query="?limit=0")


@case(PAGED, 400, "invalid_request", "`after` not an item of the list")
def _after(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), query="?after=999999")


@case("setClaudeApiKey", 400, "claude_api_key_malformed", "a key not of Anthropic's form")
def _malformed(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), body={"apiKey": "sk-live-not-a-claude-key"})


@case("askQuestion", 400, "query_holds_secret", "a question holding a key")
def _holds_secret(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), body={"query": f"Is {CANARY_KEY} valid?"})


def _asked_on_own_key(ctx: Ctx, behaviour: str):
    """acme's Owner asks on acme's own key, which the fake answers with `behaviour`."""
    org_services.claude_api_key_set(
        membership=ctx.world.membership(ctx.world.acme_owner, ctx.world.acme), raw_key=GOOD_KEY, ip=None
    )
    ctx.fake.behave(GOOD_KEY, behaviour)
    return ctx.send(token(ctx.world.acme_owner))


@case("askQuestion", 400, "claude_api_key_invalid", "Anthropic rejecting the organisation's key")
def _key_invalid(ctx: Ctx):
    return _asked_on_own_key(ctx, "auth_error")


@case("askQuestion", 400, "upstream_billing", "the organisation's account out of credit")
def _billing(ctx: Ctx):
    return _asked_on_own_key(ctx, "credit_exhausted")


# --- 401 ---


@case(EVERY, 401, "unauthenticated", "no credentials")
def _anonymous(ctx: Ctx):
    return ctx.send(Client())


@case(EVERY, 401, "unauthenticated", "an unknown token")
def _unknown_token(ctx: Ctx):
    return ctx.send(Client(headers={"Authorization": "Bearer opsn_unknown"}))


# --- 403 ---


@case(WRITES, 403, "csrf_failed", "a session write without its CSRF token")
def _csrf(ctx: Ctx):
    return ctx.send(console(ctx.world.acme_owner, enforce_csrf_checks=True))


@case(["setClaudeApiKey", "removeClaudeApiKey", "listAuditEvents"], 403, "forbidden_role", "a Member")
def _member(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_member))


@case("setClaudeApiKey", 403, "byom_plan_required", "a plan without BYOM")
def _plan(ctx: Ctx):
    return ctx.send(token(ctx.world.globex_owner), slug="globex")


# --- 404 ---


@case(NAMED, 404, "not_found", "an organisation the caller is not a member of")
def _outsider(ctx: Ctx):
    own_query(ctx)
    return ctx.send(token(ctx.world.acme_owner), slug="globex")


@case("getQuery", 404, "not_found", "a query of another member")
def _anothers_query(ctx: Ctx):
    own_query(ctx)
    return ctx.send(token(ctx.world.acme_admin))


# --- 409, 413, 415, 422, 429 ---


@case("askQuestion", 409, "idempotency_key_in_use", "a retry while the first is being answered")
def _in_use(ctx: Ctx):
    InsightQuery.objects.create(
        organisation=ctx.world.acme,
        user=ctx.world.acme_owner,
        key_source=KeySource.PLATFORM,
        query="Which reserve rules apply to asset-referenced tokens?",
        idempotency_key="conformance-1",
    )
    return ctx.send(token(ctx.world.acme_owner), headers={"Idempotency-Key": "conformance-1"})


@case(WITH_BODY, 413, "payload_too_large", "a body over 64 KB")
def _too_large(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), body={"query": "x" * 70_000, "apiKey": "y" * 70_000})


@case(WITH_BODY, 415, "unsupported_media_type", "a form post")
def _form(ctx: Ctx):
    return ctx.send(token(ctx.world.acme_owner), body=f"apiKey={CANARY_KEY}", content_type="text/plain")


@case("askQuestion", 422, "idempotency_key_reused", "an Idempotency-Key sent before with another question")
def _reused(ctx: Ctx):
    client = token(ctx.world.acme_owner)
    assert ctx.send(client, headers={"Idempotency-Key": "conformance-1"}).status_code == 200
    return ctx.send(client, body={"query": "Another question"}, headers={"Idempotency-Key": "conformance-1"})


@case(["setClaudeApiKey", "removeClaudeApiKey"], 429, "too_many_attempts", "an eleventh key write in a minute")
def _key_writes(ctx: Ctx):
    client = token(ctx.world.acme_owner)
    for _ in range(10):
        assert ctx.send(client).status_code == 200
    return ctx.send(client)


@case("askQuestion", 429, "rate_limited", "over the rolling limit")
def _rate_limited(ctx: Ctx):
    seed(ctx.world.globex, *range(100, 2100, 100))
    return ctx.send(token(ctx.world.globex_owner), slug="globex")


@case("askQuestion", 429, "upstream_rate_limited", "Anthropic limiting the organisation's own account")
def _upstream_limited(ctx: Ctx):
    return _asked_on_own_key(ctx, "rate_limited")


# --- 500, 503 ---


@case(EVERY, 500, "server_error", "the database failing a read unexpectedly")
def _broken(ctx: Ctx):
    own_query(ctx)
    client = Client(headers=bearer(ctx.world.acme_owner), raise_request_exception=False)
    with membership_reads_fail("broken"):
        return ctx.send(client)


@case(EVERY, 503, "service_unavailable", "the database unavailable")
def _unavailable(ctx: Ctx):
    own_query(ctx)
    client = token(ctx.world.acme_owner)
    with membership_reads_fail("unavailable"):
        return ctx.send(client)


@case("askQuestion", 503, "insights_unavailable", "Anthropic unavailable")
def _insights_unavailable(ctx: Ctx):
    ctx.fake.default = "overloaded"
    return ctx.send(token(ctx.world.acme_owner))


@pytest.fixture(scope="module")
def document(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return Client().get("/api/v1/openapi.json").json()


def closed(schema):
    """`schema` with every object it describes closed to properties it does not list, and formats checked: the
    document leaves its answers open (`additionalProperties` unsaid), so a field no schema declares (a `detail`
    holding an exception's text, say) would otherwise pass as documented."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shut = {name: closed(value) for name, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        shut["additionalProperties"] = False
    return shut


def assert_as_documented(document: dict, operation_id: str, response) -> None:
    method, path = PATHS[operation_id]
    operation = document["paths"][path][method]
    assert operation["operationId"] == operation_id
    status = str(response.status_code)
    assert status in operation["responses"], f"{operation_id} answered {status}, which it does not declare"
    declared = operation["responses"][status]
    assert response["Content-Type"] == JSON
    schema = closed({"components": document["components"], **declared["content"]["application/json"]["schema"]})
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    body = response.json()
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(body)]
    assert not errors, (operation_id, status, errors, body)
    for name, header in declared.get("headers", {}).items():
        if header.get("required"):
            assert name in response, (operation_id, status, f"required header {name} missing")
        if name in response and header["schema"].get("type") == "integer":
            assert response[name].isdigit(), (operation_id, status, name, response[name])
    undeclared = {"RateLimit", "RateLimit-Policy", "Retry-After", "Idempotent-Replayed", "WWW-Authenticate"}
    for name in undeclared - set(declared.get("headers", {})):
        assert name not in response, (operation_id, status, f"{name} sent but not declared")


@pytest.mark.parametrize(
    ("operation_id", "status", "code", "driver"),
    [pytest.param(op, status, code, driver, id=f"{op}-{status}-{what}") for op, status, code, what, driver in CASES],
)
def test_each_answer_is_what_the_document_declares(
    operation_id, status, code, driver, document, world, fake_anthropic, clock
):
    response = driver(Ctx(world, fake_anthropic, operation_id))

    assert response.status_code == status, response.content
    if code is not None:
        assert response.json()["error"]["code"] == code
        assert response.json()["requestId"] == response["X-Request-ID"]
    shown = response.content.decode() + " ".join(response.headers.values())
    assert CANARY_KEY[13:45] not in shown and GOOD_KEY[13:45] not in shown  # no answer, 200s included, holds a key
    assert_as_documented(document, operation_id, response)


def test_every_declared_answer_is_driven(document):
    declared = {
        (operation["operationId"], int(status))
        for operations in document["paths"].values()
        for operation in operations.values()
        for status in operation["responses"]
    }
    driven = {(operation, status) for operation, status, *_ in CASES}

    assert declared == driven
