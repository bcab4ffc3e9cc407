from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orgs import crypto
from orgs.models import ClaudeApiKey


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first FIELD_ENCRYPTION_KEYS entry. "
        "Afterwards the keys after the first can be dropped."
    )

    def handle(self, *args, **options):
        moved = 0
        unreadable = []
        with transaction.atomic():
            for row in ClaudeApiKey.objects.select_for_update().only("id", "secret", "organisation_id"):
                if crypto.is_current(row.secret.ciphertext):
                    continue
                try:
                    rotated = crypto.rotate(row.secret.ciphertext)
                except crypto.DecryptionFailed:
                    unreadable.append(row.organisation_id)
                    continue
                ClaudeApiKey.objects.filter(pk=row.pk).update(secret=crypto.Sealed(rotated))
                moved += 1
        self.stdout.write(f"Re-encrypted {moved} stored key(s) with the first FIELD_ENCRYPTION_KEYS entry.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} stored key(s) could not be decrypted with any configured key "
                f"(organisation ids {unreadable}); they were left as they are."
            )
