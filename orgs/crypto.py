"""Encryption at rest for secrets: MultiFernet with keys from FIELD_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so a new key can be put first and old rows
re-encrypted later (`manage.py rotate_encryption_keys`). Independent of SECRET_KEY.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class DecryptionFailed(Exception):
    """None of the configured keys opens this ciphertext (a key was dropped too early)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes)."
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("no configured FIELD_ENCRYPTION_KEYS entry decrypts this value") from None


def is_current(ciphertext: str) -> bool:
    """True when the first (encrypting) key already opens this ciphertext (its signature is checked;
    nothing is decrypted)."""
    try:
        _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS[:1])).extract_timestamp(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first key. Raises DecryptionFailed."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("no configured FIELD_ENCRYPTION_KEYS entry decrypts this value") from None


class Sealed:
    """A secret as loaded from the database: ciphertext until `reveal()` is called.

    Its repr and str never show the secret, so a model instance in a traceback, a log line or
    the admin cannot leak it.
    """

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def reveal(self) -> str:
        return decrypt(self.ciphertext)

    # Templates call argument-free methods; this one they must refuse ({{ ….secret.reveal }} renders "").
    reveal.alters_data = True

    def readable(self) -> bool:
        """Whether a configured key opens this secret.

        Only the token's HMAC is checked (signing and encryption halves come from the same Fernet
        key), so no plaintext is ever produced just to answer the question.
        """
        try:
            fernet().extract_timestamp(self.ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def __repr__(self) -> str:
        return "<Sealed secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.ciphertext == self.ciphertext

    __hash__ = None


SEALED_MARKER = "fernet:"


class EncryptedTextField(models.TextField):
    """Stores a str encrypted; loads it as a `Sealed`. Only `isnull` lookups are allowed."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(value)

    def to_python(self, value):
        # loaddata hands back what dumpdata wrote: ciphertext behind a marker that no
        # plaintext key can start with. Anything else is plaintext, encrypted on save.
        if isinstance(value, str) and value.startswith(SEALED_MARKER):
            return Sealed(value.removeprefix(SEALED_MARKER))
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.ciphertext
        return encrypt(str(value))

    def value_to_string(self, obj):
        # dumpdata writes the ciphertext, never the secret.
        value = self.value_from_object(obj)
        if value is None:
            return None
        return SEALED_MARKER + (value.ciphertext if isinstance(value, Sealed) else encrypt(str(value)))

    def get_lookup(self, lookup_name):
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)
