"""Property-based API fuzzing: Schemathesis generates requests from our own OpenAPI document.

Bounded (a fixed number of examples per operation, derandomised) so it fits CI; every operation is called
with a personal API token against a database holding the shared world. No answer may be a 5xx, and every
answer must match the document: its status, content type, headers and body schema. Schemathesis also
replays each accepted request without the token and with a wrong one, and expects a 401.
"""

from typing import Annotated

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError
from schemathesis import DataGenerationMethod, GenerationConfig

from opsion.wsgi import application

# ninja writes OpenAPI 3.1, which Schemathesis 3 supports behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()


def _load(method: DataGenerationMethod):
    return schemathesis.from_wsgi(
        "/api/v1/openapi.json",
        application,
        data_generation_methods=[method],
        # The token is ours to send, so Schemathesis can tell a real credential from a wrong one.
        generation_config=GenerationConfig(with_security_parameters=False),
    )


schema = _load(DataGenerationMethod.positive)


@schema.hook("before_generate_path_parameters")
def _real_organisations_too(context, strategy):
    # Random slugs only ever reach a 404; mix in the token owner's organisation and someone else's (the other
    # parameters, a query's id, as generated). An operation naming no organisation (listOrganisations) has none.
    if "slug" not in {parameter.name for parameter in context.operation.path_parameters}:
        return strategy
    real = [strategy.map(lambda params, slug=slug: {**params, "slug": slug}) for slug in ("acme", "globex")]
    return st.one_of(*real, strategy)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    # The WSGI app closes "old" database connections around each request, which would end the test's
    # transaction on PostgreSQL. Django's own test client switches that off; Schemathesis' WSGI client does not.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


BOUNDED = settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _call_and_validate(case, api_token: str) -> None:
    # Schemathesis 3 writes a wrong cookie or header into containers it assumes exist.
    case.headers, case.cookies, case.query = case.headers or {}, case.cookies or {}, case.query or {}
    headers = {"Authorization": f"Bearer {api_token}"}
    response = case.call_wsgi(headers=headers)
    case.validate_response(response, headers=headers, transport_kwargs={"headers": headers})


@schema.parametrize()
@BOUNDED
def test_every_valid_request_is_answered_as_documented(case, world, api_token, fake_anthropic):
    _call_and_validate(case, api_token)


# Invalid bodies and query strings, sent to the token owner's own organisation so they get past the 404. (A slug
# cannot be made invalid: any text is a string.)
WITH_INPUT = [
    op.ok() for op in _load(DataGenerationMethod.negative).get_all_operations() if op.ok().body or op.ok().query
]


def _still_invalid_on_the_wire(value, schema: dict) -> bool:
    """False when the "negative" value, once written into a URL, is nothing or text the API rightly accepts.

    The URL encoder drops None (also inside a list) and sends a list as the parameter repeated, so
    [], {}, None and [None] vanish, and 1, "01", "1.0" or [1] all arrive as plain, valid text.
    """
    if isinstance(value, dict):
        return bool(value)
    values = [v for v in (value if isinstance(value, list | tuple) else [value]) if v is not None]
    if not values:
        return False
    if schema.get("type") != "integer" or any(isinstance(v, bool | dict | list | tuple) for v in values):
        return True
    texts = [str(v) for v in values]
    bounded = TypeAdapter(Annotated[int, Field(ge=schema.get("minimum"), le=schema.get("maximum"))])
    for text in texts:
        try:
            bounded.validate_python(text)
        except ValidationError:
            return True
    return False


@pytest.mark.parametrize("operation", WITH_INPUT, ids=lambda op: op.verbose_name)
def test_every_invalid_request_is_refused_as_documented(operation, world, api_token, fake_anthropic):
    invalid = operation.as_strategy(
        data_generation_method=DataGenerationMethod.negative, path_parameters={"slug": "acme"}
    )

    sent = []

    @BOUNDED
    @given(case=invalid)
    def check(case):
        # A "negative" query value of [], {} or null vanishes from the URL and leaves a valid request, and
        # so does the string "1" for an integer (it is the integer 1 on the wire).
        assume(
            all(
                _still_invalid_on_the_wire(case.query[p.name], p.definition.get("schema", {}))
                for p in operation.query
                if p.name in (case.query or {})
            )
        )
        _call_and_validate(case, api_token)
        sent.append(case)

    check()
    assert len(sent) >= 10, "Schemathesis generated almost no invalid requests"
