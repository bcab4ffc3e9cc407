import secrets
from datetime import UTC, datetime
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_safe

from insights import ratelimit
from opsion.errors import NotFound, Refused
from opsion.http import client_ip
from orgs import access, audit_export, drafts, guards, landing, recent_auth, selectors, services
from orgs.account_views import SIGNED_IN_LANDING, SIGNED_IN_TO, SIGNED_OUT
from orgs.forms import ApiTokenForm
from orgs.models import Membership

TOKEN_FORMS_USED = "token_forms_used"
TOKEN_ALREADY_CREATED = (
    "This form already created its token, which was shown only once. If you did not copy it, revoke it "
    "below and create a new one."
)


@require_safe
@login_required
def home(request: HttpRequest) -> HttpResponse:
    org = access.landing_organisation(request.user)
    signed_in_here = request.session.pop(SIGNED_IN_LANDING, None) == request.path
    if org is None:
        # Tokens outlive memberships (re-added, a user's tokens work again): they stay revocable here.
        if REVOKE in request.GET:
            return _revoke_confirmation(request, None)
        return _home_page(request)
    if REVOKE in request.GET:
        # Added to an organisation as this page stood open: the question goes where their tokens are listed now.
        return redirect(_revoke_confirmation_url(reverse("orgs:settings", args=[org.slug]), request.GET[REVOKE]))
    if signed_in_here:
        request.session[SIGNED_IN_LANDING] = reverse("insights:query", args=[org.slug])
    return redirect("insights:query", org.slug)


def _home_page(request: HttpRequest, *, status: int = 200, **extra) -> HttpResponse:
    context = {"token_list": selectors.api_tokens_listed(request.user), "support_url": settings.SUPPORT_URL, **extra}
    return render(request, "orgs/no_organisation.html", context, status=status)


def form_action(not_done: str, *, own_page: bool = False):
    """For the URLs forms post to. Each declares what is not done when its form does not get through (`not_done`):
    the view keeps it for the CSRF refusal of a stale form (opsion.views), which tells its user so.

    A settings form's URL answers a GET not with an error but as a way back to the form's page: it is where signing in
    again lands someone whose session expired as they submitted (the sign-in page returns to the URL the form posted
    to), so they see the page, not a 405, told that nothing was changed and what was not done: someone rotating a
    compromised key must not think it is done. Any other GET (the address bar still showing the URL a form answered at,
    a restored tab) just goes to the page. With `own_page` the URL is the form's page itself (AI Insights posts its
    question to its own page), so its GET is the view's, which hands back a question sent signed out (orgs.drafts)."""

    def decorate(view):
        @wraps(view)
        @require_http_methods(["GET", "HEAD", "POST"])
        def run(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method != "POST" and not own_page:
                if request.method == "GET" and request.session.pop(SIGNED_IN_TO, None) == request.path:
                    messages.warning(request, SIGNED_OUT + not_done)
                return redirect("orgs:settings", kwargs["slug"]) if "slug" in kwargs else redirect("home")
            return view(request, *args, **kwargs)

        run.not_done = not_done
        return run

    return decorate


def _settings_page(request: HttpRequest, membership: Membership, *, status: int = 200, **extra) -> HttpResponse:
    org = membership.organisation
    context = {
        "membership": membership,
        "org": org,
        "key": selectors.claude_api_key_state(org),
        "token_list": selectors.api_tokens_listed(request.user),
        "token_form": extra.pop("token_form", None) or ApiTokenForm(),
        "token_form_once": secrets.token_urlsafe(12),
        # Asked for whenever the page is drawn past the window, whatever form it was handed.
        "token_needs_password": not recent_auth.is_recent(request),
        "recent_auth_window": recent_auth.window(),
        # The card's latest events, and whether older ones are left for the full log.
        "audit": selectors.audit_events_page(org, limit=selectors.AUDIT_CARD_EVENTS) if membership.can_manage else None,
        "platform_limit": settings.INSIGHTS_PLATFORM_LIMIT,
        "byom_limit": settings.INSIGHTS_BYOM_LIMIT,
        **extra,
    }
    return render(request, "orgs/settings.html", context, status=status)


def _refused_page(request: HttpRequest, membership: Membership, refused: Refused, **extra) -> HttpResponse:
    """The page again, the refusal beside its form; a refusal that says when to retry (an abuse guard's 429)
    carries Retry-After, as the API's does."""
    # An abuse guard's refusal (429) shows the request's reference, as the sign-in lockout does; a refusal the user
    # mends themselves (a malformed key, a role they lack) does not.
    response = _settings_page(
        request, membership, status=refused.status, refusal_reference=refused.status == 429, **extra
    )
    if refused.retry_after is not None:
        response["Retry-After"] = str(refused.retry_after)
    return response


@require_safe
@login_required
def settings_page(request: HttpRequest, slug: str) -> HttpResponse:
    membership = access.membership_or_http404(request.user, slug)
    if request.GET.get("confirm") == "remove" and membership.can_manage:
        # The Remove button's confirmation step is a page of its own (a GET), so Back and reload from
        # what follows never ask to resend a form.
        return landing.opened(request, membership, _removal_confirmation(request, membership))
    if REVOKE in request.GET:
        return landing.opened(request, membership, _revoke_confirmation(request, membership))
    # A token's name kept across sign-in (orgs.drafts) is taken by the page itself, where Create token sends it, not
    # by a confirmation shown first (whose Cancel leads here); and not by a HEAD, which shows nothing.
    if request.method == "GET" and (kept := drafts.take(request)):
        kept_form = ApiTokenForm.kept(name=kept.text, expires=kept.choice)
        page = _settings_page(request, membership, token_form=kept_form, token_kept=True, token_stale=kept.stale)
        return landing.opened(request, membership, page)
    return landing.opened(request, membership, _settings_page(request, membership))


def _audit_reader(request: HttpRequest, slug: str) -> Membership:
    """The audit log is for those who manage the key, as on the settings page."""
    membership = access.membership_or_http404(request.user, slug)
    try:
        access.require_audit_reader(membership)
    except access.RoleRequired as refused:
        raise PermissionDenied(refused.message) from None
    return membership


@require_safe
@login_required
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _audit_reader(request, slug)
    page = selectors.audit_log_page(membership.organisation, request.GET.get("page"))
    context = {"membership": membership, "org": membership.organisation, "page": page}
    return landing.opened(request, membership, render(request, "orgs/audit_log.html", context))


@require_safe
@login_required
def audit_log_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    """The whole audit log as CSV, for a compliance team's own records; streamed, newest first."""
    org = _audit_reader(request, slug).organisation
    response = StreamingHttpResponse(
        audit_export.csv_lines(selectors.audit_log_all(org)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="opsion-{org.slug}-audit-log.csv"'
    return response


NOTHING_TO_REMOVE = (
    "No Claude API key is stored, so nothing was removed: it had already been removed (the audit log below says "
    "by whom and when)."
)


def _removal_confirmation(request: HttpRequest, membership: Membership) -> HttpResponse:
    if selectors.stored_claude_api_key(membership.organisation) is None:
        # Remove pressed on a page that still showed a key a colleague has removed since: said, not asked.
        messages.warning(request, NOTHING_TO_REMOVE)
        return redirect("orgs:settings", membership.organisation.slug)
    # Said before removing: the queries already counted stay counted under the lower limit.
    after = ratelimit.window_on_platform_key(membership.organisation)
    locked_out = ratelimit.locked_out_words(after, who="Your organisation")
    return _settings_page(request, membership, confirm_remove=True, locked_out=locked_out)


# Not drafts.sign_in_keeps: a key posted after the session expired is kept nowhere (no session, cookie, address or
# page holds it), and signing in lands on Settings saying to paste it again (form_action).
@login_required
@form_action("your new key was not saved. Paste it again.")
@sensitive_post_parameters("api_key")
def byom_save(request: HttpRequest, slug: str) -> HttpResponse:
    membership = access.membership_or_http404(request.user, slug)
    try:
        replaced = services.claude_api_key_set(
            membership=membership, raw_key=request.POST.get("api_key", ""), ip=client_ip(request)
        )
    except NotFound:
        raise Http404("No such organisation.") from None  # removed from it as they saved
    except Refused as refused:
        # Re-render (never echoing the submitted key) so the message sits next to the field.
        message = refused.message
        if (
            not isinstance(refused, access.PlanRequired)
            and membership.can_manage
            and selectors.stored_claude_api_key(membership.organisation) is not None
        ):
            # The card's "Key saved." describes the stored key: just after "Save new key" it reads as this one's.
            message += " Your new key was not saved: the stored key is unchanged."
        return _refused_page(request, membership, refused, key_error=message)
    if replaced:  # as the audit log, shown below it, says
        messages.success(request, "Claude API key replaced. AI Insights queries now use the new key.")
    else:
        messages.success(request, "Claude API key saved. AI Insights queries now use your organisation's key.")
    return redirect("orgs:settings", slug)


def _shown_key(request: HttpRequest) -> datetime | None:
    """When the key the confirmation showed was saved (its hidden `saved_at`); None from a form without it."""
    value = request.POST.get("saved_at", "")
    if not value:
        return None
    try:
        shown = datetime.fromisoformat(value)
        if shown.tzinfo is None:
            raise ValueError("a time we write carries its offset")
        return shown.astimezone(UTC)  # OverflowError past year 1 or 9999 (the database would fail on it)
    except (ValueError, OverflowError):
        raise services.KeyReplaced() from None  # not a time we wrote: nothing says it is the key stored now


@login_required
@form_action("the key was not removed. Remove it again if you still want to.")
def byom_remove(request: HttpRequest, slug: str) -> HttpResponse:
    membership = access.membership_or_http404(request.user, slug)
    # Only a member who may remove is asked to confirm; anyone else falls through to the service's refusal.
    if request.POST.get("confirm") != "yes" and membership.can_manage:
        return _removal_confirmation(request, membership)
    try:
        # Only a confirmation's own form carries the key's time; anyone else meets the service's role check.
        shown = _shown_key(request) if membership.can_manage else None
        removed = services.claude_api_key_remove(membership=membership, ip=client_ip(request), saved_at=shown)
    except NotFound:
        raise Http404("No such organisation.") from None
    except Refused as refused:
        return _refused_page(request, membership, refused, key_error=refused.message)
    org = membership.organisation
    if not removed:
        # Two confirmations at once: the other removed it, as the audit log below says, not this one.
        messages.warning(request, NOTHING_TO_REMOVE)
    elif org.allows_byom:
        messages.success(request, "Claude API key removed. AI Insights queries now use Opsion's platform key.")
    else:
        # A key left behind by a downgrade: queries were on the platform key already, so nothing changes for them.
        messages.success(request, f"Claude API key removed. It was not in use on the {org.get_plan_display()} plan.")
    return redirect("orgs:settings", slug)


CONFIRM_LOCKED = "Too many attempts to confirm your password. Please try again in {wait}."


# Posted after the session expired, the name typed (and the lifetime chosen) go back to Settings through the sign-in
# page (orgs.drafts), to be sent by the member from there; the password typed does not.
@drafts.sign_in_keeps("name", choice="expires", back_to="orgs:settings")
@form_action("no token was created. Create it again.")
@sensitive_post_parameters("password")
def token_create(request: HttpRequest, slug: str) -> HttpResponse:
    membership = access.membership_or_http404(request.user, slug)
    # A token outlives the session, so a session whose password is not recent must type it again (orgs.recent_auth),
    # whatever the page it posted from showed: one loaded within the window may be sent after it.
    confirming = None if recent_auth.is_recent(request) else request.user
    wait = guards.password_check_attempt(user=request.user) if confirming and request.POST.get("password") else None
    if wait is not None:
        # The password change's guess limit, shared with it: past it nothing is checked, the name typed stays.
        typed = {field: request.POST.get(field, "") for field in ("name", "expires")}
        kept = ApiTokenForm(initial=typed, confirming=confirming)
        locked = guards.refusal(CONFIRM_LOCKED, wait)
        return _refused_page(request, membership, locked, token_error=locked.message, token_form=kept)
    form = ApiTokenForm(request.POST, confirming=confirming)
    valid = form.is_valid()
    if confirming and "password" in form.cleaned_data:
        recent_auth.confirmed(request)  # proved, even if the name was refused: the window starts again
    if not valid:
        return _settings_page(request, membership, status=400, token_form=form)
    # The page showing a new token is the answer to this POST (the raw token is shown this once and
    # stored nowhere, so there is nothing to redirect to); reloading it would post again. Each form
    # carries a one-time value, and a form already used creates nothing the second time: the session
    # remembers it (a reload days later), the shared cache claims it atomically (a double click).
    once = request.POST.get("once", "")
    once = guards.form_id(once) if once else ""  # a digest: the value comes from the request
    used = request.session.get(TOKEN_FORMS_USED, [])
    if once in used:
        return _settings_page(request, membership, status=409, token_error=TOKEN_ALREADY_CREATED)
    try:
        services.api_token_room(user=request.user)  # refused at the cap without spending one of the hour's tokens
        guards.token_create(user=request.user)  # before the claim: a refused form stays unused, to retry later
        if once and not guards.claim_form(user=request.user, form_id=once):
            return _settings_page(request, membership, status=409, token_error=TOKEN_ALREADY_CREATED)
        token, raw = services.api_token_create(
            user=request.user, name=form.cleaned_data["name"], expires_in_days=form.cleaned_data["expires"]
        )
    except Refused as refused:
        # Too many new tokens, or too many active ones: the name typed stays in the box for when it may go through.
        return _refused_page(request, membership, refused, token_error=refused.message, token_form=form)
    if once:
        request.session[TOKEN_FORMS_USED] = [*used, once][-20:]
    return _settings_page(
        request, membership, new_token=raw, new_token_name=token.name, new_token_expires_at=token.expires_at
    )


REVOKE = "revoke"  # the query parameter of the token whose Revoke button was pressed


def _revoke_confirmation_url(page: str, token_id) -> str:
    return f"{page}?{urlencode({REVOKE: token_id})}"


def _revoke_confirmation(request: HttpRequest, membership: Membership | None) -> HttpResponse:
    """The Revoke button's confirmation step, a page of its own (a GET), as the key's removal is: Back and reload
    from what follows never ask to resend a form, and the revocation itself is the confirmation's own POST. Shown
    in the organisation's Settings (`membership`) or on the home page of someone in no organisation (None)."""
    value = request.GET.get(REVOKE, "")
    token_id = int(value) if value.isascii() and value.isdigit() else None
    try:
        token = selectors.api_token_to_revoke(request.user, token_id)
    except NotFound as missing:
        # The page itself with the revocation's own words: the same for another's token as for no token at all.
        messages.error(request, missing.message)
        extra = {"status": 404}
    else:
        extra = {"revoking": token, "revoking_expired": token.is_expired(timezone.now())}
    if membership is None:
        return _home_page(request, **extra)
    return _settings_page(request, membership, **extra)


def _ask_first(request: HttpRequest, page: str, token_id: int) -> HttpResponse | None:
    """A revocation posted without the confirmation's `confirm=yes` (a page cached or left open from before the
    confirmation step, a form made by hand) revokes nothing: it is redirected to the confirmation's own address, so
    a reload never posts again. None when the confirmation was given."""
    if request.POST.get("confirm") == "yes":
        return None
    return redirect(_revoke_confirmation_url(page, token_id))


def _revoke(request: HttpRequest, token_id: int) -> None:
    try:
        name = services.api_token_revoke(user=request.user, token_id=token_id)
    except NotFound as missing:
        messages.error(request, missing.message)
    else:
        messages.success(request, f"API token “{name}” revoked. Requests using it are now refused.")


@login_required
@form_action("the token was not revoked. Revoke it again.")
def token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    # One's own token is revocable whatever one's memberships: someone removed from the organisation as its
    # Settings page stood open (their tokens act in their other organisations, or again once re-added) must
    # not be refused the revocation. Where they land afterwards says nothing of an organisation they are not in.
    try:
        access.membership_or_404(request.user, slug)
    except NotFound:
        page = reverse("home")  # which lists their tokens when they belong nowhere
    else:
        page = reverse("orgs:settings", args=[slug])
    if asked := _ask_first(request, page, token_id):
        return asked
    _revoke(request, token_id)
    return redirect(page)


@login_required
@form_action("the token was not revoked. Revoke it again.")
def account_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of your tokens from outside any organisation (you may belong to none)."""
    if asked := _ask_first(request, reverse("home"), token_id):
        return asked
    _revoke(request, token_id)
    return redirect("home")
