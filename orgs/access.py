"""Answers "may this user do this to this organisation?" and nothing else."""

import re

from django.conf import settings
from django.http import Http404

from opsion.errors import NotFound, Refused
from orgs.models import Membership, Organisation


class RoleRequired(Refused):
    code, status = "forbidden_role", 403
    default_message = "Only an Owner or Admin of this organisation can change its Claude API key."


class PlanRequired(Refused):
    # Verbatim from the product documentation.
    code, status = "byom_plan_required", 403
    default_message = "Bring Your Own Model requires the Enterprise plan"

    @classmethod
    def of(cls, org: Organisation) -> "PlanRequired":
        """The refusal for `org`, on the console and the API alike: the documentation's words name a plan Opsion does
        not sell, so the organisation's plan and the documentation's way out follow them."""
        return cls(
            f"{cls.default_message}. {org.name} is on the {org.get_plan_display()} plan. Upgrade to Institutional to "
            "use your own key."
        )


# What Organisation.slug (a SlugField) can hold. Anything else names no organisation, and turning it away
# before the query keeps a NUL byte, which PostgreSQL refuses outright, away from the database.
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def membership_or_404(user, slug: str) -> Membership:
    """The user's membership of the organisation `slug`. Raises NotFound for outsiders and unknown slugs alike."""
    if not getattr(user, "is_authenticated", False) or not _SLUG.fullmatch(slug or ""):
        raise NotFound()
    # The key row (ciphertext only; it loads sealed) rides along in the same query, so the insights
    # path resolves its key without another round trip (docs/benchmarks.md).
    # get(), not first(): (user, organisation) is unique, and first()'s ORDER BY id would steer the
    # planner away from the unique index and cost the ORM a sort clause to build on every request.
    try:
        membership = Membership.objects.select_related("organisation", "organisation__claude_api_key").get(
            user=user, organisation__slug=slug
        )
    except Membership.DoesNotExist:
        raise NotFound() from None
    membership.user = user  # already loaded by authentication: spare the query
    return membership


def membership_or_http404(user, slug: str) -> Membership:
    """As membership_or_404, for console views: raises Http404."""
    try:
        return membership_or_404(user, slug)
    except NotFound:
        raise Http404("No such organisation.") from None


def require_key_manager(membership: Membership) -> None:
    """Raises RoleRequired unless the member is an Owner or Admin."""
    if not membership.can_manage:
        raise RoleRequired()


AUDIT_LOG_READERS = "Only an Owner or Admin of this organisation can read its audit log."


def can_read_audit_log(membership: Membership) -> bool:
    """The audit log is for those who manage the key."""
    return membership.can_manage


def require_audit_reader(membership: Membership) -> None:
    """The audit log is for those who manage the key. Raises RoleRequired."""
    if not can_read_audit_log(membership):
        raise RoleRequired(AUDIT_LOG_READERS)


def require_byom_admin(membership: Membership) -> None:
    """Role first, then plan. Raises RoleRequired or PlanRequired."""
    require_key_manager(membership)
    if not membership.organisation.allows_byom:
        raise PlanRequired.of(membership.organisation)


def can_see_operator_notices(user, membership: Membership | None) -> bool:
    """Notices about the server's own configuration: for Opsion staff, and in development (DEBUG on,
    where whoever signs in as an Owner or Admin runs the server) for Owners and Admins too. In
    production a customer's Owner can do nothing about the server's environment."""
    if getattr(user, "is_staff", False):
        return True
    return bool(settings.DEBUG and membership and membership.can_manage)


def landing_organisation(user) -> Organisation | None:
    """Where the home page (so signing in without a `next`) takes the user: the organisation they last opened
    in the console while they are still a member of it, else their first by name; None if they are in none."""
    memberships = Membership.objects.for_user(user)
    if user.last_organisation_id is not None:
        last = memberships.filter(organisation_id=user.last_organisation_id).first()
        if last is not None:
            return last.organisation
    membership = memberships.first()
    return membership.organisation if membership else None
