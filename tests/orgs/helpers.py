"""Plain helpers for the organisation tests: plans and roles, stored keys, page and JSON probes."""

import re
from html.parser import HTMLParser

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
    assert set(body) == {"error", "requestId"} and body["requestId"] == response["X-Request-ID"], body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]


def but_the_request_id(response) -> bytes:
    """The body, its own request's ID taken out: what tells one answer from another's."""
    return response.content.replace(response["X-Request-ID"].encode(), b"")


class _Form(HTMLParser):
    """The named fields of one form: what a browser would submit, untouched."""

    def __init__(self, form_id):
        super().__init__()
        self.form_id, self.inside, self.data, self.select, self.textarea = form_id, False, {}, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside:
            return
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.data[a["name"]] = a.get("value", "")
        elif tag == "select" and a.get("name"):
            self.select = a["name"]
            self.data.setdefault(a["name"], "")
        elif tag == "option" and self.select and "selected" in a:
            self.data[self.select] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        if tag == "form":
            self.inside = False


def form_data(page: str, form_id: str) -> dict:
    """What a browser posts for the form `form_id` on `page` as it stands (checked boxes, selected options)."""
    p = _Form(form_id)
    p.feed(page)
    return p.data
