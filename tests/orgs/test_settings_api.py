"""The JSON settings API: shapes, the error table in its check order, sessions with CSRF, OpenAPI."""

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from insights.ratelimit import RateLimited
from insights.services import (
    INTERRUPTED,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsightsUnavailable,
    KeyInvalid,
    KeyUnreadable,
    UpstreamBilling,
    UpstreamRateLimited,
)
from orgs import services as org_services
from orgs.access import PlanRequired, RoleRequired
from orgs.guards import TooManyAttempts
from orgs.models import ApiToken, AuditAction, AuditEvent, ClaudeApiKey, KeyStatus, Membership, Organisation, Plan, Role
from orgs.validation import KeyMalformed
from tests.base import CANARY_KEY, GOOD_KEY, OTHER_KEY
from tests.clients import KEY_API, api_delete_key, api_put_key, bearer, console, token_client
from tests.orgs.helpers import (
    ELIGIBLE,
    PLAN_REFUSAL,
    PLANS,
    ROLES,
    audit_actions,
    but_the_request_id,
    error_of,
    store_key,
    stored_key,
)

UNAUTHENTICATED = {
    "code": "unauthenticated",
    "message": "Sign in, or send a valid personal API token as `Authorization: Bearer <token>`.",
}
NOT_FOUND = {"code": "not_found", "message": "Not found."}
FORBIDDEN_ROLE = {
    "code": "forbidden_role",
    "message": "Only an Owner or Admin of this organisation can change its Claude API key.",
}


def plan_required(org) -> dict:
    return {
        "code": "byom_plan_required",
        "message": f"{PLAN_REFUSAL}. {org.name} is on the {org.get_plan_display()} plan. Upgrade to Institutional to "
        "use your own key.",
    }


def auth_for(user) -> dict:
    return {} if user is None else bearer(user)


def get_settings(slug: str, **headers):
    return console().get(f"/api/v1/orgs/{slug}/settings", headers=headers)


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ROLES)
def test_get_settings_is_for_any_member(people, role, plan):
    org, user = people(plan, role)

    response = get_settings(org.slug, **auth_for(user))

    if role == "anonymous":
        assert response.status_code == 401
        assert error_of(response) == UNAUTHENTICATED
        assert response["WWW-Authenticate"] == "Bearer"
    elif role == "outsider":
        assert response.status_code == 404
        assert error_of(response) == NOT_FOUND
    else:
        assert response.status_code == 200
        assert response.json() == {
            "organisation": {"slug": org.slug, "name": org.name, "plan": str(plan)},
            "role": role,
            "byomAvailable": plan in ELIGIBLE,
            "claudeApiKeySet": False,
            "claudeApiKeyInUse": False,
            "claudeApiKeyStatus": None,
        }


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ROLES)
def test_put_key_obeys_authentication_membership_role_then_plan(people, role, plan):
    org, user = people(plan, role)

    response = api_put_key(console(), org.slug, {"apiKey": CANARY_KEY}, **auth_for(user))

    expected = {
        "anonymous": (401, UNAUTHENTICATED),
        "outsider": (404, NOT_FOUND),
        "member": (403, FORBIDDEN_ROLE),
    }.get(role) or ((403, plan_required(org)) if plan not in ELIGIBLE else None)
    assert CANARY_KEY not in response.content.decode()
    if expected is None:
        assert response.status_code == 200
        assert response.json() == {"claudeApiKeySet": True}
        assert stored_key(org) == CANARY_KEY
        assert audit_actions(org) == [AuditAction.KEY_SAVED]
    else:
        assert (response.status_code, error_of(response)) == expected
        assert not ClaudeApiKey.objects.exists()
        assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("role", ROLES)
def test_delete_key_is_for_owners_and_admins_on_any_plan(people, role, plan):
    org, user = people(plan, role)
    store_key(org, GOOD_KEY)

    response = api_delete_key(console(), org.slug, **auth_for(user))

    expected = {
        "anonymous": (401, UNAUTHENTICATED),
        "outsider": (404, NOT_FOUND),
        "member": (403, FORBIDDEN_ROLE),
    }.get(role)
    if expected is None:
        assert response.status_code == 200
        assert response.json() == {"claudeApiKeySet": False}
        assert not ClaudeApiKey.objects.exists()
        assert audit_actions(org) == [AuditAction.KEY_REMOVED]
    else:
        assert (response.status_code, error_of(response)) == expected
        assert stored_key(org) == GOOD_KEY
        assert not AuditEvent.objects.exists()


class TestCheckOrder:
    """Authentication, membership, role, plan, then the key's form: each case breaks all later rules too."""

    def test_authentication_comes_before_membership(self, world):
        response = api_put_key(console(), "no-such-org", {"apiKey": "junk"})

        assert (response.status_code, error_of(response)) == (401, UNAUTHENTICATED)

    def test_a_bad_token_is_unauthenticated_not_not_found(self, world):
        response = api_put_key(console(), "no-such-org", {"apiKey": "junk"}, Authorization="Bearer opsn_forged")

        assert (response.status_code, error_of(response)) == (401, UNAUTHENTICATED)

    def test_membership_comes_before_role(self, world):
        response = api_put_key(console(), "globex", {"apiKey": "junk"}, **bearer(world.acme_member))

        assert (response.status_code, error_of(response)) == (404, NOT_FOUND)

    def test_role_comes_before_plan(self, world):
        response = api_put_key(console(), "globex", {"apiKey": "junk"}, **bearer(world.globex_member))

        assert (response.status_code, error_of(response)) == (403, FORBIDDEN_ROLE)

    def test_plan_comes_before_the_keys_form(self, world):
        response = api_put_key(console(), "globex", {"apiKey": "junk"}, **bearer(world.globex_admin))

        assert (response.status_code, error_of(response)) == (403, plan_required(world.globex))

    def test_the_plan_refusal_names_the_organisations_plan_and_the_way_out_as_settings_does(self, world):
        # The documentation's words name a plan Opsion does not sell ("Enterprise"): an API client's user is told
        # which plan the organisation is on and what to do, in the words Settings shows beside the key's field.
        response = api_put_key(console(), "globex", {"apiKey": GOOD_KEY}, **bearer(world.globex_admin))

        assert error_of(response) == {
            "code": "byom_plan_required",
            "message": f"{PLAN_REFUSAL}. Globex Payments is on the Professional plan. Upgrade to Institutional to use "
            "your own key.",
        }

    def test_the_keys_form_comes_last(self, world):
        response = api_put_key(console(), "acme", {"apiKey": "junk"}, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response)["code"] == "claude_api_key_malformed"

    def test_an_unknown_slug_looks_exactly_like_an_org_you_are_not_in(self, world):
        headers = bearer(world.acme_admin)

        unknown = api_put_key(console(), "no-such-org", {"apiKey": GOOD_KEY}, **headers)
        foreign = api_put_key(console(), "initech", {"apiKey": GOOD_KEY}, **headers)

        assert unknown.status_code == foreign.status_code == 404
        assert but_the_request_id(unknown) == but_the_request_id(foreign)
        assert but_the_request_id(get_settings("initech", **headers)) == but_the_request_id(
            get_settings("no-such-org", **headers)
        )


class TestJudgedAsItIsNow:
    """Staff may demote the member or change the plan after a request's membership was read: the key write is judged
    on the membership and plan as they are when it writes, on every database (tests/reliability/test_key_write_races.py
    interleaves the two on PostgreSQL)."""

    def test_a_save_by_an_admin_demoted_since_their_membership_was_read_is_refused(self, world):
        membership = world.membership(world.acme_admin, world.acme)
        Membership.objects.filter(pk=membership.pk).update(role=Role.MEMBER)

        with pytest.raises(RoleRequired):
            org_services.claude_api_key_set(membership=membership, raw_key=GOOD_KEY, ip=None)
        assert not ClaudeApiKey.objects.exists()
        assert not AuditEvent.objects.exists()

    def test_a_save_after_the_plan_was_downgraded_since_the_membership_was_read_is_refused(self, world):
        membership = world.membership(world.acme_admin, world.acme)
        Organisation.objects.filter(pk=world.acme.pk).update(plan=Plan.PROFESSIONAL)

        with pytest.raises(PlanRequired):
            org_services.claude_api_key_set(membership=membership, raw_key=GOOD_KEY, ip=None)
        assert not ClaudeApiKey.objects.exists()

    def test_a_removal_by_an_admin_demoted_since_their_membership_was_read_is_refused(self, world):
        store_key(world.acme, GOOD_KEY)
        membership = world.membership(world.acme_admin, world.acme)
        Membership.objects.filter(pk=membership.pk).update(role=Role.MEMBER)

        with pytest.raises(RoleRequired):
            org_services.claude_api_key_remove(membership=membership, ip=None)
        assert stored_key(world.acme) == GOOD_KEY


class TestShapes:
    def test_settings_reflect_a_saved_key_and_its_status(self, world):
        headers = bearer(world.acme_member)
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_admin))

        body = get_settings("acme", **headers).json()

        assert body["claudeApiKeySet"] is True
        assert body["claudeApiKeyStatus"] == "unverified"
        assert GOOD_KEY not in str(body)

    def test_settings_say_a_key_left_by_a_downgrade_is_not_used_and_is_again_when_the_plan_returns(self, world):
        # Before, a downgraded organisation's settings said only `claudeApiKeyStatus: "invalid"` beside
        # `byomAvailable: false`, as if a rejected key still failed its queries; they run on the platform key.
        headers = bearer(world.acme_member)
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_admin))
        row = ClaudeApiKey.objects.get()
        org_services.claude_api_key_mark(org=world.acme, status=KeyStatus.INVALID, saved_at=row.saved_at)
        assert get_settings("acme", **headers).json()["claudeApiKeyInUse"] is True

        world.acme.plan = Plan.PROFESSIONAL
        world.acme.save()
        body = get_settings("acme", **headers).json()

        assert (body["byomAvailable"], body["claudeApiKeySet"], body["claudeApiKeyInUse"]) == (False, True, False)
        assert body["claudeApiKeyStatus"] == "invalid"  # what Anthropic said when it was last used, kept
        world.acme.plan = Plan.INSTITUTIONAL
        world.acme.save()
        assert get_settings("acme", **headers).json()["claudeApiKeyInUse"] is True

    def test_saving_again_replaces_the_key(self, world):
        headers = bearer(world.acme_owner)
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **headers)

        response = api_put_key(console(), "acme", {"apiKey": OTHER_KEY}, **headers)

        assert response.json() == {"claudeApiKeySet": True}
        assert ClaudeApiKey.objects.count() == 1
        assert stored_key(world.acme) == OTHER_KEY
        assert ClaudeApiKey.objects.get().saved_by == world.acme_owner

    def test_replacing_a_rejected_key_starts_its_record_over(self, world):
        # "Paste a corrected key and save again": the new key is not the one Anthropic rejected.
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_owner))
        rejected = ClaudeApiKey.objects.get()
        org_services.claude_api_key_mark(org=world.acme, status=KeyStatus.INVALID, saved_at=rejected.saved_at)

        api_put_key(console(), "acme", {"apiKey": OTHER_KEY}, **bearer(world.acme_admin))

        assert get_settings("acme", **bearer(world.acme_member)).json()["claudeApiKeyStatus"] == "unverified"
        row = ClaudeApiKey.objects.get()
        assert (row.status, row.status_changed_at, row.saved_by) == (KeyStatus.UNVERIFIED, None, world.acme_admin)
        assert row.saved_at > rejected.saved_at

    def test_delete_is_idempotent(self, world):
        headers = bearer(world.acme_admin)
        store_key(world.acme, GOOD_KEY)

        first = api_delete_key(console(), "acme", **headers)
        second = api_delete_key(console(), "acme", **headers)

        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == {"claudeApiKeySet": False}
        assert audit_actions(world.acme) == [AuditAction.KEY_REMOVED]

    def test_a_downgraded_org_keeps_its_key_until_an_admin_deletes_it(self, world):
        headers = bearer(world.acme_admin)
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **headers)
        world.acme.plan = Plan.PROFESSIONAL
        world.acme.save()

        body = get_settings("acme", **headers).json()
        assert (body["byomAvailable"], body["claudeApiKeySet"]) == (False, True)
        refused = api_put_key(console(), "acme", {"apiKey": OTHER_KEY}, **headers)
        assert error_of(refused) == plan_required(world.acme)
        assert stored_key(world.acme) == GOOD_KEY

        assert api_delete_key(console(), "acme", **headers).json() == {"claudeApiKeySet": False}
        assert not ClaudeApiKey.objects.exists()

    def test_the_audit_event_records_the_api_as_its_channel(self, world):
        console().put(
            "/api/v1/orgs/acme/settings/claude-api-key",
            data={"apiKey": GOOD_KEY},
            content_type="application/json",
            headers=bearer(world.acme_admin),
            REMOTE_ADDR="192.0.2.44",
        )

        event = AuditEvent.objects.get()
        assert (event.actor, event.ip, event.via) == (world.acme_admin, "192.0.2.44", "api")

    def test_a_removal_through_the_api_is_audited_with_the_api_as_its_channel_and_where_from(self, world):
        store_key(world.acme, GOOD_KEY)

        api_delete_key(console(REMOTE_ADDR="192.0.2.45"), "acme", **bearer(world.acme_owner))

        event = AuditEvent.objects.get()
        assert (event.action, event.actor, event.ip, event.via) == (
            AuditAction.KEY_REMOVED,
            world.acme_owner,
            "192.0.2.45",
            "api",
        )


class TestInvalidRequests:
    @pytest.mark.parametrize(
        "body",
        ["this is not json", "{", '["sk-ant-x"]', "", "null"],
        ids=["text", "truncated", "array", "empty", "null"],
    )
    def test_a_body_that_is_not_a_json_object_is_an_invalid_request(self, world, body):
        response = api_put_key(console(), "acme", body, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_request"
        assert not ClaudeApiKey.objects.exists()

    def test_a_missing_api_key_field_is_an_invalid_request(self, world):
        response = api_put_key(console(), "acme", {}, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response) == {"code": "invalid_request", "message": "The field `apiKey` is required."}
        assert not ClaudeApiKey.objects.exists()

    @pytest.mark.parametrize("misnamed", ["api_key", "apikey", "ApiKey"])
    def test_a_key_sent_under_another_name_is_named_as_unknown_beside_the_field_required(self, world, misnamed):
        # "`apiKey` is required" alone, to a client that sent a key, reads as though its body were lost: the field it
        # did send is named, as any field the body does not take is, and so is the one to send instead.
        response = api_put_key(console(), "acme", {misnamed: GOOD_KEY}, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response) == {
            "code": "invalid_request",
            "message": f"The field `{misnamed}` is unknown: send only the fields the OpenAPI document lists for this "
            "body (names are case-sensitive). The field `apiKey` is required.",
        }
        assert GOOD_KEY not in response.content.decode()
        assert not ClaudeApiKey.objects.exists()

    @pytest.mark.parametrize("value", [None, 42, ["sk-ant"], {"key": "sk-ant"}], ids=["null", "number", "list", "dict"])
    def test_an_api_key_that_is_not_a_string_is_an_invalid_request(self, world, value):
        response = api_put_key(console(), "acme", {"apiKey": value}, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_request"
        assert not ClaudeApiKey.objects.exists()

    @pytest.mark.parametrize(
        ("body", "unknown"),
        [
            ({"apiKey": GOOD_KEY, "apikey": OTHER_KEY}, "apikey"),
            ({"apiKey": GOOD_KEY, "organisation": "globex"}, "organisation"),
            ({"apiKey": GOOD_KEY, "payload": {"apiKey": OTHER_KEY}}, "payload"),  # ninja's own name for the body
            ({"apiKey": GOOD_KEY, "": GOOD_KEY}, ""),
        ],
        ids=["another-case", "another-field", "payload", "empty-name"],
    )
    def test_a_field_the_body_does_not_take_is_refused_by_name_not_ignored(self, world, body, unknown):
        # Ignoring it would leave a client that misspelt or misplaced something believing it was acted on.
        response = api_put_key(console(), "acme", body, **bearer(world.acme_admin))

        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == "invalid_request"
        assert error["message"].startswith(f"The field `{unknown}` is unknown"), error["message"]
        assert GOOD_KEY not in response.content.decode() and OTHER_KEY not in response.content.decode()
        assert not ClaudeApiKey.objects.exists() and not AuditEvent.objects.exists()

    def test_a_field_the_body_does_not_take_is_named_beside_a_field_of_the_wrong_type(self, world):
        # The unknown field must be named whatever else is wrong: told only of `apiKey`, a client fixes it and meets
        # a second refusal for what the first could have named. A key in the unknown field's name stays redacted.
        body = {"apiKey": 42, CANARY_KEY: GOOD_KEY}
        response = api_put_key(console(), "acme", body, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response) == {
            "code": "invalid_request",
            "message": "The field `sk-ant-[redacted]` is unknown: send only the fields the OpenAPI document lists for "
            "this body (names are case-sensitive). The field `apiKey` is not valid: Input should be a valid string.",
        }
        assert CANARY_KEY[13:45] not in response.content.decode() and GOOD_KEY not in response.content.decode()
        assert not ClaudeApiKey.objects.exists() and not AuditEvent.objects.exists()

    def test_a_field_sent_twice_in_the_body_is_refused_by_name_not_read_as_its_last_value(self, world):
        # JSON lets an object name a field twice and leaves its meaning open; Python reads the last. A client that
        # merged a default body with its own (a stale key and the new one, say) must not have either saved unasked.
        body = f'{{"apiKey": "{OTHER_KEY}", "apiKey": "{GOOD_KEY}"}}'
        response = api_put_key(console(), "acme", body, **bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response) == {
            "code": "invalid_request",
            "message": "The field `apiKey` is repeated: send each field once.",
        }
        assert not ClaudeApiKey.objects.exists() and not AuditEvent.objects.exists()


class TestSessionAuthentication:
    def test_a_signed_in_browser_can_read_settings_without_a_token(self, world):
        response = console(world.acme_member).get("/api/v1/orgs/acme/settings")

        assert response.status_code == 200
        assert response.json()["role"] == "member"

    def test_session_writes_without_the_csrf_header_are_refused_in_our_error_shape(self, world):
        store_key(world.acme, GOOD_KEY)
        client = console(world.acme_admin, enforce_csrf_checks=True)
        client.get("/orgs/acme/settings/")  # the browser holds the CSRF cookie but does not echo it

        put = api_put_key(client, "acme", {"apiKey": OTHER_KEY})
        delete = api_delete_key(client, "acme")

        for response in (put, delete):
            assert response.status_code == 403
            assert error_of(response)["code"] == "csrf_failed"
        assert stored_key(world.acme) == GOOD_KEY
        assert not AuditEvent.objects.exists()

    @pytest.mark.parametrize(
        ("headers", "says"),
        [
            (
                {"Origin": "https://elsewhere.example"},
                "the request's `Origin` is not this server's: the API answers no page of another origin",
            ),
            ({"secure": True}, "a session write over HTTPS needs a `Referer` header naming this server"),
        ],
        ids=["another-origin", "https-without-referer"],
    )
    def test_a_session_write_sending_its_csrf_token_is_told_what_else_was_wrong(self, world, headers, says):
        # Told to send the X-CSRFToken header it had sent, a client (a script on the session, a page of another
        # origin) would look for the fault in the one place it is not.
        client = console(world.acme_admin, enforce_csrf_checks=True)
        client.get("/orgs/acme/settings/")
        csrf = {"X-CSRFToken": client.cookies["csrftoken"].value}
        headers = dict(headers)  # the parametrize case's own dict, shared by a second collection of this file
        secure = headers.pop("secure", False)

        response = client.delete(KEY_API.format("acme"), headers=csrf | headers, secure=secure)

        assert response.status_code == 403
        assert error_of(response) == {"code": "csrf_failed", "message": f"CSRF check failed: {says}."}

    def test_session_writes_with_the_csrf_header_go_through(self, world):
        client = console(world.acme_admin, enforce_csrf_checks=True)
        client.get("/orgs/acme/settings/")
        csrf = {"X-CSRFToken": client.cookies["csrftoken"].value}

        put = api_put_key(client, "acme", {"apiKey": GOOD_KEY}, **csrf)
        delete = api_delete_key(client, "acme", **csrf)

        assert put.json() == {"claudeApiKeySet": True}
        assert delete.json() == {"claudeApiKeySet": False}
        assert audit_actions(world.acme) == [AuditAction.KEY_SAVED, AuditAction.KEY_REMOVED]

    def test_a_write_without_valid_credentials_is_told_to_authenticate_not_that_csrf_failed(self, world):
        # With the CSRF check on, as a real client meets it (Django's test client skips it by default): a write
        # with no session is told what to send, whether it sent no token, an unknown one or an expired one.
        client = console(enforce_csrf_checks=True)
        _, expired = org_services.api_token_create(
            user=world.acme_admin, name="old", expires_in_days=1, now=timezone.now() - timedelta(days=2)
        )

        anonymous = api_put_key(client, "acme", {"apiKey": GOOD_KEY})
        forged = api_delete_key(client, "acme", Authorization="Bearer opsn_forged")
        late = api_put_key(client, "acme", {"apiKey": GOOD_KEY}, Authorization=f"Bearer {expired}")

        assert (anonymous.status_code, error_of(anonymous)) == (401, UNAUTHENTICATED)
        assert anonymous["WWW-Authenticate"] == "Bearer"
        assert (forged.status_code, error_of(forged)) == (401, UNAUTHENTICATED)
        assert forged["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert late.status_code == 401
        assert error_of(late)["code"] == "unauthenticated"
        assert "This API token expired on" in error_of(late)["message"]
        assert not ClaudeApiKey.objects.exists() and not AuditEvent.objects.exists()

    def test_token_writes_need_no_csrf(self, world):
        client = console(enforce_csrf_checks=True)

        response = api_put_key(client, "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_admin))

        assert response.json() == {"claudeApiKeySet": True}

    def test_signing_out_ends_api_access(self, world):
        client = console(world.acme_admin)
        client.post("/accounts/logout/")

        response = client.get("/api/v1/orgs/acme/settings")

        assert (response.status_code, error_of(response)) == (401, UNAUTHENTICATED)


def test_every_api_answer_is_json_of_one_content_type_whichever_app_or_error_made_it(world, fake_anthropic):
    # A strict client compares the media type: the settings' answers said "; charset=utf-8", the insights' answers
    # and every error did not.
    client = token_client(world.acme_admin)
    answers = [
        client.get("/api/v1/orgs/acme/settings"),
        client.get("/api/v1/orgs/acme/audit-events"),
        client.get("/api/v1/orgs/acme/insights/usage"),
        client.get("/api/v1/orgs/acme/insights/queries"),
        client.post("/api/v1/orgs/acme/insights/queries", {"query": "What is MiCAR?"}, content_type="application/json"),
        client.get("/api/v1/orgs/acme/insights/queries/999999"),
        client.get("/api/v1/orgs/nope/settings"),
        client.post("/api/v1/orgs/acme/insights/queries", "{", content_type="application/json"),
        Client().get("/api/v1/orgs/acme/settings"),
        client.get("/api/v1/orgs"),
        Client().get("/api/v1/openapi.json"),  # the document said `application/json` alone
        Client().head("/api/v1/openapi.json"),
        Client().delete("/api/v1/openapi.json"),
    ]

    assert [(a.status_code, a["Content-Type"]) for a in answers] == [
        (status, "application/json; charset=utf-8")
        for status in (200, 200, 200, 200, 200, 404, 404, 400, 401, 200, 200, 200, 405)
    ]


class TestOpenApi:
    def test_the_schema_is_served_and_lists_the_settings_paths(self, db):
        response = console().get("/api/v1/openapi.json")

        assert response.status_code == 200
        paths = response.json()["paths"]
        assert set(paths["/api/v1/orgs/{slug}/settings"]) >= {"get"}
        assert set(paths["/api/v1/orgs/{slug}/settings/claude-api-key"]) >= {"put", "delete"}

    def test_every_component_the_schema_declares_is_used_by_an_operation(self, db):
        # A generated client makes a type of every component: one no operation uses (ninja declares the query
        # parameters' own schema though it lists each parameter on its own) is a type no one can use.
        schema = console().get("/api/v1/openapi.json").json()
        components = schema["components"]["schemas"]
        used = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schema)))

        assert set(components) == used
        assert {"AnswerOut", "AuditEventsOut", "HistoryOut", "ErrorOut"} <= used

    def test_each_operation_has_a_stable_name_of_its_own_for_generated_clients(self, db):
        # Not ninja's, made of module and function names (orgs_api_get_settings): a refactoring would rename a
        # client's methods. These are part of the API: changing one breaks the clients built from the document.
        schema = console().get("/api/v1/openapi.json").json()
        names = {
            (method, path): operation["operationId"]
            for path, operations in schema["paths"].items()
            for method, operation in operations.items()
        }

        base = "/api/v1/orgs/{slug}"
        assert names == {
            ("get", "/api/v1/orgs"): "listOrganisations",
            ("get", f"{base}/settings"): "getSettings",
            ("get", f"{base}/audit-events"): "listAuditEvents",
            ("put", f"{base}/settings/claude-api-key"): "setClaudeApiKey",
            ("delete", f"{base}/settings/claude-api-key"): "removeClaudeApiKey",
            ("post", f"{base}/insights/queries"): "askQuestion",
            ("get", f"{base}/insights/usage"): "getUsage",
            ("get", f"{base}/insights/queries"): "listQueries",
            ("get", f"{base}/insights/queries/{{query_id}}"): "getQuery",
        }

    def test_the_schema_documents_the_request_and_response_fields(self, db):
        schema = console().get("/api/v1/openapi.json").json()
        components = schema["components"]["schemas"]

        assert set(components["KeyIn"]["properties"]) == {"apiKey"}
        assert set(components["SettingsOut"]["properties"]) == {
            "organisation",
            "role",
            "byomAvailable",
            "claudeApiKeySet",
            "claudeApiKeyInUse",
            "claudeApiKeyStatus",
        }
        # A client reading the status of a key left behind by a downgrade is told it is not used.
        settings_out = components["SettingsOut"]["properties"]
        assert "platform key" in settings_out["claudeApiKeyInUse"]["description"]
        assert "claudeApiKeyInUse" in settings_out["claudeApiKeyStatus"]["description"]
        assert set(components["ErrorOut"]["properties"]) == {"error", "requestId"}

    def test_the_schema_says_the_bodies_take_no_other_fields(self, db):
        # A client generated from the document then cannot send one the API would refuse.
        components = console().get("/api/v1/openapi.json").json()["components"]["schemas"]

        for body in ("KeyIn", "QueryIn"):
            assert components[body]["additionalProperties"] is False, body

    def test_the_schema_states_the_form_a_key_and_a_question_must_have(self, db):
        # A client generated from the document can check these before sending, instead of learning them by a 400.
        components = console().get("/api/v1/openapi.json").json()["components"]["schemas"]
        key, query = components["KeyIn"]["properties"]["apiKey"], components["QueryIn"]["properties"]["query"]

        assert re.fullmatch(key["pattern"], GOOD_KEY) and not re.fullmatch(key["pattern"], "sk-ant-has a space")
        assert not re.fullmatch(key["pattern"], "sk-ant-short") and not re.fullmatch(key["pattern"], "sk-" + "a" * 50)
        assert "sk-ant-" in key["description"]
        assert query["maxLength"] == 4000 and "4,000 characters" in query["description"]
        # An empty question is a 400 ("Type a question first."): the document says a question holds something.
        assert query["minLength"] == 1

    STOP_REASONS = {"complete", "max_tokens", "refusal"}

    def test_the_schema_lists_the_values_of_every_enumerated_field(self, db):
        components = console().get("/api/v1/openapi.json").json()["components"]["schemas"]

        def values(schema: str, field: str) -> set:
            prop = components[schema]["properties"][field]
            options = prop.get("anyOf", [prop])
            return {v for option in options for v in option.get("enum", [])}

        assert values("OrganisationOut", "plan") == {"starter", "professional", "institutional", "custom"}
        assert values("AuditEventOut", "action") == {
            "claude_api_key.saved",
            "claude_api_key.replaced",
            "claude_api_key.removed",
            "organisation.created",
            "organisation.plan_changed",
            "membership.added",
            "membership.role_changed",
            "membership.removed",
            "membership.deactivated",
            "membership.reactivated",
        }
        assert values("SettingsOut", "role") == values("MembershipOut", "role") == {"owner", "admin", "member"}
        assert values("MembershipOut", "plan") == values("OrganisationOut", "plan")
        assert values("SettingsOut", "claudeApiKeyStatus") == {"unverified", "valid", "invalid", "unreadable"}
        assert values("AnswerOut", "keySource") == values("UsageOut", "keySource") == {"platform", "organisation"}
        assert values("HistoryItem", "outcome") == {"pending", "answered", "failed"}
        assert values("AnswerOut", "stopReason") == values("HistoryItem", "stopReason") == self.STOP_REASONS

    def test_the_schema_says_what_each_way_an_answer_ends_means(self, db):
        # A client that shows `answer` must know it may be incomplete: the field says so where it is declared.
        components = console().get("/api/v1/openapi.json").json()["components"]["schemas"]

        for schema in ("AnswerOut", "HistoryItem"):
            description = components[schema]["properties"]["stopReason"]["description"]
            assert all(f"`{value}`" in description for value in self.STOP_REASONS), schema
            assert "cut short" in description and "declined" in description, schema
        assert "stopReason" in components["AnswerOut"]["required"]

    def test_the_schema_says_what_each_number_of_the_rolling_window_means(self, db):
        # A client showing usage must know `used` can be over `limit` (queries counted under a higher limit stay
        # counted when it falls), that `remaining` stops at 0, and what `resetSeconds` counts down to.
        components = console().get("/api/v1/openapi.json").json()["components"]["schemas"]
        usage, window = components["UsageOut"]["properties"], components["RateLimitOut"]["properties"]

        for schema, fields in (("UsageOut", usage), ("RateLimitOut", window)):
            assert all(field.get("description") for field in fields.values()), schema
        assert "exceed `limit`" in usage["used"]["description"]
        assert "removed" in usage["used"]["description"] and "downgraded" in usage["used"]["description"]
        assert "never below 0" in usage["remaining"]["description"] == window["remaining"]["description"]
        assert "Seconds until" in usage["resetSeconds"]["description"] == window["resetSeconds"]["description"]
        assert "0 when none counts" in usage["resetSeconds"]["description"]
        assert "20" in usage["limit"]["description"] and "200" in usage["limit"]["description"]
        assert "seconds" in usage["windowSeconds"]["description"]

    def test_operations_without_a_body_or_parameters_name_every_400_any_request_can_meet(self, db):
        # A NUL in the query string, a Host not served, and more than 1,000 parameters in it: each a 400
        # `invalid_request` before the operation runs, which its description is the client's only word on.
        paths = console().get("/api/v1/openapi.json").json()["paths"]

        for path, ops in paths.items():
            for method, op in ops.items():
                if method in ("put", "post") or any(p["in"] == "query" for p in op.get("parameters", [])):
                    continue  # their 400 is named by what the body or parameters may not be
                description = op["description"]
                for cause in ("a NUL in the query string", "`Host`", "more than 1,000 parameters"):
                    assert cause in description, (method, path, cause)

    def test_the_schema_names_every_error_code_a_failed_query_records(self, db):
        # A client polling getQuery after a dropped connection switches on `errorCode`; `interrupted`, recorded for
        # an answer cut off by a dead worker, is no refusal any operation answers with, so only this says it exists.
        description = (
            console()
            .get("/api/v1/openapi.json")
            .json()["components"]["schemas"]["HistoryItem"]["properties"]["errorCode"]["description"]
        )

        for refusal in (KeyInvalid, KeyUnreadable, UpstreamRateLimited, UpstreamBilling, InsightsUnavailable):
            assert f"`{refusal.code}`" in description, refusal.code
        assert f"`{INTERRUPTED}`" in description

    def test_the_schema_types_each_timestamp_as_a_date_time(self, db):
        # A generated client parses these into datetimes (they are ISO 8601 with an offset), not leaves them strings.
        components = console().get("/api/v1/openapi.json").json()["components"]["schemas"]

        for schema in ("AuditEventOut", "HistoryItem"):
            created_at = components[schema]["properties"]["createdAt"]
            assert (created_at["type"], created_at["format"]) == ("string", "date-time"), schema

    @pytest.mark.parametrize("path", ["/api/v1/orgs/{slug}/audit-events", "/api/v1/orgs/{slug}/insights/queries"])
    def test_the_schema_declares_after_an_optional_id_never_null_as_the_operation_takes_it(self, world, path):
        # Left out for the first page; `?after=null` is no id and is refused, so the document must not call it
        # nullable, or a client generated from it would send the null it allows and get a 400.
        operation = console().get("/api/v1/openapi.json").json()["paths"][path]["get"]
        (after,) = [parameter for parameter in operation["parameters"] if parameter["name"] == "after"]
        assert after["required"] is False
        assert {k: after["schema"].get(k) for k in ("type", "minimum", "anyOf", "default")} == {
            "type": "integer",
            "minimum": 1,
            "anyOf": None,
            "default": None,
        }
        url = path.format(slug="acme")
        assert token_client(world.acme_admin).get(url).status_code == 200
        refused = token_client(world.acme_admin).get(url, {"after": "null"})
        assert refused.status_code == 400 and error_of(refused)["code"] == "invalid_request"

    @pytest.mark.parametrize("path", ["/api/v1/orgs/{slug}/audit-events", "/api/v1/orgs/{slug}/insights/queries"])
    @pytest.mark.parametrize(
        ("value", "why"),
        [
            ("null", "Input should be a valid integer, unable to parse string as an integer"),
            ("0", "Input should be greater than or equal to 1"),
        ],
    )
    def test_a_malformed_after_is_named_as_the_parameter_the_document_lists(self, world, path, value, why):
        # Named as `limit` and `offset` are: not by the parameter schema's Python name and pydantic's union member
        # (`page.after.constrained-int`), which a client reading the message cannot map to anything it sent.
        refused = token_client(world.acme_admin).get(path.format(slug="acme"), {"after": value})

        message = error_of(refused)["message"]
        assert message.startswith(f"The parameter `after` is not valid: {why}"), message

    def test_each_operation_documents_the_error_codes_it_can_answer_with(self, db):
        paths = console().get("/api/v1/openapi.json").json()["paths"]
        documented = {
            (method, path): op.get("description", "") for path, ops in paths.items() for method, op in ops.items()
        }
        expected = {
            ("put", "/api/v1/orgs/{slug}/settings/claude-api-key"): [
                RoleRequired,
                PlanRequired,
                TooManyAttempts,
                KeyMalformed,
            ],
            ("delete", "/api/v1/orgs/{slug}/settings/claude-api-key"): [RoleRequired, TooManyAttempts],
            ("get", "/api/v1/orgs/{slug}/audit-events"): [RoleRequired],
            ("post", "/api/v1/orgs/{slug}/insights/queries"): [
                RateLimited,
                KeyInvalid,
                KeyUnreadable,
                UpstreamRateLimited,
                UpstreamBilling,
                InsightsUnavailable,
                IdempotencyKeyInUse,
                IdempotencyKeyReused,
            ],
        }

        for operation, refusals in expected.items():
            for refusal in refusals:
                assert f"`{refusal.code}` ({refusal.status}" in documented[operation], (operation, refusal.code)
        for (method, path), description in documented.items():
            assert "`unauthenticated` (401)" in description, path
            # Every operation that names an organisation, and only those, can be refused it.
            assert ("`not_found` (404" in description) is ("{slug}" in path), path
            # Only what each can answer: a body's errors where there is a body, CSRF's on writes.
            assert ("`unsupported_media_type` (415)" in description) is (method in ("put", "post")), (method, path)
            assert ("`csrf_failed` (403" in description) is (method != "get"), (method, path)
            if method in ("put", "post"):
                assert "415" in paths[path][method]["responses"], (method, path)

    def test_each_error_status_an_operation_lists_has_its_code_in_the_description(self, db):
        # A client generated from the document switches on `error.code`: for every error status listed, the
        # operation says which code comes with it, the statuses every operation shares included.
        paths = console().get("/api/v1/openapi.json").json()["paths"]

        for path, operations in paths.items():
            for method, operation in operations.items():
                description = operation["description"]
                for status in operation["responses"]:
                    if status != "200":
                        assert re.search(rf"`[a-z_]+` \({status}\b", description), (method, path, status)
                assert "`server_error` (500" in description and "`service_unavailable` (503" in description, path
                assert ("`payload_too_large` (413" in description) is ("413" in operation["responses"]), path

    def test_each_operation_lists_exactly_the_statuses_it_can_answer_with(self, db):
        paths = console().get("/api/v1/openapi.json").json()["paths"]
        every = {"200", "400", "401", "404", "500", "503"}  # 500: our failure; 503: the database unavailable
        expected = {
            ("get", "/api/v1/orgs"): every - {"404"},  # no organisation named, so none to be refused
            ("get", "/api/v1/orgs/{slug}/settings"): every,
            ("put", "/api/v1/orgs/{slug}/settings/claude-api-key"): every | {"403", "413", "415", "429"},
            ("delete", "/api/v1/orgs/{slug}/settings/claude-api-key"): every | {"403", "429"},
            ("post", "/api/v1/orgs/{slug}/insights/queries"): every | {"403", "409", "413", "415", "422", "429"},
            ("get", "/api/v1/orgs/{slug}/insights/queries"): every,
            ("get", "/api/v1/orgs/{slug}/insights/queries/{query_id}"): every,
            ("get", "/api/v1/orgs/{slug}/insights/usage"): every,
            ("get", "/api/v1/orgs/{slug}/audit-events"): every | {"403"},
        }

        listed = {(method, path): set(op["responses"]) for path, ops in paths.items() for method, op in ops.items()}

        assert listed == expected

    def test_each_operation_documents_the_headers_clients_read(self, db):
        paths = console().get("/api/v1/openapi.json").json()["paths"]

        def documented(method, path, status) -> dict:
            headers = paths[path][method]["responses"][status].get("headers", {})
            return {name: spec.get("required", False) for name, spec in headers.items()}

        queries, key = "/api/v1/orgs/{slug}/insights/queries", "/api/v1/orgs/{slug}/settings/claude-api-key"
        request_id = {"X-Request-ID": True}  # on every answer (tests/test_request_id.py checks every response has it)
        always = {"RateLimit-Policy": True, "RateLimit": True} | request_id
        assert documented("get", queries, "200") == always
        assert documented("post", queries, "200") == always | {"Idempotent-Replayed": False}  # on a replay only
        # Required where every answer of that status carries the header, whatever refused it; optional where a check
        # made before its value is known can answer with that status too. A retry's refusals (409, 422) and the
        # limits' (429) come after the organisation's lookup: the RateLimit fields are always on them. The 409 always
        # says when to look again; a 429 from Anthropic without a Retry-After of its own passes none on.
        assert documented("post", queries, "422") == always
        assert documented("post", queries, "409") == always | {"Retry-After": True}
        assert documented("post", queries, "429") == always | {"Retry-After": False}
        # Anthropic's 503 carries the RateLimit fields, the database's not; every 503 says when to retry.
        assert documented("post", queries, "503") == {
            "RateLimit-Policy": False,
            "RateLimit": False,
            "Retry-After": True,
            "X-Request-ID": True,
        }
        assert documented("get", "/api/v1/orgs/{slug}/insights/usage", "200") == always
        # Not on a malformed body's 400.
        assert documented("post", queries, "400") == {"RateLimit-Policy": False, "RateLimit": False} | request_id
        # The history's 400 for an `after` not among the member's queries there comes after the organisation's lookup.
        assert documented("get", queries, "400") == {"RateLimit-Policy": False, "RateLimit": False} | request_id
        # A key write's only 429 is the abuse guard's, which always says when the next write fits.
        assert documented("put", key, "429") == documented("delete", key, "429") == {"Retry-After": True} | request_id
        for path, ops in paths.items():
            for method in ops:
                assert documented(method, path, "401") == {"WWW-Authenticate": True} | request_id, (method, path)
                # The database unavailable (service_unavailable), on any operation: a 503 with Retry-After.
                assert documented(method, path, "503").get("Retry-After") is True, (method, path)


class TestAuditEvents:
    URL = "/api/v1/orgs/{}/audit-events"

    def test_owners_and_admins_read_the_audit_log_newest_first_in_the_documented_shape(self, world):
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_admin))
        org_services.claude_api_key_remove_as_staff(org=world.acme, staff_user=world.staff, ip="10.0.0.1")

        response = console().get(self.URL.format("acme"), headers=bearer(world.acme_owner))

        assert response.status_code == 200
        body = response.json()
        assert (body["limit"], body["offset"], body["hasMore"]) == (50, 0, False)
        removed, saved = body["items"]
        assert removed["id"] > saved["id"]
        assert {k: v for k, v in removed.items() if k not in ("id", "createdAt")} == {
            "action": "claude_api_key.removed",
            "description": "Claude API key removed",
            "actorEmail": "staff@opsion.test",
            "via": "admin",
            "ip": None,  # staff's own network stays with Opsion
        }
        assert (saved["action"], saved["via"], saved["ip"], saved["actorEmail"]) == (
            "claude_api_key.saved",
            "api",
            "127.0.0.1",  # the test client's address
            "admin@acme.test",
        )
        assert saved["createdAt"] <= removed["createdAt"]

    def test_a_key_replaced_through_the_api_is_listed_as_replaced(self, world):
        api_put_key(console(), "acme", {"apiKey": GOOD_KEY}, **bearer(world.acme_admin))
        api_put_key(console(), "acme", {"apiKey": OTHER_KEY}, **bearer(world.acme_owner))

        items = console().get(self.URL.format("acme"), headers=bearer(world.acme_owner)).json()["items"]

        assert [(i["action"], i["description"], i["actorEmail"]) for i in items] == [
            ("claude_api_key.replaced", "Claude API key replaced", "owner@acme.test"),
            ("claude_api_key.saved", "Claude API key saved", "admin@acme.test"),
        ]

    def test_it_pages_through_the_whole_log(self, world):
        AuditEvent.objects.bulk_create(
            AuditEvent(organisation=world.acme, action=AuditAction.KEY_SAVED, detail=f"event {i}") for i in range(5)
        )
        read = lambda **q: console().get(self.URL.format("acme"), q, headers=bearer(world.acme_admin)).json()  # noqa: E731

        first, last = read(limit=2), read(limit=2, offset=4)

        assert [i["description"] for i in first["items"]] == [
            "Claude API key saved: event 4",
            "Claude API key saved: event 3",
        ]
        assert first["hasMore"] is True
        assert [i["description"] for i in last["items"]] == ["Claude API key saved: event 0"] and last[
            "hasMore"
        ] is False
        exact = read(limit=5)  # the log ends exactly where the page does: no empty page after it
        assert len(exact["items"]) == 5 and exact["hasMore"] is False

    def test_an_offset_past_the_cap_is_refused_pointing_to_after(self, world):
        response = console().get(self.URL.format("acme"), {"offset": 1_000_001}, headers=bearer(world.acme_admin))

        assert response.status_code == 400
        assert error_of(response) == {
            "code": "invalid_request",
            "message": "The parameter `offset` is not valid: Input should be less than or equal to 1000000. "
            "To page deeper, pass `after`: the id of the last item you have.",
        }

    def test_paging_after_the_last_id_seen_neither_repeats_nor_skips_while_events_arrive(self, world):
        # Paging by offset through a log that grows at its head repeats what the head pushed down; `after` (the last
        # item's id) starts where the client left off, at any depth.
        at = timezone.now()  # two events at one instant: their order, and the page boundary between them, is by id
        AuditEvent.objects.bulk_create(
            AuditEvent(organisation=world.acme, action=AuditAction.KEY_SAVED, detail=f"event {i}", created_at=at)
            for i in range(5)
        )
        read = lambda **q: console().get(self.URL.format("acme"), q, headers=bearer(world.acme_admin)).json()  # noqa: E731

        pages = [read(limit=2)]
        AuditEvent.objects.create(organisation=world.acme, action=AuditAction.KEY_REMOVED)  # arrives mid-way
        while pages[-1]["hasMore"]:
            pages.append(read(limit=2, after=pages[-1]["items"][-1]["id"]))

        seen = [item["description"] for page in pages for item in page["items"]]
        assert seen == [f"Claude API key saved: event {i}" for i in (4, 3, 2, 1, 0)]
        assert [page["after"] for page in pages] == [None, *(page["items"][-1]["id"] for page in pages[:-1])]
        assert read(limit=2, after=pages[-1]["items"][-1]["id"]) == {
            "items": [],
            "limit": 2,
            "offset": 0,
            "after": pages[-1]["items"][-1]["id"],
            "hasMore": False,
        }

    def test_after_an_id_not_in_this_log_is_refused_whatever_it_names(self, world):
        globex = AuditEvent.objects.create(organisation=world.globex, action=AuditAction.KEY_SAVED)

        for after in (globex.pk, globex.pk + 1000):  # another organisation's event, or none at all: the same answer
            response = console().get(self.URL.format("acme"), {"after": after}, headers=bearer(world.acme_admin))
            assert response.status_code == 400
            assert error_of(response) == {
                "code": "invalid_request",
                "message": "`after` is not the id of an event in this audit log.",
            }

    def test_members_are_refused_and_outsiders_not_told_it_exists(self, world):
        member = console().get(self.URL.format("acme"), headers=bearer(world.acme_member))
        outsider = console().get(self.URL.format("acme"), headers=bearer(world.globex_owner))

        assert member.status_code == 403
        assert error_of(member) == {
            "code": "forbidden_role",
            "message": "Only an Owner or Admin of this organisation can read its audit log.",
        }
        assert outsider.status_code == 404 and error_of(outsider) == NOT_FOUND

    @pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"offset": 10**30}])
    def test_a_page_out_of_range_is_refused_with_400_json(self, world, query):
        response = console().get(self.URL.format("acme"), query, headers=bearer(world.acme_admin))

        assert response.status_code == 400 and error_of(response)["code"] == "invalid_request"


LISTS = ["/api/v1/orgs/acme/audit-events", "/api/v1/orgs/acme/insights/queries"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("unknown", ["cursor", "page", "Limit", "after_id"])
def test_a_list_refuses_a_parameter_it_does_not_take_by_name_rather_than_answer_the_first_page(world, path, unknown):
    # Ignored, a misspelt or guessed paging parameter (`?cursor=`, `?page=2`) is answered with the first page and
    # `hasMore: true` again and again: a client paging "until hasMore is false" never stops, and one asking for
    # `?Limit=5` is sent 20 or 50 items believing it got 5.
    AuditEvent.objects.bulk_create(
        AuditEvent(organisation=world.acme, action=AuditAction.KEY_SAVED, detail=f"event {i}") for i in range(3)
    )
    response = token_client(world.acme_admin).get(path, {"limit": 1, unknown: 2})

    assert response.status_code == 400, response.content
    assert error_of(response) == {
        "code": "invalid_request",
        "message": f"The parameter `{unknown}` is unknown: this list takes `limit`, `offset` and `after` "
        "(names are case-sensitive).",
    }


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("query", "repeated"),
    [
        ("limit=1&limit=2", "limit"),
        ("limit=1&limit=500", "limit"),  # the last value, out of range, would be refused as that
        ("offset=0&offset=1", "offset"),
        ("limit=1&after=1&after=2", "after"),
        ("page=2&page=3", "page"),
    ],
)
def test_a_list_refuses_a_repeated_parameter_by_name_rather_than_take_its_last_value(world, path, query, repeated):
    # Read as its last value, `?limit=1&limit=2` was answered with 2 items: a client that built the query string
    # from two sources (a default and an override, say) got a page it did not ask for, and no word of it.
    AuditEvent.objects.bulk_create(
        AuditEvent(organisation=world.acme, action=AuditAction.KEY_SAVED, detail=f"event {i}") for i in range(3)
    )
    response = token_client(world.acme_admin).get(f"{path}?{query}")

    assert response.status_code == 400, response.content
    assert error_of(response) == {
        "code": "invalid_request",
        "message": f"The parameter `{repeated}` is repeated: send each parameter once.",
    }


@pytest.mark.parametrize("path", LISTS)
def test_a_list_still_takes_every_parameter_it_documents(world, path):
    response = token_client(world.acme_admin).get(path, {"limit": 1, "offset": 0})

    assert response.status_code == 200, response.content


def test_api_answers_are_never_cached(world):
    response = get_settings("acme", **bearer(world.acme_admin))

    assert response["Cache-Control"] == "no-store"


def test_saving_through_the_api_never_logs_the_key(world, caplog):
    caplog.set_level("DEBUG")
    headers = bearer(world.acme_admin)

    api_put_key(console(), "acme", {"apiKey": CANARY_KEY}, **headers)
    api_put_key(console(), "acme", {"apiKey": CANARY_KEY + "\n"}, **headers)
    api_put_key(console(), "globex", {"apiKey": CANARY_KEY}, **bearer(world.globex_admin))
    api_delete_key(console(), "acme", **headers)

    assert "claude api key saved org=acme" in caplog.text
    assert CANARY_KEY not in caplog.text


def test_reading_the_settings_costs_three_queries_with_or_without_a_key(world, django_assert_num_queries):
    # Token, membership (+organisation, +stored key), the token's last use on its first call. Nothing
    # about the key (its saver, a second read of its row) is fetched for the API's answer.
    client = console()
    headers = bearer(world.acme_member)
    for key in (None, GOOD_KEY):
        if key:
            store_key(world.acme, key)
        with django_assert_num_queries(3):
            assert client.get("/api/v1/orgs/acme/settings", headers=headers).status_code == 200
        ApiToken.objects.update(last_used_at=None)


def test_being_opsion_staff_gives_no_key_rights_inside_an_organisation(world):
    # Staff rights live in the admin; in the product a staff member who is a Member is a Member.
    Membership.objects.create(user=world.staff, organisation=world.acme, role=Role.MEMBER)
    store_key(world.acme, GOOD_KEY)

    put = api_put_key(console(world.staff), "acme", {"apiKey": CANARY_KEY})
    delete = api_delete_key(console(world.staff), "acme")

    assert (put.status_code, error_of(put)) == (403, FORBIDDEN_ROLE)
    assert (delete.status_code, error_of(delete)) == (403, FORBIDDEN_ROLE)
    assert stored_key(world.acme) == GOOD_KEY
    assert not AuditEvent.objects.exists()
