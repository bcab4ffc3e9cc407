import signal
import threading
import time
from argparse import ArgumentTypeError
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, transaction

from orgs import crypto
from orgs.models import ClaudeApiKey

# Rows re-encrypted per transaction. Each batch's key rows are locked only until it commits, so a key save (and
# the first answer after one) waits for one batch, well under a second, rather than for the whole run.
BATCH_SIZE = 200


def _batch_size(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ArgumentTypeError("--batch-size must be a whole number of at least 1")
    return int(value)


def _pauses_between_batches() -> bool:
    """SQLite has one write lock and no queue for it: a writer waiting for it (a key save, any query's write to the
    rolling limit) polls, at best every 100 ms, and would find it taken by the next batch every time, waiting for the
    whole run. Between batches the run lets go of it for as long as a batch held it."""
    return connections[ClaudeApiKey.objects.db].vendor == "sqlite"


@dataclass
class Tally:
    moved: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)
    in_batch: bool = False  # a batch has begun and is not yet counted: Ctrl-C now rolls it back


class HeldCtrlC:
    """Ctrl-C (SIGINT) arriving between hold() and the end of the block is delivered at its end, once the block's
    work is done, rather than part-way through it. Before hold() it stops the block as usual."""

    def __enter__(self) -> "HeldCtrlC":
        self._holding, self._held = False, False
        return self

    def hold(self) -> None:
        # Only the main thread receives signals (and may set their handlers); a run in another has none to hold.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._hold)
            self._holding = True

    def _hold(self, signum, frame) -> None:
        self._held = True

    def __exit__(self, *exc) -> None:
        if self._holding:
            signal.signal(signal.SIGINT, self._previous)
            if self._held:
                signal.raise_signal(signal.SIGINT)  # to the handler it would have met: KeyboardInterrupt, normally


class Command(BaseCommand):
    help = (
        "Re-encrypt every organisation's stored Claude API key with the first FIELD_ENCRYPTION_KEYS entry, a batch "
        "of keys per transaction; run it once every process has that entry first (README, Key rotation). A run "
        "stopped part-way keeps the batches it committed (Ctrl-C says how many, and exits 130): run it again to "
        "finish. Exits 0 when every stored key is then encrypted with the first entry (the other entries can be "
        "dropped); exits 1, listing their organisations, when some no configured entry decrypts (those are left as "
        "they are). --check confirms, for a script, that the other entries can be dropped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=(
                "Count what would be re-encrypted and list the unreadable; change nothing. Exits 1 only for the "
                "unreadable, as a run does: the other entries can be dropped only once it says Would re-encrypt 0."
            ),
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help=(
                "A dry run for scripts, before dropping the other entries: changes nothing, as --dry-run. Exits 1 when "
                "any stored key is not on the first entry or cannot be decrypted, 0 when every one is on the first."
            ),
        )
        parser.add_argument(
            "--batch-size",
            type=_batch_size,
            default=BATCH_SIZE,
            help=f"Keys re-encrypted per transaction, each locked only until its batch commits (default {BATCH_SIZE}).",
        )

    def handle(self, *args, dry_run: bool = False, check: bool = False, batch_size: int = BATCH_SIZE, **options):
        dry_run = dry_run or check
        tally, after = Tally(), 0
        pause = not dry_run and _pauses_between_batches()
        try:
            while True:
                started = time.monotonic()
                after = self._batch(tally, after=after, size=batch_size, dry_run=dry_run)
                if after is None:
                    break
                if pause:
                    time.sleep(time.monotonic() - started)
        except KeyboardInterrupt:
            raise CommandError(self._interrupted(tally, dry_run=dry_run), returncode=130) from None
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(
            f"{verb} {tally.moved} stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; "
            f"{tally.current} already were."
        )
        if tally.unreadable:
            self._refuse(sorted(tally.unreadable), total=tally.moved + tally.current + len(tally.unreadable))
        if check and tally.moved:
            raise CommandError(
                f"{tally.moved} of {tally.moved + tally.current} stored key(s) are not encrypted with the first "
                "FIELD_ENCRYPTION_KEYS entry, so the other entries are still needed. Nothing was changed (--check): "
                "run it without --check, then check again."
            )
        if dry_run and tally.moved:
            # It exits 0 (nothing is unreadable), so the words must say the other entries are still needed.
            self.stdout.write(
                "Nothing was changed (dry run): run it without --dry-run before dropping the other entries."
            )
            return
        if len(settings.FIELD_ENCRYPTION_KEYS) == 1:
            self.stdout.write("Every stored key is encrypted with the only FIELD_ENCRYPTION_KEYS entry.")
        else:
            self.stdout.write("Every stored key is now encrypted with the first entry: the others can be dropped.")

    @staticmethod
    def _batch(tally: Tally, *, after: int, size: int, dry_run: bool) -> int | None:
        """Re-encrypt the `size` key rows after primary key `after` in one transaction and add them to `tally` once
        it has committed; returns the last primary key seen, None when no row was left."""
        batch, tally.in_batch = Tally(), True
        rows = ClaudeApiKey.objects.select_related("organisation").only("id", "secret", "organisation__slug")
        # A dry run writes nothing, so it takes no transaction: on SQLite (BEGIN IMMEDIATE) one would block saves.
        with HeldCtrlC() as ctrl_c:
            with nullcontext() if dry_run else transaction.atomic():
                if not dry_run:
                    # Only the key rows: a save locks its organisation row first, then waits here for the key's. Each
                    # ciphertext is read under that lock, in this batch, so a key saved since an earlier batch is seen
                    # as saved (already on the first entry), never overwritten by a stale re-encryption.
                    rows = rows.select_for_update(of=("self",))
                rows = list(rows.filter(pk__gt=after).order_by("pk")[:size])
                for row in rows:
                    # Bound to the row's organisation (orgs.crypto): a ciphertext moved from another organisation's row
                    # is unreadable here too, and is never re-encrypted into this one's.
                    if crypto.is_current(row.secret.ciphertext, organisation_id=row.organisation_id):
                        batch.current += 1
                        continue
                    try:
                        rotated = crypto.rotate(row.secret.ciphertext, organisation_id=row.organisation_id)
                    except crypto.DecryptionFailed:
                        batch.unreadable.append(row.organisation.slug)
                        continue
                    if not dry_run:
                        ClaudeApiKey.objects.filter(pk=row.pk).update(secret=crypto.Sealed(rotated))
                    batch.moved += 1
                # Ctrl-C from here waits for the commit and the count: landing between them, it would leave the batch
                # committed but uncounted, and the run would say fewer keys were re-encrypted than were. Before here it
                # rolls the batch back, as it should; the wait it adds is the commit's.
                ctrl_c.hold()
            tally.moved += batch.moved
            tally.current += batch.current
            tally.unreadable += batch.unreadable
            tally.in_batch = False
        return rows[-1].pk if rows else None

    @staticmethod
    def _interrupted(tally: Tally, *, dry_run: bool) -> str:
        # Ctrl-C lands in the middle of a batch, whose transaction is rolled back, or (SQLite) in the wait between
        # two; the batches before it committed.
        if dry_run:
            return "Interrupted: a dry run, nothing was changed. Run it again to see the whole count."
        stopped = "the batch in progress was rolled back" if tally.in_batch else "no batch was in progress"
        unreadable = (
            f" {len(tally.unreadable)} found so far could not be decrypted and were left as they are;"
            if tally.unreadable
            else ""
        )
        return (
            f"Interrupted: {tally.moved} stored key(s) were re-encrypted with the first FIELD_ENCRYPTION_KEYS entry "
            f"in the batches committed before it stopped ({tally.current} already were), and stay so; {stopped}."
            f"{unreadable} Every other key is as it was, readable as before: run this "
            "command again to finish (it re-encrypts only the keys not yet on the first entry)."
        )

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
