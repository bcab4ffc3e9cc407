"""Encryption at rest for secrets: MultiFernet with keys from FIELD_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so a new key can be put first and old rows
re-encrypted later (`manage.py rotate_encryption_keys`). Independent of SECRET_KEY.

Each stored key is bound to its organisation: it is encrypted not under the FIELD_ENCRYPTION_KEYS entry itself but
under a Fernet key derived from the entry and the organisation's primary key (HKDF-SHA256). Someone who can write to
the database but holds no entry could otherwise copy organisation B's ciphertext into A's row, and A's queries would
run, and bill, on B's key; moved, it fails its signature as a ciphertext of a dropped entry does ("cannot be
decrypted"), and a signature check still answers "readable?" without decrypting anything. Fernet has no associated
data to bind it with, and a bound plaintext (the organisation's id beside the key) could be checked only by
decrypting it.
"""

import base64
import hmac
from functools import cache, lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class DecryptionFailed(Exception):
    """None of the configured keys opens this ciphertext for this organisation (a key was dropped too early, or the
    ciphertext was moved from another organisation's row)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes)."
        ) from None


@cache
def _extracted(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    """HKDF-SHA256's extract step of each entry (no salt), once per list: only the expand step is per organisation."""
    _fernet(keys)  # a malformed entry stops here, saying so
    return tuple(hmac.digest(bytes(32), base64.urlsafe_b64decode(key), "sha256") for key in keys)


def derived_key(extracted: bytes, organisation_id: int) -> bytes:
    """HKDF-SHA256's expand step for 32 bytes (one HMAC block), bound to the organisation: with `_extracted`, the same
    bytes as cryptography's HKDF(SHA256(), 32, salt=None, info=…) at a fifth of its cost, which the admin's list
    pays once per organisation (orgs.admin_key_state)."""
    info = f"opsion claude api key of organisation {organisation_id}".encode()
    return hmac.digest(extracted, info + b"\x01", "sha256")


@lru_cache(maxsize=4096)
def _bound_fernet(keys: tuple[str, ...], organisation_id: int) -> MultiFernet:
    return MultiFernet(
        [Fernet(base64.urlsafe_b64encode(derived_key(key, organisation_id))) for key in _extracted(keys)]
    )


def fernet(organisation_id: int) -> MultiFernet:
    """Every FIELD_ENCRYPTION_KEYS entry, each bound to the organisation `organisation_id`; the first encrypts."""
    return _bound_fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), _organisation(organisation_id))


def _organisation(organisation_id) -> int:
    if not isinstance(organisation_id, int) or isinstance(organisation_id, bool):
        # A programming error, never "unreadable": an unbound secret would otherwise read as a lost key.
        raise TypeError(f"a secret is bound to an organisation's primary key, not {type(organisation_id).__name__}")
    return organisation_id


def encrypt(plaintext: str, *, organisation_id: int) -> str:
    return fernet(organisation_id).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, *, organisation_id: int) -> str:
    try:
        return fernet(organisation_id).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("no configured FIELD_ENCRYPTION_KEYS entry decrypts this value") from None


def is_readable(ciphertext: str, *, organisation_id: int) -> bool:
    """Whether a configured key, bound to the organisation, opens this ciphertext (its signature is checked;
    nothing is decrypted)."""
    try:
        fernet(organisation_id).extract_timestamp(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def is_current(ciphertext: str, *, organisation_id: int) -> bool:
    """True when the first (encrypting) key, bound to the organisation, already opens this ciphertext (its signature
    is checked; nothing is decrypted)."""
    first = _bound_fernet(tuple(settings.FIELD_ENCRYPTION_KEYS[:1]), _organisation(organisation_id))
    try:
        first.extract_timestamp(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def rotate(ciphertext: str, *, organisation_id: int) -> str:
    """Re-encrypt with the first key, bound to the same organisation. Raises DecryptionFailed."""
    try:
        return fernet(organisation_id).rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("no configured FIELD_ENCRYPTION_KEYS entry decrypts this value") from None


def bind(ciphertext: str, *, organisation_id: int) -> str:
    """A ciphertext of the format before binding (under an entry itself) re-encrypted bound to the organisation, with
    the first key: the data migration's, once. Raises DecryptionFailed.

    Nothing else reads that format: read beside the bound one, a ciphertext copied from another organisation's row
    (or an old backup of it) would work again."""
    try:
        plaintext = _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).decrypt(ciphertext.encode())
    except InvalidToken:
        raise DecryptionFailed("no configured FIELD_ENCRYPTION_KEYS entry decrypts this value") from None
    return fernet(organisation_id).encrypt(plaintext).decode()


def unbind(ciphertext: str, *, organisation_id: int) -> str:
    """`bind` undone (the data migration reversed): re-encrypted under the first entry itself. Raises
    DecryptionFailed."""
    plaintext = decrypt(ciphertext, organisation_id=organisation_id).encode()
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS)).encrypt(plaintext).decode()


class Sealed:
    """A secret as loaded from the database: ciphertext until `reveal()` is called.

    Its repr and str never show the secret, so a model instance in a traceback, a log line or
    the admin cannot leak it. It opens only for the organisation it is bound to (`bound_to`; a loaded
    ClaudeApiKey's is bound to its own).
    """

    __slots__ = ("ciphertext", "organisation_id")

    def __init__(self, ciphertext: str, organisation_id: int | None = None) -> None:
        self.ciphertext = ciphertext
        self.organisation_id = organisation_id

    def bound_to(self, organisation_id: int) -> "Sealed":
        return Sealed(self.ciphertext, organisation_id)

    def reveal(self) -> str:
        return decrypt(self.ciphertext, organisation_id=self.organisation_id)

    # Templates call argument-free methods; this one they must refuse ({{ ….secret.reveal }} renders "").
    reveal.alters_data = True

    def readable(self) -> bool:
        """Whether a configured key, bound to this secret's organisation, opens it.

        Only the token's HMAC is checked (signing and encryption halves come from the same Fernet
        key), so no plaintext is ever produced just to answer the question.
        """
        return is_readable(self.ciphertext, organisation_id=self.organisation_id)

    def __repr__(self) -> str:
        return "<Sealed secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.ciphertext == self.ciphertext

    __hash__ = None


SEALED_MARKER = "fernet:"


class EncryptedTextField(models.TextField):
    """Stores a str encrypted, bound to the row's organisation (its `organisation_id`); loads it as a `Sealed`, which
    the model binds as it loads the row (ClaudeApiKey.from_db). Only `isnull` lookups are allowed."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(value)

    def to_python(self, value):
        # loaddata hands back what dumpdata wrote: ciphertext behind a marker that no
        # plaintext key can start with. Anything else is plaintext, encrypted on save.
        if isinstance(value, str) and value.startswith(SEALED_MARKER):
            return Sealed(value.removeprefix(SEALED_MARKER))
        return value

    def pre_save(self, model_instance, add):
        # Plaintext is encrypted here, where the row (and so its organisation) is known: get_prep_value is not told.
        value = super().pre_save(model_instance, add)
        if value is None:
            return value
        organisation_id = model_instance.organisation_id
        if isinstance(value, Sealed):  # as stored (loaddata, a row copied): bound to the row, whether it opens or not
            sealed = value.bound_to(organisation_id)
        else:
            sealed = Sealed(encrypt(str(value), organisation_id=organisation_id), organisation_id)
        setattr(model_instance, self.attname, sealed)
        return sealed

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.ciphertext
        # An update() or a filter() naming plaintext: it could be bound to no organisation.
        raise TypeError("plaintext is saved through a model instance (save, create), which binds it to its row")

    def value_to_string(self, obj):
        # dumpdata writes the ciphertext, never the secret.
        value = self.value_from_object(obj)
        if value is None:
            return None
        if not isinstance(value, Sealed):
            value = Sealed(encrypt(str(value), organisation_id=obj.organisation_id))
        return SEALED_MARKER + value.ciphertext

    def get_lookup(self, lookup_name):
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)
