"""Each stored Claude API key re-encrypted bound to its organisation (orgs.crypto).

Before, a ciphertext opened in any organisation's row: someone able to write to the database, without any
FIELD_ENCRYPTION_KEYS entry, could copy organisation B's into A's row, and A's queries ran and billed on B's key. Each row
is read under the entries as they stand and re-encrypted with the first, bound to its organisation. A row no entry
opens is left as it is: it was unreadable before, and stays so ("save it again"). Reversed, each row is re-encrypted
under the first entry itself again; a row that no longer opens bound to its own organisation is left as it is.

It cannot tell a ciphertext copied into a row before it ran from one saved there: a database suspected of such a write
needs its keys saved again by their organisations.
"""

from django.db import migrations

from orgs import crypto


def _each_row(apps, change) -> None:
    ClaudeApiKey = apps.get_model("orgs", "ClaudeApiKey")
    for pk, organisation_id, secret in ClaudeApiKey.objects.values_list("pk", "organisation_id", "secret").iterator():
        try:
            ciphertext = change(secret.ciphertext, organisation_id=organisation_id)
        except crypto.DecryptionFailed:
            continue
        ClaudeApiKey.objects.filter(pk=pk).update(secret=crypto.Sealed(ciphertext))


def bind(apps, schema_editor) -> None:
    _each_row(apps, crypto.bind)


def unbind(apps, schema_editor) -> None:
    _each_row(apps, crypto.unbind)


class Migration(migrations.Migration):
    dependencies = [("orgs", "0012_outbox_prune_indexes")]

    operations = [migrations.RunPython(bind, unbind, elidable=False)]
