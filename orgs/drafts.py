"""Text typed into a form that was posted after the session expired: kept across sign-in, never lost.

A redirect to the sign-in page would drop the POST and what was typed with it. Instead the sign-in page
answers the POST itself (`sign_in_to_continue`), the text riding along in the sign-in form (never stored
for an anonymous visitor). After sign-in it is kept in the session (`keep`) and handed back once, in the
box it was typed in, by the page it came from (`take`). Nothing is sent on the user's behalf: signing in
gives the browser a new CSRF secret, so the form as it stood can no longer be sent, and the page that takes
the text back shows it in a fresh form for its user to send.

What was typed is kept only for the account it was typed for: a form that keeps text carries a mark of its page's
user (`typed_by`, the field `draft_by`), and signing in keeps the text only when the mark is the signing-in user's. So
a sign-in page left open on a shared computer, or a stale one sent after someone else signed in in another tab, never
hands one person's question or token name to the next (who may be a member of the same organisation). A form
without a mark (a page loaded before marks were) carries nothing.

Two forms keep what was typed: AI Insights' question, and the name of a new API token (with the lifetime
chosen beside it) on Settings. Nothing else is: a Claude API key or a password typed into a form is never
carried, kept or shown again.
"""

from functools import wraps
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404, get_script_prefix, resolve, reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from insights.models import as_asked
from opsion.reporting import redact
from orgs.forms import SignInForm

KEPT_DRAFT = "kept_draft"
DRAFT_BY = "draft_by"  # the field, in a form that keeps text and in the sign-in page carrying it, naming its user
CHOICE_MAX = 20  # a choice is a short value (a lifetime in days), checked again by the page it goes back to


class Kept(NamedTuple):
    text: str
    choice: str  # made beside the text (a new token's lifetime); "" for none. The page checks it before use.
    stale: bool = False  # kept from a form gone stale (its user signed in again elsewhere), not across a sign-in


class Keeps(NamedTuple):
    """What a view decorated with `sign_in_keeps` keeps of a form posted to it: the text's field, the choice's, and
    the URL name of the page that hands them back (None: the URL posted to)."""

    field: str
    choice: str
    back_to: str | None


def _clean(text: str) -> str:
    # Carried whole by the sign-in page (Django caps the request body, so nothing unbounded is); kept in the session
    # cut by `bounded`.
    return text if text.strip() else ""


def bounded(text: str) -> str:
    """`text` as the session (a database row) keeps it: whole when asking would not refuse it as too long (counted as
    asking counts it, insights.models.as_asked), else trimmed, cut to the longest question (INSIGHTS_MAX_QUERY_CHARS)
    and marked "…" there. A paste up to the request body's cap then cannot grow the row with it, and the one character
    past the longest question keeps asking it refused as too long, as the whole would be, rather than send a shortened
    question without a word."""
    limit = settings.INSIGHTS_MAX_QUERY_CHARS
    if len(text) <= limit:
        return text
    asked = as_asked(text)
    return asked if len(asked) <= limit else asked[:limit] + "…"


def _clean_choice(choice: str) -> str:
    return choice if len(choice) <= CHOICE_MAX else ""


def typed_by(user) -> str:
    """The mark of `user` that a form keeping text carries (opaque: no id or address shows), "" for no one."""
    if not user.is_authenticated:
        return ""
    return salted_hmac("orgs.drafts.typed_by", str(user.pk), algorithm="sha256").hexdigest()[:32]


def posted(request: HttpRequest) -> str:
    """The draft a sign-in form carries along, or ""."""
    return _clean(request.POST.get("draft", "") if request.method == "POST" else "")


def posted_choice(request: HttpRequest) -> str:
    """The choice a sign-in form carries along with its draft, or ""."""
    if not posted(request):
        return ""
    return _clean_choice(request.POST.get("draft_choice", ""))


def posted_by(request: HttpRequest) -> str:
    """The mark of the user a sign-in form's draft was typed for, or ""."""
    return request.POST.get(DRAFT_BY, "") if posted(request) else ""


def sign_in_context(*, draft: str, choice: str, by: str, next_url: str) -> dict:
    """What the sign-in page shows of a draft it carries: the fields, and what the text is (`draft_for`: "token"
    for a token's name going back to Settings, else "question"), for its words. A draft with no mark of its user is
    not carried: no one could be given it. A Claude API key or an API token in the text is blanked, as `keep` blanks
    it: the page carrying it is left open, perhaps on a shared computer, and sent again with a mistyped password."""
    draft = redact(_clean(draft)) if by else ""
    return {
        "draft": draft,
        "draft_choice": _clean_choice(choice) if draft else "",
        "draft_by": by if draft else "",
        "draft_for": "token" if draft and _view_name(next_url) == "orgs:settings" else "question",
    }


def _view_name(url: str) -> str | None:
    path, prefix = urlsplit(url).path, get_script_prefix()
    if not path.startswith(prefix):
        return None
    try:
        return resolve("/" + path.removeprefix(prefix)).view_name
    except Resolver404:
        return None


def sign_in_to_continue(
    request: HttpRequest, *, draft: str, choice: str = "", by: str = "", next_url: str | None = None
) -> HttpResponse:
    """The sign-in page, in answer to a form posted after the session expired, carrying `draft` (and `choice`), typed
    for the user marked `by`, along to `next_url` (by default the page the form was posted to)."""
    next_url = request.path if next_url is None else next_url
    context = {"form": SignInForm(request), "next": next_url}
    context |= sign_in_context(draft=draft, choice=choice, by=by, next_url=next_url)
    context["password_reset"] = settings.EMAIL_CONFIGURED  # "Forgot your password?", as on the sign-in page
    return render(request, "registration/login.html", context)


def sign_in_keeps(field: str, *, choice: str = "", back_to: str | None = None):
    """login_required, except that a form posted after the session expired is not lost on the way: the sign-in page
    answers the POST itself and carries what was typed in `field` (and the value of `choice`, if named) to the page
    `back_to` names (a URL name, given the view's arguments; by default the URL posted to), which hands it back."""

    def decorate(view):
        signed_in_view = login_required(view)

        @wraps(view)
        def run(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method == "POST" and not request.user.is_authenticated:
                next_url = reverse(back_to, args=args, kwargs=kwargs) if back_to else None
                typed, chosen = request.POST.get(field, ""), request.POST.get(choice, "") if choice else ""
                by = request.POST.get(DRAFT_BY, "")
                return sign_in_to_continue(request, draft=typed, choice=chosen, by=by, next_url=next_url)
            return signed_in_view(request, *args, **kwargs)

        run.keeps = Keeps(field, choice, back_to)
        return run

    return decorate


def keep(request: HttpRequest, *, path: str, draft: str, choice: str = "", by: str = "", stale: bool = False) -> bool:
    """After sign-in: keep `draft` (and `choice`) for the page at `path` (a path: no query string), once, when it was
    typed for the user now signed in (`by`, their mark); another's is dropped. Says whether it was kept."""
    if not (_clean(draft) and by and constant_time_compare(by, typed_by(request.user))):
        return False
    # Kept in the session, a database row: a Claude API key or an API token pasted into the text (which asking would
    # refuse) is blanked as log lines blank it, and the rest comes back, for its user to see what was taken out.
    kept = {"path": path, "text": bounded(redact(_clean(draft))), "choice": _clean_choice(choice)}
    request.session[KEPT_DRAFT] = kept | ({"stale": True} if stale else {})
    return True


def keep_stale(request: HttpRequest, match) -> str | None:
    """A form gone stale (its CSRF token no longer matches: its user signed in again in another tab) posted to the view
    `match` (a ResolverMatch) names: what it carries is kept for its user as across a sign-in, and handed back by its
    page, whose path this returns; None when it keeps nothing (the view keeps no text, or it is another user's). The
    CSRF refusal (opsion.views) calls it before anything of the form is used; nothing is done on the form's behalf."""
    keeps = getattr(match.func, "keeps", None)
    if keeps is None:
        return None
    path = reverse(keeps.back_to, args=match.args, kwargs=match.kwargs) if keeps.back_to else request.path
    choice = request.POST.get(keeps.choice, "") if keeps.choice else ""
    typed, by = request.POST.get(keeps.field, ""), request.POST.get(DRAFT_BY, "")
    return path if keep(request, path=path, draft=typed, choice=choice, by=by, stale=True) else None


def take(request: HttpRequest) -> Kept | None:
    """What was kept across sign-in for this page, once; None when there is none. Call it only when the page will
    show it: it is gone from the session afterwards. What was kept for another page stays kept for that page."""
    kept = request.session.get(KEPT_DRAFT)
    if not kept or kept.get("path") != request.path:
        return None
    del request.session[KEPT_DRAFT]
    return Kept(kept["text"], kept.get("choice", ""), kept.get("stale", False))  # kept before choices were: none
