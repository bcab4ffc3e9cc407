"""Plain helpers for the organisation tests: clients, tokens, stored keys, page and JSON probes."""

import json
import re

from django.test import Client

from orgs import services
from orgs.models import AuditEvent, ClaudeApiKey, Organisation, Plan

PLANS = list(Plan)
# Written out here, not read from orgs.models.BYOM_PLANS, so a plan wrongly made eligible there fails.
ELIGIBLE = {Plan.INSTITUTIONAL, Plan.CUSTOM}
ROLES = ["owner", "admin", "member", "outsider", "anonymous"]
MASKED = "sk-ant-••••••••••••••••"
CARD_HEADING = "AI Insights — Bring Your Own Model"
PLAN_REFUSAL = "Bring Your Own Model requires the Enterprise plan"


def console(user=None, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def bearer(user, name: str = "tests") -> dict:
    """Request headers carrying a fresh personal API token of `user`."""
    _, raw = services.api_token_create(user=user, name=name)
    return {"Authorization": f"Bearer {raw}"}


def api_put_key(client: Client, slug: str, body, **headers):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.put(
        f"/api/v1/orgs/{slug}/settings/claude-api-key", data=data, content_type="application/json", headers=headers
    )


def api_delete_key(client: Client, slug: str, **headers):
    return client.delete(f"/api/v1/orgs/{slug}/settings/claude-api-key", headers=headers)


def store_key(org: Organisation, key: str, *, by=None) -> ClaudeApiKey:
    """A key already at rest, as if saved earlier (possibly before a plan change)."""
    return ClaudeApiKey.objects.create(organisation=org, secret=key, saved_by=by)


def stored_key(org: Organisation) -> str | None:
    row = ClaudeApiKey.objects.filter(organisation=org).first()
    return row.secret.reveal() if row else None


def audit_actions(org: Organisation) -> list[str]:
    return list(AuditEvent.objects.filter(organisation=org).order_by("id").values_list("action", flat=True))


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]
