from django import forms
from django.contrib.auth.forms import AuthenticationForm


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


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Token name")
