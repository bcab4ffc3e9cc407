from django.http import HttpRequest
from ninja import Router, Schema

from opsion.http import client_ip
from orgs import access, selectors, services

router = Router(tags=["settings"])


class ErrorBody(Schema):
    code: str
    message: str


class ErrorOut(Schema):
    error: ErrorBody


class OrganisationOut(Schema):
    slug: str
    name: str
    plan: str


class SettingsOut(Schema):
    organisation: OrganisationOut
    role: str
    byomAvailable: bool
    claudeApiKeySet: bool
    claudeApiKeyStatus: str | None


class KeyIn(Schema):
    apiKey: str


class KeySetOut(Schema):
    claudeApiKeySet: bool


ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut}


def _settings(membership) -> dict:
    org = membership.organisation
    state = selectors.claude_api_key_state(org)
    return {
        "organisation": {"slug": org.slug, "name": org.name, "plan": org.plan},
        "role": membership.role,
        "byomAvailable": org.allows_byom,
        "claudeApiKeySet": state.is_set,
        "claudeApiKeyStatus": state.status,
    }


@router.get("/{slug}/settings", response={200: SettingsOut, **ERRORS}, summary="Organisation settings")
def get_settings(request: HttpRequest, slug: str):
    return _settings(access.membership_or_404(request.auth, slug))


@router.put("/{slug}/settings/claude-api-key", response={200: KeySetOut, **ERRORS}, summary="Save the Claude API key")
def put_claude_api_key(request: HttpRequest, slug: str, payload: KeyIn):
    membership = access.membership_or_404(request.auth, slug)
    services.claude_api_key_set(membership=membership, raw_key=payload.apiKey, ip=client_ip(request), via="api")
    return {"claudeApiKeySet": True}


@router.delete(
    "/{slug}/settings/claude-api-key",
    response={200: KeySetOut, **ERRORS},
    summary="Remove the Claude API key",
)
def delete_claude_api_key(request: HttpRequest, slug: str):
    membership = access.membership_or_404(request.auth, slug)
    services.claude_api_key_remove(membership=membership, ip=client_ip(request), via="api")
    return {"claudeApiKeySet": False}
