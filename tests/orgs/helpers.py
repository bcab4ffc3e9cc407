"""Plain helpers for the organisation tests: plans and roles, stored keys, page and JSON probes."""

import re

from orgs.models import AuditEvent, ClaudeApiKey, Organisation, Plan

PLANS = list(Plan)
# Written out here, not read from orgs.models.BYOM_PLANS, so a plan wrongly made eligible there fails.
ELIGIBLE = {Plan.INSTITUTIONAL, Plan.CUSTOM}
ROLES = ["owner", "admin", "member", "outsider", "anonymous"]
MASKED = "sk-ant-••••••••••••••••"
CARD_HEADING = "AI Insights — Bring Your Own Model"
PLAN_REFUSAL = "Bring Your Own Model requires the Enterprise plan"


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
