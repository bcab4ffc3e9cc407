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
    return {"nav_memberships": memberships, "nav_current": current}
