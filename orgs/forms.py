from django import forms
from django.contrib.auth.forms import (
    AuthenticationForm,
    PasswordChangeForm,
    PasswordResetForm,
    SetPasswordForm,
    _unicode_ci_compare,  # Django's own test of the address, kept exactly as get_users below replaces it
)
from django.views.decorators.debug import sensitive_variables

from opsion.reporting import holds_secret
from orgs import recent_auth, selectors, services
from orgs.models import User

# The site's word, where Django's EmailValidator says "Enter a valid email address."
INVALID_ADDRESS = {"invalid": "Enter a valid e-mail address."}
NOT_AN_ADDRESS = "That looks like a Claude API key or an API token, not an e-mail address: it was not kept."
ADDRESS_HOLDS_SECRET = f"{NOT_AN_ADDRESS} Enter the e-mail address you sign in with."


class AddressField(forms.EmailField):
    """The address someone signs in with. One holding a Claude API key or an API token (the wrong clipboard, where
    the browser does not check the address) is refused saying so, and the box comes back empty: a key typed there is
    never sent back, even to its typist, as a token's name holding one is not (TokenNameField)."""

    def __init__(self, *, label: str = "E-mail", holds_secret_message: str = ADDRESS_HOLDS_SECRET, **kwargs) -> None:
        super().__init__(label=label, error_messages=INVALID_ADDRESS, **kwargs)
        self.holds_secret_message = holds_secret_message

    def bound_data(self, data, initial):
        return "" if data and holds_secret(data) else super().bound_data(data, initial)

    def clean(self, value):
        if value and holds_secret(value):
            raise forms.ValidationError(self.holds_secret_message, code="holds_secret")
        return super().clean(value)


class SignInForm(AuthenticationForm):
    username = AddressField(widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))

    error_messages = {
        **AuthenticationForm.error_messages,
        # Django's says both fields may be case-sensitive; the address is not (it is lower-cased below).
        "invalid_login": "Please enter a correct e-mail address and password. The password is case-sensitive.",
    }

    def clean_username(self) -> str:
        # Addresses are stored lower-cased (UserManager.create_user), so "Ada@Example.com" must sign in too.
        return self.cleaned_data["username"].lower()


class ResetRequestForm(PasswordResetForm):
    """Django's, with the site's word for a malformed address."""

    email = AddressField(max_length=254)

    def get_users(self, email):
        """Django's accounts for `email`, in its one query, each also carrying how many of its API tokens still work
        (`api_tokens_working`), which its e-mail mentions only if any do: a second query for a known address only
        would let the answer's time tell that the address has an account."""
        users = User._default_manager.filter(email__iexact=email, is_active=True).annotate(
            api_tokens_working=selectors.api_tokens_working_per_user()
        )
        return (user for user in users if user.has_usable_password() and _unicode_ci_compare(email, user.email))


def _lifetime_words(days: int) -> str:
    return "1 year" if days == 365 else f"{days} days"


class TokenNameField(forms.CharField):
    """A token's name, refused first (whatever its length) when it holds a Claude API key or an API token, as the
    service refuses it: the one error said is what is wrong with it."""

    def clean(self, value):
        if value and holds_secret(value):
            raise forms.ValidationError(services.TOKEN_NAME_HOLDS_SECRET, code="holds_secret")
        return super().clean(value)


class ApiTokenForm(forms.Form):
    """A new API token's name and lifetime; and, given `confirming` (the user, whose session last saw their password
    too long ago: orgs.recent_auth), their password, checked here. The view counts the guess first (guards)."""

    # The service's own words for a missing or long name (Django's "This field is required." under a box showing
    # the spaces typed said nothing of what to type); the field trims, as the service does.
    name = TokenNameField(
        max_length=services.TOKEN_NAME_MAX,
        label="Token name",
        error_messages={"required": services.TOKEN_NAME_MISSING, "max_length": services.TOKEN_NAME_TOO_LONG},
    )
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

    @classmethod
    def kept(cls, *, name: str, expires: str) -> "ApiTokenForm":
        """The form as it stood when its post met an expired session (orgs.drafts): the name typed, and the lifetime
        chosen while it is still one offered (the default otherwise), for its user to send again."""
        offered = {str(days): days for days in services.TOKEN_LIFETIME_CHOICES}
        return cls(initial={"name": name, "expires": offered.get(expires, services.TOKEN_DEFAULT_DAYS)})

    def typed_name(self) -> str:
        """The name for the box after a refusal, trimmed as it would be stored: spaces alone come back as nothing,
        so the browser's `required` stops the next empty try there."""
        typed = (self["name"].value() or "").strip()
        return "" if holds_secret(typed) else typed  # a key typed there is never sent back, even to its typist

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


class RevokesApiTokens:
    """A new password's form which, for a user holding API tokens that still work, offers to revoke them all in the
    same step (unchecked): someone changing a password they fear is known wants the tokens gone too. A user with
    none is offered nothing."""

    def __init__(self, user, *args, for_another: bool = False, **kwargs) -> None:
        """`for_another`: the reader is signed in as another account (a reset link opened in their browser), so the
        tokens are named as the link's account's, not "my"."""
        super().__init__(user, *args, **kwargs)
        self.working_tokens = selectors.api_tokens_working(user)
        if self.working_tokens:
            tokens = _tokens(self.working_tokens)
            self.fields["revoke_api_tokens"] = forms.BooleanField(
                required=False,
                label=f"Also revoke the {tokens} of {user.email}" if for_another else f"Also revoke my {tokens}",
                widget=forms.CheckboxInput(attrs={"aria-describedby": "revoke-api-tokens-hint"}),
            )

    def revokes_api_tokens(self) -> bool:
        return bool(self.cleaned_data.get("revoke_api_tokens"))


def _tokens(count: int) -> str:
    return "API token" if count == 1 else f"{count} API tokens"


class RefusesWhereTyped:
    """A new password's form whose validators' messages ("This password is too short.") sit under New password, the
    field they are about, which then takes focus: Django puts them under the confirmation."""

    def validate_password_for_user(self, user, *args, **kwargs) -> None:
        # SetPasswordForm.clean names the confirmation ("new_password2"); whatever it names, the new password it is.
        super().validate_password_for_user(user, "new_password1")


class RetypedWhole:
    """A password form comes back empty after a refusal, so its first field takes focus (registration/
    _password_fields.html), described by the messages of every field refused: `refusal_ids`."""

    def refusal_ids(self) -> str:
        return " ".join(f"{field.id_for_label}-error" for field in self.visible_fields() if field.errors)


class ChangePasswordForm(RetypedWhole, RevokesApiTokens, RefusesWhereTyped, PasswordChangeForm):
    """The console's Change password form."""


class ResetPasswordForm(RetypedWhole, RevokesApiTokens, RefusesWhereTyped, SetPasswordForm):
    """A reset link's new-password form."""
