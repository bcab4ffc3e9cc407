"""Signing in and out, and changing one's password: the site's pages and admin's, each under an abuse guard."""

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import INTERNAL_RESET_SESSION_TOKEN, LoginView, LogoutView, redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, get_script_prefix, resolve, reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters

from opsion import requestid
from opsion.http import atomic_for_post, without_secret
from opsion.reporting import holds_secret
from orgs import drafts, guards, notifications, recent_auth, services
from orgs.forms import ChangePasswordForm, SignInForm

SIGN_IN_LOCKED = "Too many failed sign-in attempts. Please try again in {wait}."

SIGNED_IN_TO = "signed_in_to"  # the page a sign-in returned to, until a form's URL reads it
# A sign-in that named no page lands on the home page, which sends it on to AI Insights: the path it is bound for,
# until that page is shown, which then starts in the question box (typing a question is a keyboard user's first step
# there). Only that once: a reload, or the page opened later, starts at the top as every page does.
SIGNED_IN_LANDING = "signed_in_landing"
# Said after signing in again to someone whose form was sent once their session had ended, then what it did not do.
SIGNED_OUT = "You were signed out before this was sent, so nothing was changed: "


class GuardedPost:
    """A form view whose every POST an abuse guard counts first. Refused, nothing posted is checked (no password
    hashed for a locked-out guesser): the form comes back unbound, with only `kept_fields` typed back, saying why
    and how long to wait (`locked_message`'s `{wait}`), as a 429 with that wait as its Retry-After."""

    locked_message: str
    kept_fields: tuple[str, ...] = ()

    def refused(self, request: HttpRequest) -> int | None:
        """None when the guard lets this POST go on, else the seconds until one can (the guard's wait)."""
        raise NotImplementedError

    def post(self, request, *args, **kwargs):
        wait = self.refused(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        unbound = {name: value for name, value in self.get_form_kwargs().items() if name not in ("data", "files")}
        # A key or token pasted into a kept box is not typed back, as the checked form would not (forms.AddressField).
        initial = {name: request.POST.get(name, "") for name in self.kept_fields}
        initial = {name: "" if holds_secret(value) else value for name, value in initial.items()}
        form = self.get_form_class()(**unbound | {"initial": initial})
        refusal = guards.refusal(self.locked_message, wait)
        locked = self.render_to_response(self.get_context_data(form=form, locked=refusal.message), status=429)
        locked["Retry-After"] = str(refusal.retry_after)
        return locked


class SignInView(GuardedPost, LoginView):
    """Sign-in by e-mail. A form posted after the session expired may carry its typed text along
    (`draft`, and `draft_choice`, see orgs.drafts): it is handed back once, after sign-in, to the page it came from."""

    form_class = SignInForm
    redirect_authenticated_user = True
    locked_message, kept_fields = SIGN_IN_LOCKED, ("username",)

    def refused(self, request):
        return guards.sign_in_attempt(request)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # "Forgot your password?" only when Opsion can send the e-mail (EMAIL_URL): no promise it cannot keep.
        draft = drafts.sign_in_context(
            draft=drafts.posted(self.request),
            choice=drafts.posted_choice(self.request),
            by=drafts.posted_by(self.request),
            next_url=context["next"],
        )
        return context | draft | {"password_reset": settings.EMAIL_CONFIGURED}

    def get_redirect_url(self):
        # `next` naming the sign-in page itself would make Django raise (a 500) for a signed-in visitor,
        # who is sent to the default page instead.
        # A key or token in its query string (a `next` typed by hand) is not sent on; the page itself is.
        url = without_secret(super().get_redirect_url())
        return "" if url and urlsplit(url).path == self.request.path else url

    def form_valid(self, form):
        guards.sign_in_succeeded(self.request)
        response = super().form_valid(form)  # signs in: from here on the session is the user's own
        back_to = self.get_success_url()
        self.request.session[SIGNED_IN_TO] = urlsplit(back_to).path
        if urlsplit(back_to).path == reverse("home"):
            self.request.session[SIGNED_IN_LANDING] = reverse("home")
        draft, choice, by = (
            drafts.posted(self.request),
            drafts.posted_choice(self.request),
            drafts.posted_by(self.request),
        )
        drafts.keep(self.request, path=urlsplit(back_to).path, draft=draft, choice=choice, by=by)
        return response


sign_in = sensitive_post_parameters("password")(SignInView.as_view())


class SignOutView(LogoutView):
    """Signing out is a POST (a link could sign anyone out); a GET, from a typed or bookmarked address,
    gets a page with the button instead of a bare 405."""

    http_method_names = ["get", "post", "options"]

    def get(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect("login")
        return render(request, "registration/sign_out.html")

    def post(self, request, *args, **kwargs):
        was_signed_in = request.user.is_authenticated
        reset_link = request.session.get(INTERNAL_RESET_SESSION_TOKEN) if _back_to_reset_form(request) else None
        response = super().post(request, *args, **kwargs)  # signs out: the message goes into the new session
        if was_signed_in:
            messages.info(request, "You are signed out.")
        if reset_link:
            request.session[INTERNAL_RESET_SESSION_TOKEN] = reset_link
        return response


def _back_to_reset_form(request: HttpRequest) -> bool:
    """Signing out from a reset link's page opened while signed in as another account (its Sign out posts `next`, that
    page): the link, which the session holds since its first visit, is carried into the signed-out session, so the
    page opens again rather than saying the link no longer works. Signing out any other way ends it with the session,
    so a link opened and left on a shared computer does not outlive the sign-out."""
    path, prefix = urlsplit(request.POST.get("next", "")).path, get_script_prefix()  # `next` is request.path
    try:
        match = resolve("/" + path.removeprefix(prefix)) if path.startswith(prefix) else None
    except Resolver404:
        return False
    return (
        match is not None
        and match.url_name == "password_reset_confirm"
        and match.kwargs.get("token") == auth_views.PasswordResetConfirmView.reset_url_token
    )


def admin_sign_in(request: HttpRequest) -> HttpResponse:
    """Django admin's own sign-in page, replaced: it would check passwords without the sign-in guards
    (and take the most valuable passwords there are). Staff sign in on the site's page, then go on."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.GET.get("next") or reverse("admin:index"))
    if request.user.is_staff:
        return redirect("admin:index")
    # Signed in, but not staff: admin sends them here, and signing in again would change nothing.
    raise PermissionDenied


def _admin_password_change(request: HttpRequest) -> HttpResponse:
    # Through admin_view, as admin's own URL serves it: its staff check (and CSRF protection) included.
    return admin.site.admin_view(admin.site.password_change, cacheable=True)(request)


PASSWORD_CHANGE_LOCKED = "Too many attempts to change your password. Please try again in {wait}."


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
def admin_password_change(request: HttpRequest) -> HttpResponse:
    """Admin's password change, with a guess limit: the 11th attempt in 15 minutes is not even checked, and the
    form comes back empty (429) saying why. Admin's own view does the rest, its staff check included."""
    user = request.user
    wait = (
        guards.password_check_attempt(user=user)
        if request.method == "POST" and user.is_active and user.is_staff
        else None
    )
    if wait is not None:
        refusal = guards.refusal(PASSWORD_CHANGE_LOCKED, wait)
        # Admin shows messages as text: the reference is said in words, as the site's own page shows it.
        messages.error(request, f"{refusal.message} Reference: {requestid.current()}")
        request.method = "GET"  # admin's form again, unbound
        response = _admin_password_change(request)
        response.status_code = 429
        response["Retry-After"] = str(refusal.retry_after)
        return response
    before = getattr(user, "password", None)  # an anonymous visitor has none: admin sends them to sign in
    # The new password and its e-mail's outbox row commit together: a password saved always has its e-mail.
    with atomic_for_post(request):
        response = _admin_password_change(request)
        if user.is_authenticated and user.password != before:  # admin's form sets it on request.user itself
            services.password_changed(user=user, how="console")
    return response


PASSWORD_CHANGED = "Your password was changed. Other browsers signed in as you were signed out."
PASSWORD_CHANGE_SIGNED_OUT = SIGNED_OUT + "your password was not changed. Type it again."
CHANGE_SENT_SIGNED_OUT = "password_change_sent_signed_out"


class PasswordChangeView(GuardedPost, auth_views.PasswordChangeView):
    """One's own password, changed with the old one and under the same guess limit as admin's (the 11th attempt in
    15 minutes is not even checked). This session stays signed in, every other one is signed out (Django's session
    hash); API tokens keep working unless the user also chose to revoke them (ChangePasswordForm). Django's view
    brings login_required, CSRF and sensitive_post_parameters."""

    template_name = "registration/password_change.html"
    form_class = ChangePasswordForm
    success_url = reverse_lazy("home")
    locked_message = PASSWORD_CHANGE_LOCKED
    kept_fields = ("revoke_api_tokens",)  # a refusal keeps the choice, never a password

    def refused(self, request):
        return guards.password_check_attempt(user=request.user)

    @method_decorator(sensitive_post_parameters("old_password", "new_password1", "new_password2"))
    def dispatch(self, request, *args, **kwargs):
        # A change sent after the session expired goes to sign in, as every console form does, and the page it lands on
        # again says that nothing was changed (the passwords typed are kept nowhere: they are typed again). Only such a
        # post marks the session: the page opened signed out (a bookmark) says nothing of a change after sign-in.
        if request.method == "POST" and not request.user.is_authenticated:
            request.session[CHANGE_SENT_SIGNED_OUT] = True  # kept by the sign-in, which cycles the session's key
            back_to = self.back_to()  # the page it was opened from, where the change returns once made
            again = f"{request.path}?{urlencode({'next': back_to}, safe='/')}" if back_to else request.path
            return redirect_to_login(again)
        if request.method == "GET" and request.session.pop(CHANGE_SENT_SIGNED_OUT, False):
            if request.user.is_authenticated and request.session.pop(SIGNED_IN_TO, None) == request.path:
                messages.warning(request, PASSWORD_CHANGE_SIGNED_OUT)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        # This form needs the old password, and the sign-in page, where "Forgot your password?" lives, sends a
        # signed-in visitor back into the console: without this link, someone who forgot it had to sign out first.
        return super().get_context_data(**kwargs) | {
            "password_reset": settings.EMAIL_CONFIGURED,
            "back_to": self.back_to(),
        }

    def back_to(self) -> str:
        """The console page this was opened from (the header's link names it as `next`), if it is this site's: the
        home page is the first organisation's, which for someone in several may not be the one they were working in."""
        url = self.request.POST.get("next") or self.request.GET.get("next", "")
        allowed = {self.request.get_host()}
        safe = url_has_allowed_host_and_scheme(url, allowed_hosts=allowed, require_https=self.request.is_secure())
        return url if safe else ""

    def get_success_url(self):
        return self.back_to() or super().get_success_url()

    def form_valid(self, form):
        # The new password and the revocation commit together, or neither does; the e-mail goes once they have.
        with transaction.atomic():
            response = super().form_valid(form)  # keeps this session's hash current: it stays signed in
            revoking = form.revokes_api_tokens()
            tokens = services.password_changed(user=form.user, how="console", revoke_api_tokens=revoking)
        recent_auth.record(self.request)  # the password was just typed, twice
        messages.success(self.request, _password_changed_message(tokens.revoked))
        return response


def _password_changed_message(tokens_revoked: int) -> str:
    if not tokens_revoked:
        return PASSWORD_CHANGED
    words = notifications.revoked_words(tokens_revoked)
    return f"{PASSWORD_CHANGED} {words[0].upper()}{words[1:]}."


def admin_sign_out(request: HttpRequest) -> HttpResponse:
    """Admin's sign-out address: its own button POSTs and signs out as admin does; a typed or bookmarked
    address (a GET) gets the site's sign-out page with its button, not a bare 405."""
    if request.method == "POST":
        return admin.site.logout(request)
    return redirect("logout")
