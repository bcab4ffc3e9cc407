"""Text typed into a form that was posted after the session expired: kept across sign-in, never lost.

A redirect to the sign-in page would drop the POST and what was typed with it. Instead the sign-in page
answers the POST itself (`sign_in_to_continue`), the text riding along in the sign-in form (never stored
for an anonymous visitor). After sign-in it is kept in the session (`keep`) and handed back once, in the
box it was typed in, by the page it came from (`take`). Nothing is sent on the user's behalf.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from orgs.forms import SignInForm

KEPT_DRAFT = "kept_draft"


def _clean(text: str) -> str:
    # Kept whole, even past the longest question: asking then says so, instead of sending a shortened one.
    # (Django caps the request body, so nothing unbounded is carried.)
    return text if text.strip() else ""


def posted(request: HttpRequest) -> str:
    """The draft a sign-in form carries along, or ""."""
    return _clean(request.POST.get("draft", "") if request.method == "POST" else "")


def sign_in_to_continue(request: HttpRequest, *, draft: str, next_url: str | None = None) -> HttpResponse:
    """The sign-in page, in answer to a form posted after the session expired, carrying `draft` along to `next_url`
    (by default the page the form was posted to)."""
    context = {
        "form": SignInForm(request),
        "next": request.path if next_url is None else next_url,
        "draft": _clean(draft),
    }
    context["password_reset"] = settings.EMAIL_CONFIGURED  # "Forgot your password?", as on the sign-in page
    return render(request, "registration/login.html", context)


def keep(request: HttpRequest, *, path: str, draft: str) -> None:
    """After sign-in: keep `draft` for the page at `path` (a path: no query string), once."""
    if draft:
        request.session[KEPT_DRAFT] = {"path": path, "text": draft}


def take(request: HttpRequest) -> str | None:
    """The text kept across sign-in for this page, once; None when there is none. Call it only when the page will
    show it: it is gone from the session afterwards. Text kept for another page stays kept for that page."""
    kept = request.session.get(KEPT_DRAFT)
    if not kept or kept.get("path") != request.path:
        return None
    del request.session[KEPT_DRAFT]
    return kept["text"]
