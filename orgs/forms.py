from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.views.decorators.debug import sensitive_variables

from orgs import recent_auth, services


class SignInForm(AuthenticationForm):
    username = forms.EmailField(
        label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        # Django's says both fields may be case-sensitive; the address is not (it is lower-cased below).
        "invalid_login": "Please enter a correct e-mail address and password. The password is case-sensitive.",
    }

    def clean_username(self) -> str:
        # Addresses are stored lower-cased (UserManager.create_user), so "Ada@Example.com" must sign in too.
        return self.cleaned_data["username"].lower()


def _lifetime_words(days: int) -> str:
    return "1 year" if days == 365 else f"{days} days"


class ApiTokenForm(forms.Form):
    """A new API token's name and lifetime; and, given `confirming` (the user, whose session last saw their password
    too long ago: orgs.recent_auth), their password, checked here. The view counts the guess first (guards)."""

    name = forms.CharField(max_length=100, label="Token name")
    # Not required: a page loaded before the choice existed posts none, and gets the default (never "no expiry").
    expires = forms.TypedChoiceField(
        label="Expires",
        choices=[(days, _lifetime_words(days)) for days in services.TOKEN_LIFETIME_CHOICES],
        coerce=int,
        required=False,
        empty_value=services.TOKEN_DEFAULT_DAYS,
        initial=services.TOKEN_DEFAULT_DAYS,
        error_messages={"invalid_choice": "Choose when the token expires: 30 days, 90 days or 1 year."},
    )

    def __init__(self, *args, confirming=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = confirming
        if confirming is not None:
            self.fields["password"] = forms.CharField(
                label="Confirm your password",
                strip=False,
                widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
                # Also what a page loaded within the window and sent after it is told: it showed no such field.
                error_messages={"required": _asked_for_password()},
            )

    @sensitive_variables("password")  # as Django's clean_old_password: error pages list this frame's variables
    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(WRONG_PASSWORD, code="password_incorrect")
        return password


WRONG_PASSWORD = "Your password was entered incorrectly. Please enter it again."


def _asked_for_password() -> str:
    window = recent_auth.window()
    if window is None:  # RECENT_AUTHENTICATION_SECONDS=0: asked every time
        return "Enter your password to create a token."
    return f"Enter your password to create a token: you last entered it more than {window} ago."
