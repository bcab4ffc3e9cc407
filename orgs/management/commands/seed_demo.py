from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orgs.models import Membership, Organisation, Plan, Role, User

ORGANISATIONS = [
    ("acme", "Acme Digital Assets", Plan.INSTITUTIONAL),
    ("globex", "Globex Payments", Plan.PROFESSIONAL),
    ("initech", "Initech Custody", Plan.CUSTOM),
]
MEMBERS = [
    ("owner@acme.test", "acme", Role.OWNER),
    ("admin@acme.test", "acme", Role.ADMIN),
    ("member@acme.test", "acme", Role.MEMBER),
    ("owner@globex.test", "globex", Role.OWNER),
    ("admin@initech.test", "initech", Role.ADMIN),
]


class Command(BaseCommand):
    help = "Create the demo organisations and users (idempotent). Refuses with DEBUG off unless --force."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="opsion-demo")
        parser.add_argument("--force", action="store_true")

    @transaction.atomic
    def handle(self, *args, password: str, force: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates users with a known password; with DEBUG off pass --force.")
        orgs = {}
        for slug, name, plan in ORGANISATIONS:
            orgs[slug], _ = Organisation.objects.update_or_create(slug=slug, defaults={"name": name, "plan": plan})
        for email, slug, role in MEMBERS:
            user = self._user(email, password)
            Membership.objects.update_or_create(user=user, organisation=orgs[slug], defaults={"role": role})
        self._user("staff@opsion.test", password, is_staff=True, is_superuser=True)
        self.stdout.write("Demo data ready. Sign in at http://127.0.0.1:8000/accounts/login/ with:")
        for email, slug, role in MEMBERS:
            self.stdout.write(f"  {email:<22} {role.label:<7} of {slug}")
        self.stdout.write(f"  {'staff@opsion.test':<22} staff superuser (/admin/)")
        self.stdout.write(f"  password: {password}")

    def _user(self, email: str, password: str, **flags) -> User:
        user, _ = User.objects.get_or_create(email=email, defaults=flags)
        for flag, value in flags.items():
            setattr(user, flag, value)
        user.set_password(password)
        user.save()
        return user
