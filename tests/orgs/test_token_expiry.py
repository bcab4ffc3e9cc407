"""Personal API tokens expire: a lifetime chosen at creation (30 days, 90 or a year), an expired token refused by the
API as an unknown one is but in words its owner can act on, and tokens made before expiry existed kept working."""

import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from opsion.errors import InvalidRequest
from orgs import services
from orgs.models import ApiToken
from tests.clients import console
from tests.orgs.helpers import error_of

SETTINGS_API = "/api/v1/orgs/acme/settings"
UNAUTHENTICATED = "Sign in, or send a valid personal API token as `Authorization: Bearer <token>`."


def api_get(raw: str):
    return console().get(SETTINGS_API, headers={"Authorization": f"Bearer {raw}"})


def expire(token: ApiToken, *, at: datetime) -> None:
    ApiToken.objects.filter(pk=token.pk).update(expires_at=at)


def test_a_new_token_expires_after_ninety_days_by_default(world):
    now = timezone.now()

    token, _ = services.api_token_create(user=world.acme_admin, name="CI", now=now)

    assert token.expires_at == now + timedelta(days=90)
    assert ApiToken.objects.get().expires_at == now + timedelta(days=90)


@pytest.mark.parametrize("days", [30, 90, 365])
def test_a_token_lives_as_many_days_as_chosen(world, days):
    now = timezone.now()

    token, _ = services.api_token_create(user=world.acme_admin, name="CI", expires_in_days=days, now=now)

    assert ApiToken.objects.get(pk=token.pk).expires_at == now + timedelta(days=days)


@pytest.mark.parametrize("days", [0, -1, 366, 10_000])
def test_no_token_lives_for_ever_or_longer_than_a_year(world, days):
    with pytest.raises(InvalidRequest, match="between 1 and 365 days"):
        services.api_token_create(user=world.acme_admin, name="CI", expires_in_days=days)
    assert not ApiToken.objects.exists()


def test_a_token_works_until_it_expires(world):
    token, raw = services.api_token_create(user=world.acme_admin, name="CI", expires_in_days=30)
    expire(token, at=timezone.now() + timedelta(seconds=30))

    assert api_get(raw).status_code == 200


def test_an_expired_token_is_refused_as_unauthenticated_saying_when_it_expired(world):
    token, raw = services.api_token_create(user=world.acme_admin, name="CI")
    at = timezone.now() - timedelta(days=3)
    expire(token, at=at)

    response = api_get(raw)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'  # RFC 6750: a token was sent, refused
    assert error_of(response) == {
        "code": "unauthenticated",
        "message": f"This API token expired on {at.astimezone(UTC):%Y-%m-%d}. Create a new one in Settings.",
    }


def test_an_expired_token_is_refused_on_writes_too(world):
    token, raw = services.api_token_create(user=world.acme_admin, name="CI")
    expire(token, at=timezone.now() - timedelta(seconds=1))

    response = console().delete(f"{SETTINGS_API}/claude-api-key", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"
    assert "expired on" in error_of(response)["message"]


def test_an_unknown_token_keeps_the_message_it_always_had(world):
    response = api_get("opsn_" + "x" * 43)

    assert response.status_code == 401
    assert error_of(response) == {"code": "unauthenticated", "message": UNAUTHENTICATED}


def test_a_deactivated_users_expired_token_says_nothing_of_expiry(world):
    # Creating a new one in Settings is no way out for them: the plain refusal, as for any token of theirs.
    token, raw = services.api_token_create(user=world.acme_admin, name="CI")
    expire(token, at=timezone.now() - timedelta(days=1))
    world.acme_admin.is_active = False
    world.acme_admin.save()

    assert error_of(api_get(raw))["message"] == UNAUTHENTICATED


def test_a_refused_expired_token_is_not_recorded_as_used(world):
    token, raw = services.api_token_create(user=world.acme_admin, name="CI")
    expire(token, at=timezone.now() - timedelta(minutes=5))

    api_get(raw)

    assert ApiToken.objects.get().last_used_at is None


def test_a_token_is_expired_from_the_instant_its_expiry_passes(world):
    now = timezone.now()
    token, raw = services.api_token_create(user=world.acme_admin, name="CI", expires_in_days=30, now=now)
    at = now + timedelta(days=30)

    with pytest.raises(services.TokenExpired):
        services.api_token_authenticate(raw, now=at)
    assert services.api_token_authenticate(raw, now=at - timedelta(microseconds=1)) == world.acme_admin


def test_a_token_made_before_tokens_expired_keeps_working(world):
    token, raw = services.api_token_create(user=world.acme_admin, name="legacy")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=None)

    assert api_get(raw).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


# The cap: at most 20 unexpired tokens per user.


def make_tokens(user, count: int, **kwargs) -> list[ApiToken]:
    return [services.api_token_create(user=user, name=f"t{n}", **kwargs)[0] for n in range(count)]


def test_the_twenty_first_active_token_is_refused_and_nothing_is_created(world):
    make_tokens(world.acme_admin, 20)

    with pytest.raises(services.TooManyTokens) as refused:
        services.api_token_create(user=world.acme_admin, name="one more")

    assert refused.value.message == "You have 20 active tokens: revoke one you no longer use first."
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 20
    assert not ApiToken.objects.filter(name="one more").exists()


def test_the_cap_is_per_user(world):
    make_tokens(world.acme_admin, 20)

    services.api_token_create(user=world.acme_owner, name="mine")

    assert ApiToken.objects.filter(user=world.acme_owner).count() == 1


def test_expired_tokens_do_not_count_against_the_cap(world):
    tokens = make_tokens(world.acme_admin, 20)
    expire(tokens[0], at=timezone.now() - timedelta(seconds=1))

    services.api_token_create(user=world.acme_admin, name="replacement")

    assert ApiToken.objects.filter(user=world.acme_admin).count() == 21


def test_a_token_stops_counting_against_the_cap_the_instant_it_expires(world):
    now = timezone.now()
    made = [services.api_token_create(user=world.acme_admin, name=f"CI {n}", now=now)[0] for n in range(20)]
    expire(made[0], at=now)  # refused by the API from this instant (test_a_token_is_expired_from_the_instant...)

    token, _ = services.api_token_create(user=world.acme_admin, name="CI 21", now=now)

    assert token.expires_at == now + timedelta(days=90)


def test_tokens_without_expiry_count_against_the_cap(world):
    # They work: a user holding 25 of them from before the cap must revoke some first.
    tokens = make_tokens(world.acme_admin, 20)
    ApiToken.objects.filter(pk__in=[t.pk for t in tokens]).update(expires_at=None)

    with pytest.raises(services.TooManyTokens):
        services.api_token_create(user=world.acme_admin, name="one more")


def test_over_the_cap_from_before_it_the_refusal_says_how_many_to_revoke(world):
    make_tokens(world.acme_admin, 20)
    for n in range(5):  # made before the cap, with no expiry
        ApiToken.objects.create(user=world.acme_admin, name=f"old{n}", token_hash=f"{n}" * 64, prefix="opsn_old")

    with pytest.raises(services.TooManyTokens) as refused:
        services.api_token_create(user=world.acme_admin, name="one more")

    assert refused.value.message == (
        "You have 25 active tokens (at most 20 are allowed): revoke 6 you no longer use first."
    )


def test_a_token_expired_over_thirty_days_ago_is_deleted_when_its_owner_creates_another(world):
    # Listed for a month after it expires, so its owner sees what stopped working; then it goes.
    now = timezone.now()
    old, recent, others = make_tokens(world.acme_admin, 3)
    expire(old, at=now - timedelta(days=31))
    expire(recent, at=now - timedelta(days=29))
    theirs = services.api_token_create(user=world.acme_owner, name="owner's")[0]
    expire(theirs, at=now - timedelta(days=60))

    services.api_token_create(user=world.acme_admin, name="new", now=now)

    assert set(ApiToken.objects.filter(user=world.acme_admin).values_list("name", flat=True)) == {"t1", "t2", "new"}
    assert ApiToken.objects.filter(pk=theirs.pk).exists()  # only the creator's own tokens


# create_api_token --expires-in DAYS


def run(*args) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue()


def test_the_command_makes_a_ninety_day_token_by_default_and_says_when_it_expires(world):
    before = timezone.now()
    output = run("admin@acme.test")

    token = ApiToken.objects.get()
    assert before + timedelta(days=90) <= token.expires_at <= timezone.now() + timedelta(days=90)
    assert f"It expires on {token.expires_at:%Y-%m-%d} (UTC)." in output


def test_the_command_makes_a_one_year_token_when_asked(world):
    before = timezone.now()
    raw = run("admin@acme.test", "--expires-in", "365").rstrip("\n").splitlines()[-1]

    token = ApiToken.objects.get()
    assert before + timedelta(days=365) <= token.expires_at <= timezone.now() + timedelta(days=365)
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()


@pytest.mark.parametrize("days", ["0", "366"])
def test_the_command_refuses_a_lifetime_out_of_bounds(world, days):
    with pytest.raises(CommandError, match="between 1 and 365 days"):
        run("admin@acme.test", "--expires-in", days)
    assert not ApiToken.objects.exists()


def test_the_command_is_held_to_the_cap(world):
    make_tokens(world.acme_admin, 20)

    with pytest.raises(CommandError, match="You have 20 active tokens"):
        run("admin@acme.test")
    assert ApiToken.objects.count() == 20


# The migration: tokens made before it keep working, with no expiry.

BEFORE = ("orgs", "0005_audit_account_deactivation")
AFTER = ("orgs", "0006_apitoken_expires_at")


@pytest.mark.django_db(transaction=True)
def test_tokens_made_before_the_migration_keep_working_with_no_expiry(world, latest_schema_after):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old_token = executor.loader.project_state([BEFORE]).apps.get_model("orgs", "ApiToken")
    raw = "opsn_" + "m" * 43
    old_token.objects.create(
        user_id=world.acme_admin.pk, name="legacy", token_hash=hashlib.sha256(raw.encode()).hexdigest(), prefix=raw[:12]
    )

    executor = MigrationExecutor(connection)
    executor.migrate([AFTER])

    assert ApiToken.objects.get(name="legacy").expires_at is None
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the code serving the request is the latest release's
    assert api_get(raw).status_code == 200
