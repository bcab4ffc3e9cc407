"""Forgot your password? A link by e-mail, with Django's views and token: it works once (the token covers the
password hash) and for PASSWORD_RESET_TIMEOUT; the new password meets the validators and signs out every session.

The request page says the same for every address, and the e-mail, if any, is sent after the answer is written,
so nothing a requester can see or time tells whether an address has an account. Without EMAIL_URL Opsion
cannot send mail: every page here says to ask Opsion support instead (staff set a new password in admin).
"""

import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from orgs import guards
from orgs.views import GuardedPost

log = logging.getLogger("opsion.password_reset")

RESET_LOCKED = "Too many password reset requests. Please wait an hour and try again."


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


class RedirectThenMail(HttpResponseRedirect):
    """The redirect to "check your inbox", which sends the e-mail only when it is closed. A WSGI server (gunicorn,
    runserver) closes a response after writing its last byte, so neither whether the address has an account nor
    how slow the mail server is changes when the answer arrives. The cost is a worker thread held for the send
    (EMAIL_TIMEOUT at most), and a mail lost if the process dies in between: the user asks again."""

    def __init__(self, url: str, send: Callable[[], None]) -> None:
        super().__init__(url)
        self._send = send

    def close(self) -> None:
        send, self._send = self._send, None
        try:
            if send is not None:
                send()
        except Exception as exc:  # Django's close() would swallow it without a word
            log.error("password reset e-mail not sent (%s)", type(exc).__name__)
        super().close()


class PasswordResetView(GuardedPost, auth_views.PasswordResetView):
    template_name = "registration/password_reset_form.html"
    subject_template_name = "registration/password_reset_subject.txt"
    email_template_name = "registration/password_reset_email.txt"
    locked_message, retry_after, kept_fields = RESET_LOCKED, guards.PASSWORD_RESET_WINDOW_SECONDS, ("email",)

    def refused(self, request):
        return guards.password_reset_request(request)  # nothing looked up, nothing sent

    def form_valid(self, form):
        options = {
            # Read now: ALLOWED_HOSTS refuses a forged Host here (400), not silently after the answer is written.
            "domain_override": self.request.get_host(),
            "use_https": self.request.is_secure(),
            "subject_template_name": self.subject_template_name,
            "email_template_name": self.email_template_name,
            "request": self.request,
            "extra_email_context": {"site_name": "Opsion", "valid_for": valid_for()},
        }
        return RedirectThenMail(self.get_success_url(), lambda: form.save(**options))


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"
    extra_context = {"valid_for": valid_for}


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's: the link's token moves into the session (so no Referer carries it) and the new password must
    meet the validators; a used, expired or garbled link gets a page offering a new one."""

    template_name = "registration/password_reset_confirm.html"

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        # Django's token ignores is_active: a link mailed before staff deactivated the account would still work.
        return user if user is not None and user.is_active else None


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"


password_reset = needs_mail(PasswordResetView.as_view())
password_reset_done = needs_mail(PasswordResetDoneView.as_view())
password_reset_confirm = needs_mail(PasswordResetConfirmView.as_view())
password_reset_complete = needs_mail(PasswordResetCompleteView.as_view())
