from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orgs import crypto
from orgs.models import ClaudeApiKey


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first FIELD_ENCRYPTION_KEYS entry, in one transaction. "
        "Exits 0 when every stored key is then encrypted with it (the other entries can be dropped); exits 1, "
        "listing their organisations, when some no configured entry decrypts (those are left as they are)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be re-encrypted and list the unreadable; change nothing (same exit codes).",
        )

    def handle(self, *args, dry_run: bool = False, **options):
        moved, current, unreadable = 0, 0, []
        rows = ClaudeApiKey.objects.select_related("organisation").only("id", "secret", "organisation__slug")
        with transaction.atomic():
            if not dry_run:
                # Only the key rows: a save locks its organisation row first, then waits here for the key's.
                rows = rows.select_for_update(of=("self",))
            for row in rows.order_by("organisation__slug"):
                if crypto.is_current(row.secret.ciphertext):
                    current += 1
                    continue
                try:
                    rotated = crypto.rotate(row.secret.ciphertext)
                except crypto.DecryptionFailed:
                    unreadable.append(row.organisation.slug)
                    continue
                if not dry_run:
                    ClaudeApiKey.objects.filter(pk=row.pk).update(secret=crypto.Sealed(rotated))
                moved += 1
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(
            f"{verb} {moved} stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; {current} already were."
        )
        if unreadable:
            self._refuse(unreadable, total=moved + current + len(unreadable))
        if dry_run:
            return
        if len(settings.FIELD_ENCRYPTION_KEYS) == 1:
            self.stdout.write("Every stored key is encrypted with the only FIELD_ENCRYPTION_KEYS entry.")
        else:
            self.stdout.write("Every stored key is now encrypted with the first entry: the others can be dropped.")

    def _refuse(self, slugs: list[str], *, total: int) -> None:
        # One organisation a line, by slug as the logs and pages name them, so the list can be read or piped.
        self.stdout.write("Organisations whose stored key no FIELD_ENCRYPTION_KEYS entry decrypts:")
        for slug in slugs:
            self.stdout.write(f"  {slug}")
        raise CommandError(
            f"{len(slugs)} of {total} stored key(s) could not be decrypted with any FIELD_ENCRYPTION_KEYS entry and "
            "were left as they are; those organisations' AI Insights refuse queries until they can be. If an entry "
            "was dropped too early or mistyped, put the key they were saved with back in FIELD_ENCRYPTION_KEYS "
            "(after the first), restart every process with it, and run this again; otherwise an Owner or Admin of "
            "each must save their Claude API key again."
        )
