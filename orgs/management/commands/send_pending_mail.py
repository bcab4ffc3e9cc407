from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from orgs import outbox
from orgs.mailer import emails


class Command(BaseCommand):
    help = (
        "Send the security e-mails left in the outbox: those whose process died before sending them (once its "
        f"{int(outbox.LEASE.total_seconds() // 60)}-minute hold has run out) and those whose send failed (once their "
        "backoff has passed); then delete the rows sent or given up long ago. Run it from cron every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=500, help="Send at most this many e-mails this run.")

    def handle(self, *args, limit: int, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        if not settings.EMAIL_CONFIGURED:
            # What was sent while it was set is still deleted in time.
            pruned = outbox.prune()
            waiting = emails(outbox.waiting())
            self.stdout.write(
                f"EMAIL_URL is unset: Opsion sends no mail. {waiting} left waiting. Deleted {pruned} old outbox rows."
            )
            return
        done = outbox.send_pending(limit=limit)
        pruned = outbox.prune()
        failed = f"; {emails(done.failed)} failed (logged) and will be tried again" if done.failed else ""
        self.stdout.write(f"Sent {emails(done.sent)}{failed}. Deleted {pruned} old outbox rows.")
