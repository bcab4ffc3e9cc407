"""Error pages Django renders itself, before any of our views runs."""

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve, reverse
from django.views import csrf

from opsion.errors import error_json
from opsion.http import without_secret
from opsion.middleware import API_ERRORS, NulInQueryString, SecretInAddress, is_api_path
from orgs import drafts

TOO_LARGE = "What you sent is too large. Go back, check what you pasted, and try again."
SECRET_IN_ADDRESS = (
    "This address holds what looks like a Claude API key or an API token, so Opsion did not open it. A key belongs "
    "only in Settings' key field, never in an address (browsers, proxies and servers keep addresses in their history "
    "and logs): if it was a real one, replace it."
)
# Django's reason when a form's token does not match the browser's CSRF secret, once the origin checked out.
STALE_TOKEN = "CSRF token from POST incorrect."
STALE_FORM = "This page was out of date (you signed in again since it was loaded), so nothing was changed: "


API_BAD_REQUESTS = {
    DisallowedHost: "This server does not answer to the host name the request was sent to (its Host header): check "
    "the address, or the proxy in front of Opsion.",
    NulInQueryString: "The query string contains a NUL character.",
    SecretInAddress: "The address's path holds what looks like a Claude API key or an API token, so it was not "
    "opened. A key belongs only in the body of PUT …/settings/claude-api-key: if it was a real one, replace it.",
    # Django reads no more than this many of a request's parameters: the query string's, or a form body's (a session
    # write's CSRF check reads one before the API can refuse its media type).
    TooManyFieldsSent: f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} parameters were sent (in the query "
    "string, or as form fields).",
}


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 page; for a body over DATA_UPLOAD_MAX_MEMORY_SIZE (say, a huge paste) it says so.

    The CSRF check reads the form before any view can, so this is the only place a console user
    can be told why such a request failed. Nothing of the request is echoed.
    """
    if is_api_path(request.path):  # e.g. a Host not in ALLOWED_HOSTS: API clients get the JSON shape
        # Said for what it is (an integrator behind a proxy that rewrites Host had only "The request is not valid."
        # to go on), echoing nothing.
        for cause, message in API_BAD_REQUESTS.items():
            if isinstance(exception, cause):
                return error_json("invalid_request", message, 400)
        return error_json(*API_ERRORS[400], 400)
    if isinstance(exception, RequestDataTooBig):
        return HttpResponse(render_to_string("400.html", {"title": "Too large", "message": TOO_LARGE}), status=400)
    if isinstance(exception, SecretInAddress):
        context = {"title": "Not opened", "message": SECRET_IN_ADDRESS}
        response = HttpResponse(render_to_string("400.html", context), status=400)
        # The page's stylesheet and icon load with the address as their Referer otherwise (same-origin), and a proxy
        # in front of Opsion logs that header as it came.
        response["Referrer-Policy"] = "no-referrer"
        return response
    return HttpResponse(render_to_string("400.html"), status=400)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal. Signing in again (in another tab, say) gives the browser a new CSRF secret,
    so a settings form a tab still shows carries a token that no longer matches: its user, signed in, is
    sent back to the form's page told what was not done, as after an expired session, instead of to a
    dead end whose Back returns an emptied key field. Anything else (no token, another origin, no
    session) gets the plain 403 page. The reason is kept on the request for the API's 403 (opsion.api), which
    ninja's own CSRF check raises without it."""
    request.csrf_failure_reason = reason
    if reason == STALE_TOKEN and request.path == reverse("login"):
        return _sign_in_again(request)
    if reason == STALE_TOKEN and request.path == reverse("logout"):
        return redirect("logout")  # its page, with a button that works (or the sign-in page, if signed out)
    # A question sent by the page's script is refused as it was: the script reloads the page, keeping the question.
    streamed = "text/event-stream" in request.headers.get("Accept", "")
    if reason == STALE_TOKEN and request.user.is_authenticated and not streamed:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
        # What the form carried for its user (a question, a token's name) is handed back by its page, which says why.
        if match and (kept_for := drafts.keep_stale(request, match)):
            return redirect(kept_for)
        if not_done := getattr(match and match.func, "not_done", None):
            messages.warning(request, STALE_FORM + not_done)
            return redirect(request.path)  # the form's URL answers a GET with its page (orgs.views.form_action)
    return csrf.csrf_failure(request, reason)


STALE_SIGN_IN = "This page was out of date, so you were not signed in. Please sign in again."


def _sign_in_again(request: HttpRequest) -> HttpResponse:
    """A sign-in form whose CSRF token went stale: another tab signed in (two tabs sent to sign in when the session
    expired), or signed in and out. Signed in now, they go on where the form was taking them (the sign-in page
    checks `next` and sends a signed-in visitor on); otherwise they are asked to sign in again. No password is
    checked: the form is only turned into a GET of the sign-in page. What it carried along (orgs.drafts) is
    not dropped: kept for the page it came from, as a sign-in keeps it, or carried by the sign-in page again."""
    next_url = without_secret(request.POST.get("next", ""))  # sent back below, in a redirect or a form
    draft, choice, by = drafts.posted(request), drafts.posted_choice(request), drafts.posted_by(request)
    if request.user.is_authenticated:
        # Kept for the page itself, without `next`'s query string, as a sign-in keeps it; only for the user it was
        # typed for (whoever signed in in the other tab may be someone else).
        drafts.keep(request, path=urlsplit(next_url).path, draft=draft, choice=choice, by=by)
    else:
        messages.warning(request, STALE_SIGN_IN)
        if draft:  # a redirect would drop it
            return drafts.sign_in_to_continue(request, draft=draft, choice=choice, by=by, next_url=next_url)
    return redirect(f"{reverse('login')}?{urlencode({'next': next_url})}" if next_url else reverse("login"))
