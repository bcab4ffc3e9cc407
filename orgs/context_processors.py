from django.urls import reverse

from orgs import access
from orgs.models import Membership


def organisations(request):
    """The signed-in user's organisations and the current one, for the header switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = list(Membership.objects.for_user(user))
    match = getattr(request, "resolver_match", None)
    slug = match.kwargs.get("slug") if match else None
    current = next((m for m in memberships if m.organisation.slug == slug), None)
    view_name = match.view_name if match else None
    switch = [(m, _same_kind_of_page(view_name, m)) for m in memberships]
    return {"nav_memberships": memberships, "nav_current": current, "nav_switch": switch}


def _same_kind_of_page(view_name: str | None, membership: Membership) -> str:
    """Where the switcher takes someone into `membership`'s organisation: the same kind of page as the one
    they are on (Settings, or the audit log where their role there lets them read it, else its Settings),
    and AI Insights from anywhere else. A token's confirmation or a form's answer is its Settings page."""
    slug = membership.organisation.slug
    if view_name == "orgs:audit_log" and access.can_read_audit_log(membership):
        return reverse("orgs:audit_log", args=[slug])
    if view_name and view_name.startswith("orgs:"):
        return reverse("orgs:settings", args=[slug])
    return reverse("insights:query", args=[slug])
