from django.core.management.base import BaseCommand, CommandError

from orgs import models, services


def _days(window) -> str:
    days = window.days
    return f"{days} day" if days == 1 else f"{days} days"


class Command(BaseCommand):
    help = (
        "Delete personal API tokens, every user's, that expired longer ago than Settings lists expired tokens for "
        f"({_days(models.EXPIRED_TOKENS_LISTED_FOR)}). Tokens still listed, still accepted or with no expiry "
        "are never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true", help="Count the tokens that would go; delete none.")

    def handle(self, *args, batch_size: int, dry_run: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        total = services.api_tokens_prune(batch_size=batch_size, dry_run=dry_run)
        tokens = f"{total} API {'token' if total == 1 else 'tokens'}"
        expired = f"expired more than {_days(models.EXPIRED_TOKENS_LISTED_FOR)} ago"
        if dry_run:
            self.stdout.write(f"Would delete {tokens} {expired} (dry run: nothing was deleted).")
        else:
            self.stdout.write(f"Deleted {tokens} {expired}.")
