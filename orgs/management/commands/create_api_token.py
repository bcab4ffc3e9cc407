from django.core.management.base import BaseCommand, CommandError

from opsion.errors import Refused
from orgs import mailer, services
from orgs.models import User


class Command(BaseCommand):
    help = (
        "Create a personal API token for a user and print it (alone, on the last line). It expires after "
        "--expires-in days; the user's cap of active tokens applies, as in the console."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="CLI token")
        parser.add_argument(
            "--expires-in",
            type=int,
            default=services.TOKEN_DEFAULT_DAYS,
            metavar="DAYS",
            help=f"Days until the token expires, 1 to {services.TOKEN_MAX_DAYS} (default: %(default)s).",
        )

    def handle(self, *args, email: str, name: str, expires_in: int, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with e-mail {email}.")
        if not user.is_active:  # the API refuses an inactive user's tokens: one printed now would never work
            raise CommandError(f"{user.email} is deactivated: its tokens are refused. Reactivate it in admin first.")
        try:
            token, raw = services.api_token_create(user=user, name=name, expires_in_days=expires_in)
        except Refused as refused:
            raise CommandError(refused.message) from None
        # The e-mail telling the user of the token went to the mail thread at the commit. Let it go first: with
        # EMAIL_URL=consolemail:// (as `make run` writes) it prints to this same stdout, and would otherwise land
        # after the token, which scripts take from the last line. The process waits this long for it at exit anyway.
        mailer.wait(mailer.EXIT_GRACE_SECONDS)
        self.stdout.write(
            f"Created token “{token.name}” for {user.email}. It expires on {token.expires_at:%Y-%m-%d} (UTC). "
            "It is shown once; store it now."
        )
        self.stdout.write(raw)
