"""`manage.py prune_api_tokens`: tokens expired longer ago than EXPIRED_TOKENS_LISTED_FOR go, for every user;
anything still listed, still accepted or without an expiry stays."""

import secrets
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orgs import models, selectors, services
from orgs.models import ApiToken
from tests.base import query_plan


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_api_tokens", *args, stdout=out)
    return out.getvalue()


def token(user, name: str, expires_at: datetime | None) -> ApiToken:
    raw = services.TOKEN_PREFIX + secrets.token_urlsafe(32)
    return ApiToken.objects.create(
        user=user, name=name, token_hash=services._hash(raw), prefix=raw[:12], expires_at=expires_at
    )


def names() -> set[tuple[str, str]]:
    return set(ApiToken.objects.values_list("user__email", "name"))


def ago(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)


def test_it_deletes_tokens_expired_over_thirty_days_ago_for_every_user_and_keeps_the_rest(world):
    for user in (world.acme_admin, world.globex_member):
        token(user, "expired 31 days ago", ago(31))
        token(user, "expired 200 days ago", ago(200))
        token(user, "expired 29 days ago", ago(29))
        token(user, "no expiry", None)  # made before tokens expired: still accepted
        token(user, "active", timezone.now() + timedelta(days=5))

    output = prune()

    kept = {"expired 29 days ago", "no expiry", "active"}
    assert names() == {(user.email, name) for user in (world.acme_admin, world.globex_member) for name in kept}
    assert output.strip() == "Deleted 4 API tokens expired more than 30 days ago."


def test_a_token_settings_still_lists_is_kept_to_the_instant(world):
    # Settings lists a token expired EXPIRED_TOKENS_LISTED_FOR ago exactly: pruning must not take it from the list.
    now = timezone.now()
    token(world.acme_admin, "expired 30 days ago to the instant", now - models.EXPIRED_TOKENS_LISTED_FOR)
    listed = [t.name for t in selectors.api_tokens_listed(world.acme_admin, now=now).tokens]

    assert services.api_tokens_prune(now=now) == 0
    assert listed == [t.name for t in selectors.api_tokens_listed(world.acme_admin, now=now).tokens] != []


def test_the_window_is_the_one_settings_lists_expired_tokens_for(world, monkeypatch):
    monkeypatch.setattr(models, "EXPIRED_TOKENS_LISTED_FOR", timedelta(days=10))
    token(world.acme_admin, "expired 11 days ago", ago(11))
    token(world.acme_admin, "expired 9 days ago", ago(9))

    output = prune()

    assert names() == {(world.acme_admin.email, "expired 9 days ago")}
    assert output.strip() == "Deleted 1 API token expired more than 10 days ago."


def test_a_dry_run_deletes_nothing_and_says_what_it_would_delete(world):
    token(world.acme_admin, "expired 31 days ago", ago(31))
    token(world.globex_member, "expired 40 days ago", ago(40))
    token(world.acme_admin, "active", timezone.now() + timedelta(days=5))

    output = prune("--dry-run")

    assert ApiToken.objects.count() == 3
    assert output.strip() == "Would delete 2 API tokens expired more than 30 days ago (dry run: nothing was deleted)."


def test_it_is_idempotent(world):
    token(world.acme_admin, "expired 31 days ago", ago(31))
    token(world.acme_admin, "expired 29 days ago", ago(29))

    assert prune().strip() == "Deleted 1 API token expired more than 30 days ago."
    assert prune().strip() == "Deleted 0 API tokens expired more than 30 days ago."
    assert names() == {(world.acme_admin.email, "expired 29 days ago")}


def test_it_works_in_batches(world):
    for n in range(7):
        token(world.acme_admin, f"old {n}", ago(31 + n))
    token(world.acme_admin, "active", timezone.now() + timedelta(days=5))

    with CaptureQueriesContext(connection) as queries:
        output = prune("--batch-size", "2")

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 4  # 2 + 2 + 2 + 1, never all 7 at once
    assert names() == {(world.acme_admin.email, "active")}
    assert output.strip() == "Deleted 7 API tokens expired more than 30 days ago."


@pytest.mark.parametrize("size", ["0", "-1"])
def test_the_batch_size_is_at_least_one(world, size):
    token(world.acme_admin, "expired 31 days ago", ago(31))

    with pytest.raises(CommandError, match="--batch-size must be at least 1."):
        prune("--batch-size", size)
    assert ApiToken.objects.count() == 1


def test_creating_a_token_deletes_the_creators_long_expired_ones_by_the_same_rule(world, monkeypatch):
    # One function decides for both, so the command and the creation cannot drift apart.
    monkeypatch.setattr(models, "EXPIRED_TOKENS_LISTED_FOR", timedelta(days=10))
    token(world.acme_admin, "expired 11 days ago", ago(11))
    token(world.acme_admin, "expired 9 days ago", ago(9))
    token(world.acme_owner, "owner's, expired 60 days ago", ago(60))

    services.api_token_create(user=world.acme_admin, name="new")

    assert names() == {
        (world.acme_admin.email, "expired 9 days ago"),
        (world.acme_admin.email, "new"),
        (world.acme_owner.email, "owner's, expired 60 days ago"),
    }


def test_each_batch_finds_the_long_expired_tokens_on_an_index_not_by_reading_every_token(world):
    # The daily run's batches each look for what is left to delete: without an index on expires_at every one of
    # them reads the whole table, every user's working tokens included.
    now = timezone.now()
    ApiToken.objects.bulk_create(
        ApiToken(
            user=world.acme_member,
            name=f"t{i}",
            token_hash=f"{i:064x}",
            prefix=f"opsn_{i:07d}",
            expires_at=now + timedelta(days=i % 300) - timedelta(days=60),
        )
        for i in range(3000)
    )
    rows = ApiToken.objects.filter(expires_at__lt=now - models.EXPIRED_TOKENS_LISTED_FOR)

    plan = query_plan(rows.values_list("pk", flat=True)[:500])

    assert "orgs_apitoken_expires_at" in plan, plan
