"""Which Anthropic key answers, and which limit applies, proven by the keys the fake server received."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.template import Context, Template
from django.utils import timezone

from insights import keys, services
from insights.models import InsightQuery
from orgs import services as org_services
from orgs.models import ClaudeApiKey, KeyStatus, Plan
from tests.base import GOOD_KEY, OTHER_KEY
from tests.clients import closed_port
from tests.conftest import PLATFORM_KEY


def ask(world, user, org) -> services.PendingQuery:
    pending = services.start(membership=world.membership(user, org), text="What does MiCAR require of a CASP?")
    pending.answer()
    return pending


def test_it_uses_the_platform_key_before_a_key_is_saved(world, fake_anthropic):
    pending = ask(world, world.acme_member, world.acme)

    assert fake_anthropic.keys_used == [PLATFORM_KEY]
    assert pending.row.key_source == "platform"
    assert pending.window.limit == 20


def test_it_uses_the_organisations_key_after_save(world, fake_anthropic, acme_key):
    pending = ask(world, world.acme_member, world.acme)

    assert fake_anthropic.keys_used == [GOOD_KEY]
    assert pending.row.key_source == "organisation"
    assert pending.window.limit == 200


def test_a_custom_plan_organisation_uses_its_own_key(world, fake_anthropic):
    org_services.claude_api_key_set(
        membership=world.membership(world.initech_admin, world.initech), raw_key=OTHER_KEY, ip=None
    )

    pending = ask(world, world.initech_member, world.initech)

    assert fake_anthropic.keys_used == [OTHER_KEY]
    assert pending.window.limit == 200


def test_it_returns_to_the_platform_key_after_the_key_is_removed(world, fake_anthropic, acme_key):
    ask(world, world.acme_member, world.acme)
    org_services.claude_api_key_remove(membership=world.membership(world.acme_admin, world.acme), ip=None)

    pending = ask(world, world.acme_member, world.acme)

    assert fake_anthropic.keys_used == [GOOD_KEY, PLATFORM_KEY]
    assert pending.row.key_source == "platform"
    assert pending.window.limit == 20


def test_a_downgrade_ignores_the_stored_key_until_the_plan_returns(world, fake_anthropic, acme_key):
    acme = world.acme
    acme.plan = Plan.PROFESSIONAL
    acme.save(update_fields=["plan"])

    downgraded = ask(world, world.acme_member, acme)

    assert fake_anthropic.keys_used == [PLATFORM_KEY]
    assert downgraded.row.key_source == "platform"
    assert downgraded.window.limit == 20

    acme.plan = Plan.INSTITUTIONAL
    acme.save(update_fields=["plan"])

    restored = ask(world, world.acme_member, acme)

    assert fake_anthropic.keys_used == [PLATFORM_KEY, GOOD_KEY]
    assert restored.row.key_source == "organisation"
    assert restored.window.limit == 200


def test_one_organisations_key_never_serves_another(world, fake_anthropic, acme_key):
    ask(world, world.globex_member, world.globex)
    ask(world, world.initech_member, world.initech)

    assert fake_anthropic.keys_used == [PLATFORM_KEY, PLATFORM_KEY]


def test_nothing_one_organisations_call_received_rides_along_with_anothers(world, fake_anthropic, acme_key):
    # The HTTP connection pool is shared by every call in a process; a cookie set in reply to one
    # organisation's request (by a CDN or balancer in front of the API) must not follow another's.
    fake_anthropic.set_cookie = "affinity=acme-session; Path=/"
    ask(world, world.acme_member, world.acme)
    ask(world, world.globex_member, world.globex)
    ask(world, world.acme_member, world.acme)

    assert fake_anthropic.keys_used == [GOOD_KEY, PLATFORM_KEY, GOOD_KEY]
    assert [r["cookie"] for r in fake_anthropic.requests] == [None, None, None]


def test_the_sdks_own_environment_variables_change_neither_the_key_nor_the_address(
    world, fake_anthropic, acme_key, monkeypatch
):
    # The SDK reads credentials and an address from the environment when a caller names none. Every call names
    # both, so a token or address left in the server's environment cannot ride along with an organisation's call
    # (the fake records a Bearer token, were one sent, as the key used) nor send it elsewhere.
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "sk-ant-oat01-environment-token")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-environment-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")

    ask(world, world.acme_member, world.acme)
    ask(world, world.globex_member, world.globex)

    assert fake_anthropic.keys_used == [GOOD_KEY, PLATFORM_KEY]


def test_limits_follow_the_settings(world, settings):
    settings.INSIGHTS_PLATFORM_LIMIT = 7
    settings.INSIGHTS_BYOM_LIMIT = 70
    org_services.claude_api_key_set(
        membership=world.membership(world.acme_owner, world.acme), raw_key=GOOD_KEY, ip=None
    )

    assert keys.resolve(world.acme).limit == 70
    assert keys.resolve(world.globex).limit == 7


def test_the_defaults_are_20_and_200_per_3600_seconds():
    # A fresh interpreter without any INSIGHTS_* variables shows what settings.py defaults to.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTS_")}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.INSIGHTS_PLATFORM_LIMIT, s.INSIGHTS_BYOM_LIMIT, s.INSIGHTS_WINDOW_SECONDS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "DJANGO_SETTINGS_MODULE": "opsion.settings"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["20", "200", "3600"]


def test_a_slow_answer_on_a_replaced_key_does_not_mark_the_new_key(world, fake_anthropic):
    owner = world.membership(world.acme_owner, world.acme)
    org_services.claude_api_key_set(membership=owner, raw_key=GOOD_KEY, ip=None)
    fake_anthropic.behave(GOOD_KEY, "auth_error")
    pending = services.start(membership=world.membership(world.acme_member, world.acme), text="MiCAR?")
    # The Owner rotates the key while the query on the old one is still out.
    org_services.claude_api_key_set(membership=owner, raw_key=OTHER_KEY, ip=None)

    with pytest.raises(services.KeyInvalid):
        pending.answer()

    assert ClaudeApiKey.objects.get(organisation=world.acme).status == KeyStatus.UNVERIFIED


def test_a_key_choice_never_shows_either_key_when_printed(world, acme_key):
    # A KeyChoice is a dataclass: its repr (in a log line, an f-string, a debugger) lists its fields.
    on_platform, on_own = keys.resolve(world.globex), keys.resolve(world.acme)

    shown = f"{on_platform!r} {on_own!r} {on_platform} {on_own} {on_platform.secret} {on_own.secret}"

    assert PLATFORM_KEY not in shown and GOOD_KEY not in shown
    assert "<PlatformKey>" in shown and on_own.secret.reveal() == GOOD_KEY


def test_no_template_can_reveal_either_key_from_a_key_choice(world, acme_key, settings):
    # Templates call argument-free methods: {{ choice.secret.reveal }} must print nothing, on the platform key as on
    # an organisation's own (Sealed refuses it the same way).
    settings.ANTHROPIC_API_KEY = PLATFORM_KEY
    page = Template("[{{ platform.secret.reveal }}][{{ own.secret.reveal }}]").render(
        Context({"platform": keys.resolve(world.globex), "own": keys.resolve(world.acme)})
    )

    assert PLATFORM_KEY not in page and GOOD_KEY not in page
    assert page == "[][]"


def test_a_query_whose_key_keeps_changing_as_it_is_decided_is_refused_as_unavailable_and_not_counted(
    world, fake_anthropic, acme_key, monkeypatch, caplog
):
    # Each time the query has chosen its key, the key is saved again before the decision (another admin's save
    # committing in those milliseconds): it chooses again a few times, then gives up with the unavailable answer,
    # logged, counting nothing and sending nothing, never a crash.
    chosen = keys.resolve

    def replaced_once_chosen(org):
        choice = chosen(org)
        ClaudeApiKey.objects.filter(organisation=org).update(saved_at=timezone.now() + timedelta(seconds=1))
        return choice

    monkeypatch.setattr(keys, "resolve", replaced_once_chosen)

    with pytest.raises(services.InsightsUnavailable):
        services.start(membership=world.membership(world.acme_member, world.acme), text="What is MiCAR?")

    assert InsightQuery.objects.filter(organisation=world.acme).count() == 0
    assert fake_anthropic.keys_used == []
    assert f"one query was decided {services.KEY_CHOICES} times (its key or plan changed" in caplog.text
