import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from insights import services
from insights.models import InsightQuery
from insights.ratelimit import ago, window_words
from opsion.batches import delete_in_batches

UNITS = {"d": "days", "h": "hours", "w": "weeks"}


MAX_AGE = timedelta(days=36500)  # a century: older than any row, and within every database's dates


def parse_age(value: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhw])", value.strip())
    if not match:
        raise CommandError("--older-than takes a number and a unit, e.g. 90d, 12w or 48h.")
    try:
        age = timedelta(**{UNITS[match[2]]: int(match[1])})
    except OverflowError:
        age = MAX_AGE + MAX_AGE
    if age > MAX_AGE:
        raise CommandError("--older-than is at most 36500d (a century).")
    return age


class Command(BaseCommand):
    help = (
        "Delete insight queries older than the given age (default 90d). "
        "Rows still inside the rolling window are never deleted. First, queries a killed process left "
        "pending are recorded as failed (interrupted)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", default="90d")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args, older_than: str, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        older_than = older_than.strip()  # as parse_age reads it, for the report below
        asked = parse_age(older_than)
        if settled := services.settle_abandoned():
            queries = "query" if settled == 1 else "queries"
            self.stdout.write(f"Recorded {settled} abandoned insight {queries} as failed (interrupted).")
        # Never prune inside the window: those rows are what the limiter counts.
        age = max(asked, timedelta(seconds=settings.INSIGHTS_WINDOW_SECONDS))
        cutoff = ago(age)  # the database's clock: an app server's clock running ahead must not reach into the window
        total = delete_in_batches(InsightQuery.objects.filter(created_at__lt=cutoff), batch_size=batch_size)
        deleted = f"Deleted {total} insight {'query' if total == 1 else 'queries'}"
        if age == asked:
            self.stdout.write(f"{deleted} older than {older_than}.")
        else:
            window = window_words(settings.INSIGHTS_WINDOW_SECONDS)
            self.stdout.write(
                f"{deleted} older than {window} ({older_than} was asked; "
                "rows inside the rolling window are never deleted)."
            )
