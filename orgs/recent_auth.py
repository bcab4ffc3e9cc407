"""Recent authentication: when this session's user last typed their password, and whether that was recent enough
for something a borrowed, stolen or left-open session must not do alone. Creating an API token is one: a token
outlives the session that made it, signing out and a new password, so the console asks for the password again
once the last proof is older than RECENT_AUTHENTICATION_SECONDS (GitHub's "sudo mode").

The time lives in Django's session, so it ends with the session: a new password signs every other session out,
and a sign-in (which records it) starts a new one. A session that never recorded it (signed in before this check
existed) is asked, as an old one is.
"""

import time

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest

from insights.ratelimit import window_words

SESSION_KEY = "password_entered_at"


def record(request: HttpRequest) -> None:
    """The user has just typed their password (signing in, changing it, confirming it)."""
    request.session[SESSION_KEY] = time.time()


def confirmed(request: HttpRequest) -> None:
    """The user has just confirmed their password, signed in already: the session's rights grow, so it gets a new
    key first, as Django's login() and a password change give it one. A copy of the old cookie (taken from another
    machine before) then names no session, rather than one just proved for another RECENT_AUTHENTICATION_SECONDS."""
    request.session.cycle_key()
    record(request)


def is_recent(request: HttpRequest) -> bool:
    entered = request.session.get(SESSION_KEY)
    if not isinstance(entered, int | float):
        return False
    # A time ahead of the clock (a server's clock set back) is no proof of recency: asked, as for an old one.
    return 0 <= time.time() - entered < settings.RECENT_AUTHENTICATION_SECONDS


def window() -> str | None:
    """The window in words, for the pages: "15 minutes" at the default; None when it is 0 (asked every time, so
    "more than 0 minutes ago" would name a time that means nothing)."""
    seconds = settings.RECENT_AUTHENTICATION_SECONDS
    return window_words(seconds) if seconds else None


@receiver(user_logged_in, dispatch_uid="orgs.recent_auth.signed_in")
def _signed_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    # Every sign-in goes through Django's login(), which sends this (the site's sign-in page is the only one that
    # calls it: admin's is replaced, and a reset link signs no one in), after the session was renewed for the user.
    if request is not None:
        record(request)
