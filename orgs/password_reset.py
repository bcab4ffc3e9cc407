"""Forgot your password? A link by e-mail, with Django's views and token: it works once (the token covers the
password hash) and for PASSWORD_RESET_TIMEOUT; the new password meets the validators and signs out every session.

The request page says the same for every address, after the same work, and the e-mail, if any, is made and sent
on the mail thread (orgs.mailer), so nothing a requester can see or time tells whether an address has an account.
Without EMAIL_URL Opsion cannot send mail: every page here says to ask Opsion support instead (staff set a new
password in admin).
"""

from collections.abc import Callable
from functools import partial, wraps

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import get_script_prefix, set_script_prefix
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from orgs import guards, mailer, notifications, services
from orgs.account_views import GuardedPost
from orgs.forms import ResetPasswordForm, ResetRequestForm
from orgs.models import User

RESET_LOCKED = "Too many password reset requests. Please try again in {wait}."
# How many API tokens the reset revoked and how many keep working, for the page that follows it, once.
TOKENS_AFTER = "password_reset_tokens_after"
# Whose password the link set, for that page too: a browser signed in as another account is told which one it was.
# The page is shown only while this is in the session: opened by its address alone, it would say a password was
# changed when none was.
ACCOUNT_AFTER = "password_reset_account_after"
# The reset was made in a browser signed in as the link's account, which it signed out too: that page says so.
SIGNED_OUT_HERE = "password_reset_signed_out_here"
# This browser asked for a link: "Check your inbox" is shown only then (and on reload), never by its address alone.
# Set for every address alike, with or without an account, so it tells nothing.
RESET_ASKED = "password_reset_asked"


def valid_for() -> str:
    """How long a link works, in words: "1 hour" at the default PASSWORD_RESET_TIMEOUT."""
    seconds = settings.PASSWORD_RESET_TIMEOUT
    count, unit = (seconds // 3600, "hour") if seconds % 3600 == 0 else (-(-seconds // 60), "minute")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def needs_mail(view: Callable) -> Callable:
    """Without EMAIL_URL every reset address answers "ask Opsion support": never a page saying a mail was sent."""

    @wraps(view)
    def run(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.EMAIL_CONFIGURED:
            context = {"support_url": settings.SUPPORT_URL, "posted": request.method == "POST"}
            return render(request, "registration/password_reset_unavailable.html", context)
        return view(request, *args, **kwargs)

    return run


def send_reset_email(*, user: User, domain: str, protocol: str, script_prefix: str) -> None:
    """Django's reset e-mail (PasswordResetForm.save's, plain text only) for `user`, on the mail thread: making the
    token and writing the message happen there too, so they cost an address with an account no time in its
    answer. Unlike Django's, a failure is not logged here (with its text, which can quote the address), but by
    mailer."""
    set_script_prefix(script_prefix)  # the request's, for {% url %}: the mail thread has none of its own
    context = {
        "email": user.email,
        "domain": domain,
        "site_name": "Opsion",
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "user": user,
        "token": default_token_generator.make_token(user),
        "protocol": protocol,
        "valid_for": valid_for(),
        # As the link's page offers to revoke them, only an account whose tokens still work is told they keep
        # working. Counted in the query that found the account (ResetRequestForm.get_users): this thread reads no
        # database.
        "api_tokens_working": user.api_tokens_working,
    }
    subject = "".join(render_to_string(PasswordResetView.subject_template_name, context).splitlines())
    body = render_to_string(PasswordResetView.email_template_name, context)
    EmailMultiAlternatives(subject, body, to=[user.email]).send()


class PasswordResetView(GuardedPost, auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"
    subject_template_name = "registration/password_reset_subject.txt"
    email_template_name = "registration/password_reset_email.txt"
    form_class = ResetRequestForm
    locked_message, kept_fields = RESET_LOCKED, ("email",)

    def refused(self, request):
        return guards.password_reset_request(request)  # nothing looked up, nothing sent

    def get_initial(self):
        # Signed in, they came from Change password's "Forgot your password?": their address is known, and typing it
        # again is only a chance to mistype it. Any address may still be typed instead.
        user = self.request.user
        return super().get_initial() | ({"email": user.email} if user.is_authenticated else {})

    def form_valid(self, form):
        # Alike for every address: the host read (ALLOWED_HOSTS refuses a forged one here, 400, not after the
        # answer), one query for the account, and the redirect; the rest, if there is an account, on the mail thread.
        link = {
            "domain": self.request.get_host(),
            "protocol": "https" if self.request.is_secure() else "http",
            "script_prefix": get_script_prefix(),
        }
        for user in form.get_users(form.cleaned_data["email"]):
            mailer.send_later(
                partial(send_reset_email, user=user, **link), what=f"password reset e-mail to user {user.pk}"
            )
        self.request.session[RESET_ASKED] = True
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"
    extra_context = {"valid_for": valid_for}

    def get(self, request, *args, **kwargs):
        if not request.session.get(RESET_ASKED):
            return redirect("password_reset")  # nothing was asked for here: the form that asks
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"support_url": settings.SUPPORT_URL}  # the last resort, linked


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's: the link's token moves into the session (so no Referer carries it) and the new password must
    meet the validators; a used, expired or garbled link gets a page offering a new one. The user may revoke their
    API tokens with it (ResetPasswordForm)."""

    template_name = "registration/password_reset_confirm.html"
    form_class = ResetPasswordForm

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        # Django's token ignores is_active: a link mailed before staff deactivated the account would still work.
        return user if user is not None and user.is_active else None

    def for_another(self) -> bool:
        """This browser is signed in as another account than the link's (a shared computer, a second account): the
        page must not say "you" of the link's account, and offers Sign out (SignOutView brings the link back)."""
        return self.request.user.is_authenticated and self.user is not None and self.request.user.pk != self.user.pk

    def get_form_kwargs(self):
        return super().get_form_kwargs() | {"for_another": self.for_another()}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"for_another": self.for_another()}

    def form_valid(self, form):
        # Read before the password changes: afterwards this session's user, if it is the link's account, is gone.
        signed_out_here = self.request.user.is_authenticated and not self.for_another()
        # The new password and the revocation commit together, or neither does; the e-mail goes once they have.
        with transaction.atomic():
            response = super().form_valid(form)  # sets the password
            tokens = services.password_changed(user=form.user, how="reset", revoke_api_tokens=form.revokes_api_tokens())
        self.request.session[TOKENS_AFTER] = [tokens.revoked, tokens.kept]
        self.request.session[ACCOUNT_AFTER] = form.user.email
        self.request.session[SIGNED_OUT_HERE] = signed_out_here
        guards.reset_forgiven(self.request, user=form.user)
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    """Says that the password was changed and what the reset did to the API tokens, once, right after the reset.
    Reloaded or reached otherwise, it cannot vouch for either, and sends the visitor to sign in (the next step)."""

    template_name = "registration/password_reset_complete.html"

    def get(self, request, *args, **kwargs):
        if ACCOUNT_AFTER not in request.session:
            return redirect("login")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        # Everything is read from the session before the user is: reading the user of a session the reset signed out
        # empties it.
        revoked, kept = self.request.session.pop(TOKENS_AFTER, None) or (0, 0)
        reset_account = self.request.session.pop(ACCOUNT_AFTER, "")
        signed_out_here = self.request.session.pop(SIGNED_OUT_HERE, False)
        # Still signed in, the reader is another account (the one reset was signed out): the sessions and tokens are
        # the reset account's, not "yours".
        whose = "its" if self.request.user.is_authenticated else "your"
        words = {
            "tokens_revoked": notifications.revoked_words(revoked, whose) if revoked else "",
            "tokens_kept": notifications.kept_words(kept, whose),
            "reset_account": reset_account,
            "signed_out_here": signed_out_here,
        }
        return super().get_context_data(**kwargs) | words


password_reset = needs_mail(PasswordResetView.as_view())
password_reset_done = needs_mail(PasswordResetDoneView.as_view())
password_reset_confirm = needs_mail(PasswordResetConfirmView.as_view())
password_reset_complete = needs_mail(PasswordResetCompleteView.as_view())
