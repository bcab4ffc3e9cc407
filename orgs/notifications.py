"""Security e-mails: what changed, on whose account or organisation, by whom and when, and what to do if it was not
expected. A customer's compliance team wants to hear of a change to its Claude API key from Opsion, not to find it
in the audit log weeks later; a user whose password was changed or who has a new API token, by someone else, or
whose tokens Opsion staff deleted, learns it here first.

Each e-mail is written on the request's thread (recipients, names, times: everything read from the database), kept
as a row of the outbox (orgs.outbox) in the change's own transaction, and handed to the mail thread (orgs.mailer) only
once the change commits: a write refused or rolled back tells no one of a change that did not happen, and one
committed is told even if the process dies before its mail thread sends it. Never a part of the key or of a token,
and no link but SUPPORT_URL: nothing in these e-mails, or in the rows kept of them, is worth stealing, and none
teaches people to follow a link in a security e-mail. Without EMAIL_URL Opsion sends none.
"""

from datetime import datetime

from django.conf import settings
from django.template.loader import render_to_string

from insights.ratelimit import Window, locked_out_words, window_on_platform_key, window_words
from orgs import outbox, selectors
from orgs.models import MANAGING_ROLES, ApiToken, AuditAction, KeyStatus, Organisation, User

VIA = {
    "console": "in the Opsion console",
    "api": "through the Opsion API (a personal API token)",
    "admin": "in Opsion's admin",
}
PASSWORD_CHANGED_HOW = {
    "console": "on its Change password page",
    "reset": "with a reset link",
    "staff": "by Opsion staff",
}


def key_changed(*, org: Organisation, actor, action: str, via: str, at: datetime) -> None:
    """Tell every active Owner and Admin of `org` that its key was saved, replaced or removed (`action`: KEY_SAVED,
    KEY_REPLACED or KEY_REMOVED, as the audit log says it), once the current transaction commits."""
    if not settings.EMAIL_CONFIGURED:
        return
    replaced = action == AuditAction.KEY_REPLACED
    saved = replaced or action == AuditAction.KEY_SAVED  # a key now in force, whether or not one was before
    verb = "replaced" if replaced else "saved" if saved else "removed"
    subject = f"Claude API key {verb} {'from' if verb == 'removed' else 'for'} {org.name}"
    by = f"Opsion staff ({actor.email})" if via == "admin" else _who(actor)
    context = {
        "org": org.name,
        "saved": saved,
        "replaced": replaced,
        "by": by,
        "via": VIA[via],
        "when": at,
        # A key left behind by a downgrade was not in use: its removal changes nothing for the queries.
        "in_use": org.allows_byom,
        "plan": org.get_plan_display(),
    }
    if not saved and org.allows_byom:
        # Its queries move to the platform key's lower limit at once, the queries already counted staying counted: the
        # one who removed it was told on the confirmation, the other Owners and Admins learn it here.
        after = window_on_platform_key(org)
        context["limit"] = f"{after.limit} queries per rolling {window_words(after.window_seconds)}"
        context["locked_out"] = locked_out_words(after, who=org.name)
    body = render_to_string("orgs/email/key_changed.txt", context)
    what = f"claude api key {verb} e-mail"
    for user in _managers(org):
        _send_on_commit(user, subject, body, what)


def key_use_changed_by_plan(*, org: Organisation, old_plan, at: datetime, after: Window | None) -> None:
    """Tell every active Owner and Admin of `org` that Opsion staff's change of its plan from `old_plan` put its stored
    key back into use or took it out of use (`after`: the window on the platform key then), and which limit applies
    now, once the current transaction commits."""
    if not settings.EMAIL_CONFIGURED:
        return
    in_use = org.allows_byom
    limit = settings.INSIGHTS_BYOM_LIMIT if in_use else settings.INSIGHTS_PLATFORM_LIMIT
    context = {
        "org": org.name,
        "old_plan": old_plan.label,
        "plan": org.get_plan_display(),
        "in_use": in_use,
        "via": VIA["admin"],
        "when": at,
        "limit": limit,
        "window": window_words(settings.INSIGHTS_WINDOW_SECONDS),  # as the pages say it
    }
    if in_use:
        # Not promised to answer when it cannot: Anthropic rejected it last time, or no configured key decrypts it.
        row = selectors.stored_claude_api_key(org)
        context["key_invalid"] = row is not None and row.status == KeyStatus.INVALID
        context["key_unreadable"] = row is not None and not row.secret.readable()
    else:
        # The queries already counted stay counted: over the platform's limit, no one can ask for a while.
        context["locked_out"] = locked_out_words(after, who=org.name)
    subject = f"Claude API key {'in use again' if in_use else 'no longer in use'} for {org.name}"
    body = render_to_string("orgs/email/key_use_changed.txt", context)
    what = f"claude api key {'in use' if in_use else 'unused'} after plan change e-mail"
    for user in _managers(org):
        _send_on_commit(user, subject, body, what)


def password_changed(*, user: User, how: str, at: datetime, tokens_revoked: int, tokens_kept: int) -> None:
    """Tell `user` their password was changed (`how`: console, reset or staff), and how many of their API tokens were
    revoked with it or keep working (of none, nothing), once the transaction commits."""
    if not settings.EMAIL_CONFIGURED or not user.is_active:
        return
    context = {
        "email": user.email,
        "how": PASSWORD_CHANGED_HOW[how],
        "how_code": how,
        "revoked": revoked_words(tokens_revoked) if tokens_revoked else "",
        "kept": kept_words(tokens_kept),
        "when": at,
        "support": settings.SUPPORT_URL,
    }
    body = render_to_string("orgs/email/password_changed.txt", context)
    _send_on_commit(user, "Your Opsion password was changed", body, "password changed e-mail")


def revoked_words(count: int, whose: str = "your") -> str:
    """API tokens revoked with a new password, in the words the pages and the e-mail use (`count` at least 1);
    `whose`: "its" where the reader is not the account's user (a reset done page signed in as another)."""
    if count == 1:
        return f"{whose} API token was revoked: integrations using it have stopped working"
    return f"{whose} {count} API tokens were revoked: integrations using them have stopped working"


def kept_words(count: int, whose: str = "your") -> str:
    """API tokens that keep working after a new password, in the words the reset's page and the e-mail use; none,
    nothing: most users have no token, and would go looking for one. `whose` as for revoked_words."""
    if not count:
        return ""
    return f"{whose} API token keeps working" if count == 1 else f"{whose} {count} API tokens keep working"


def api_token_created(*, token: ApiToken) -> None:
    """Tell the token's user a token was created on their account (its name, never the token or its prefix), once
    the transaction commits."""
    user = token.user
    if not settings.EMAIL_CONFIGURED or not user.is_active:
        return
    context = {
        "email": user.email,
        "name": token.name,
        "when": token.created_at,
        "expires": token.expires_at,
        "support": settings.SUPPORT_URL,
    }
    body = render_to_string("orgs/email/api_token_created.txt", context)
    _send_on_commit(user, "A new API token was created on your Opsion account", body, "api token created e-mail")


def api_tokens_revoked_by_staff(*, user: User, names: list[str], at: datetime) -> None:
    """Tell `user` that Opsion staff deleted their API tokens named `names` in admin (never a token or its prefix),
    once the transaction commits: a token they did not revoke stops working, and an integration with it."""
    if not settings.EMAIL_CONFIGURED or not user.is_active:
        return
    context = {"email": user.email, "names": names, "when": at, "support": settings.SUPPORT_URL}
    body = render_to_string("orgs/email/api_tokens_revoked_by_staff.txt", context)
    tokens = "An API token was" if len(names) == 1 else f"{len(names)} API tokens were"
    subject = f"{tokens} deleted from your Opsion account by Opsion staff"
    _send_on_commit(user, subject, body, "api tokens revoked by staff e-mail")


def _managers(org: Organisation):
    return User.objects.filter(
        is_active=True, memberships__organisation=org, memberships__role__in=MANAGING_ROLES
    ).order_by("pk")


def _who(user) -> str:
    return f"{user.name} ({user.email})" if getattr(user, "name", "") else user.email


def _send_on_commit(user: User, subject: str, body: str, what: str) -> None:
    # One e-mail per person, so no one sees who else was told, and one refused address stops no other. A name put
    # in the subject (an organisation's) is made one line: a newline in a header is refused when it is sent.
    outbox.add(to=user.email, subject=" ".join(subject.split()), body=body, what=f"{what} to user {user.pk}")
