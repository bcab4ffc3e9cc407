"""The Claude API key at rest: encrypted with FIELD_ENCRYPTION_KEYS, independent of SECRET_KEY, never dumped."""

import base64
import io
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext

from orgs import crypto, services
from orgs.models import ClaudeApiKey, Organisation
from tests.base import CANARY_KEY, GOOD_KEY


def save(world, key: str = CANARY_KEY) -> None:
    services.claude_api_key_set(membership=world.membership(world.acme_admin, world.acme), raw_key=key, ip=None)


def raw_column() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM orgs_claudeapikey")
        (value,) = cursor.fetchone()
    return value


def reload() -> ClaudeApiKey:
    return ClaudeApiKey.objects.get()


def test_the_stored_column_holds_ciphertext_not_the_key(world, settings):
    save(world)

    stored = raw_column()

    assert CANARY_KEY not in stored
    assert "CANARY" not in stored
    assert "sk-ant-" not in stored
    assert crypto.decrypt(stored, organisation_id=world.acme.pk) == CANARY_KEY
    # Not under the entry itself, but under a key derived from it for acme alone.
    with pytest.raises(InvalidToken):
        Fernet(settings.FIELD_ENCRYPTION_KEYS[0]).decrypt(stored.encode())


def test_the_same_key_encrypts_differently_each_time(world):
    save(world)
    first = raw_column()

    save(world)

    assert raw_column() != first
    assert reload().secret.reveal() == CANARY_KEY


def test_a_loaded_key_stays_sealed_until_revealed(world):
    save(world)

    row = reload()

    assert isinstance(row.secret, crypto.Sealed)
    for text in (repr(row.secret), str(row.secret), repr(row), str(row), repr(vars(row))):
        assert CANARY_KEY not in text
    assert row.secret.reveal() == CANARY_KEY


def test_no_template_can_reveal_a_loaded_key(world):
    # Templates call argument-free methods: {{ key.secret.reveal }} must print nothing, even when the
    # organisation (as on every page) carries its key row.
    save(world)
    org = Organisation.objects.select_related("claude_api_key").get(pk=world.acme.pk)

    page = Template("[{{ org.claude_api_key.secret.reveal }}][{{ org.claude_api_key.secret }}]").render(
        Context({"org": org})
    )

    assert CANARY_KEY not in page
    assert page == "[][&lt;Sealed secret&gt;]"


def test_changing_secret_key_keeps_keys_readable(world, settings):
    save(world)

    settings.SECRET_KEY = "an-entirely-different-secret-key-after-a-rotation-0123456789"

    assert reload().secret.reveal() == CANARY_KEY


def test_a_new_key_put_first_keeps_old_rows_readable_and_encrypts_new_ones(world, settings):
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()
    save(world)

    settings.FIELD_ENCRYPTION_KEYS = [new, old]

    assert reload().secret.reveal() == CANARY_KEY
    save(world, GOOD_KEY)
    assert crypto.is_current(raw_column(), organisation_id=world.acme.pk)
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert reload().secret.reveal() == GOOD_KEY


def test_a_wrong_key_fails_loudly_instead_of_returning_ciphertext(world, settings):
    save(world)
    row = reload()

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(crypto.DecryptionFailed):
        row.secret.reveal()
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(raw_column(), organisation_id=world.acme.pk)


def test_a_tampered_ciphertext_fails_loudly(world):
    save(world)
    ciphertext = raw_column()
    tampered = ciphertext[:-6] + ("A" if ciphertext[-6] != "A" else "B") + ciphertext[-5:]

    with pytest.raises(crypto.DecryptionFailed):
        crypto.Sealed(tampered, world.acme.pk).reveal()


def test_malformed_encryption_keys_are_a_configuration_error(world, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]

    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        crypto.encrypt("x", organisation_id=world.acme.pk)


def test_only_isnull_lookups_are_allowed(world):
    save(world)

    assert ClaudeApiKey.objects.filter(secret__isnull=False).count() == 1
    assert ClaudeApiKey.objects.filter(secret__isnull=True).count() == 0
    for lookup in ("secret", "secret__exact", "secret__iexact", "secret__contains", "secret__startswith", "secret__in"):
        value = [CANARY_KEY] if lookup.endswith("__in") else CANARY_KEY
        with pytest.raises(FieldError):
            list(ClaudeApiKey.objects.filter(**{lookup: value}))


def test_dumpdata_writes_ciphertext_never_the_key(world):
    save(world)
    out = io.StringIO()

    call_command("dumpdata", "orgs", stdout=out)

    dump = out.getvalue()
    assert CANARY_KEY not in dump
    (row,) = [obj for obj in json.loads(dump) if obj["model"] == "orgs.claudeapikey"]
    assert row["fields"]["secret"].startswith(crypto.SEALED_MARKER)
    ciphertext = row["fields"]["secret"].removeprefix(crypto.SEALED_MARKER)
    assert crypto.decrypt(ciphertext, organisation_id=world.acme.pk) == CANARY_KEY


def test_loaddata_of_a_dump_restores_a_readable_key(world, tmp_path):
    save(world)
    dump = tmp_path / "keys.json"
    call_command("dumpdata", "orgs.claudeapikey", output=str(dump))
    ClaudeApiKey.objects.all().delete()

    call_command("loaddata", str(dump), verbosity=0)

    assert ClaudeApiKey.objects.get(organisation=world.acme).secret.reveal() == CANARY_KEY


def test_dumpdata_of_everything_never_contains_the_key(world):
    save(world)
    out = io.StringIO()

    call_command("dumpdata", stdout=out)

    assert CANARY_KEY not in out.getvalue()


def test_removing_the_key_deletes_the_ciphertext(world):
    save(world)
    membership = world.membership(world.acme_admin, world.acme)

    services.claude_api_key_remove(membership=membership, ip=None)

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM orgs_claudeapikey")
        assert cursor.fetchone() == (0,)


def copy_ciphertext(*, source: Organisation, target: Organisation) -> None:
    """What someone able to write to the database, holding no FIELD_ENCRYPTION_KEYS entry, can do: put one
    organisation's stored ciphertext into another's row."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orgs_claudeapikey SET secret = (SELECT secret FROM orgs_claudeapikey WHERE organisation_id = %s) "
            "WHERE organisation_id = %s",
            [source.pk, target.pk],
        )


def test_a_ciphertext_copied_into_another_organisations_row_cannot_be_decrypted_there(world):
    # Before, it opened in any row: acme's queries ran, and billed, on initech's key.
    save(world, GOOD_KEY)
    services.claude_api_key_set(
        membership=world.membership(world.initech_admin, world.initech), raw_key=CANARY_KEY, ip=None
    )

    copy_ciphertext(source=world.initech, target=world.acme)

    moved = ClaudeApiKey.objects.get(organisation=world.acme).secret
    assert not moved.readable()
    with pytest.raises(crypto.DecryptionFailed):
        moved.reveal()
    assert ClaudeApiKey.objects.get(organisation=world.initech).secret.reveal() == CANARY_KEY  # still its own


def test_a_secret_bound_to_no_organisation_is_a_programming_error_not_an_unreadable_key(world):
    save(world)

    with pytest.raises(TypeError):
        crypto.Sealed(raw_column()).reveal()
    with pytest.raises(TypeError):
        ClaudeApiKey.objects.filter(organisation=world.acme).update(secret=CANARY_KEY)  # plaintext, bound to nothing


def test_a_key_loaded_without_its_organisation_id_is_refused_at_once_not_read_by_another_query(world):
    # Before, `.only("secret")` worked but cost a second query per row, to fetch the organisation_id that binds it.
    save(world)

    for rows in (
        ClaudeApiKey.objects.only("secret"),
        ClaudeApiKey.objects.defer("organisation"),
        Organisation.objects.select_related("claude_api_key").only("claude_api_key__secret").filter(slug="acme"),
    ):
        with CaptureQueriesContext(connection) as queries, pytest.raises(FieldError, match="organisation_id"):
            list(rows)
        assert len(queries) == 1


def test_a_deferred_secret_loads_with_its_organisation_id_in_one_query(world):
    save(world)
    row = ClaudeApiKey.objects.select_related("organisation").defer("secret").get()

    with CaptureQueriesContext(connection) as queries:
        secret = row.secret
        name = row.organisation.name  # the organisation loaded with the row is kept

    assert len(queries) == 1  # before: two, the second for organisation_id
    assert "organisation_id" in queries[0]["sql"]
    assert (secret.reveal(), name) == (CANARY_KEY, world.acme.name)
    assert ClaudeApiKey.objects.only("status").get().secret.reveal() == CANARY_KEY


def test_a_deferred_secret_copied_from_another_organisation_still_cannot_be_decrypted(world):
    save(world, GOOD_KEY)
    services.claude_api_key_set(
        membership=world.membership(world.initech_admin, world.initech), raw_key=CANARY_KEY, ip=None
    )
    copy_ciphertext(source=world.initech, target=world.acme)

    moved = ClaudeApiKey.objects.only("status").get(organisation=world.acme).secret

    with pytest.raises(crypto.DecryptionFailed):
        moved.reveal()


def test_each_organisations_key_is_derived_by_hkdf_sha256_from_each_entry(settings):
    # README names the derivation; crypto computes its two steps itself, at a fifth of the library's cost.
    entry = settings.FIELD_ENCRYPTION_KEYS[0]
    info = b"opsion claude api key of organisation 42"

    derived = crypto.derived_key(crypto._extracted((entry,))[0], 42)

    assert derived == HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(base64.urlsafe_b64decode(entry))
    assert derived != crypto.derived_key(crypto._extracted((entry,))[0], 43)
