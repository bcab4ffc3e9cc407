from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orgs.models import Membership, Organisation, Plan, Role, User

ORGANISATIONS = [
    ("acme", "Acme Digital Assets", Plan.INSTITUTIONAL),
    ("globex", "Globex Payments", Plan.PROFESSIONAL),
    ("initech", "Initech Custody", Plan.CUSTOM),
]
DEFAULT_PASSWORD = "opsion-demo"
MEMBERS = [
    ("owner@acme.test", "acme", Role.OWNER),
    ("admin@acme.test", "acme", Role.ADMIN),
    ("member@acme.test", "acme", Role.MEMBER),
    ("owner@globex.test", "globex", Role.OWNER),
    ("admin@initech.test", "initech", Role.ADMIN),
]


class Command(BaseCommand):
    help = (
        "Create the demo organisations and users that are missing, keeping changes made to existing ones "
        "(a plan changed in admin, say) unless --reset. Refuses with DEBUG off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--password", help="every demo user's password (default: opsion-demo, for the users created now)"
        )
        parser.add_argument("--force", action="store_true")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Put the demo plans, roles, passwords and accounts (active, staff or not, with only the listed "
            "memberships of the demo organisations, no groups or permissions) back as documented.",
        )

    @transaction.atomic
    def handle(self, *args, password: str | None, force: bool, reset: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates users with a known password; with DEBUG off pass --force.")
        # A password given explicitly is applied to every demo user, as the output then says it is theirs.
        self.reset, self.set_password = reset, reset or password is not None
        self.kept = self.kept_users = False
        password = password or DEFAULT_PASSWORD
        orgs = {}
        for slug, name, plan in ORGANISATIONS:
            orgs[slug] = self._ensure(Organisation, {"slug": slug}, {"name": name, "plan": plan})
        for email, slug, role in MEMBERS:
            user = self._user(email, password, is_staff=False, is_superuser=False)
            self._ensure(Membership, {"user": user, "organisation": orgs[slug]}, {"role": role})
        self._user("staff@opsion.test", password, is_staff=True, is_superuser=True)
        if self.reset:
            self._take_back_unlisted_rights(orgs)
        if self.kept:
            self.stdout.write("Existing demo data was kept as it is; `manage.py seed_demo --reset` restores it.")
        self.stdout.write("Demo data ready. Sign in at http://127.0.0.1:8000/accounts/login/ with:")
        for email, slug, role in MEMBERS:
            self.stdout.write(f"  {email:<22} {role.label:<7} of {slug}")
        self.stdout.write(f"  {'staff@opsion.test':<22} staff superuser (/admin/)")
        others = " (for the users created now; the others keep theirs)" if self.kept_users else ""
        self.stdout.write(f"  password: {password}{others}")

    def _take_back_unlisted_rights(self, orgs: dict[str, Organisation]) -> None:
        """Only the table's rights: a demo user's membership of a demo organisation the table does not list goes,
        as do groups and permissions given in admin. Organisations outside the demo are left alone."""
        listed = {(email, slug) for email, slug, _ in MEMBERS}
        demo_users = User.objects.filter(email__in=[*(email for email, _, _ in MEMBERS), "staff@opsion.test"])
        extra = Membership.objects.filter(user__in=demo_users, organisation__in=orgs.values()).select_related(
            "user", "organisation"
        )
        for membership in extra:
            if (membership.user.email, membership.organisation.slug) not in listed:
                membership.delete()
                self.stdout.write(
                    f"{membership.user.email}'s membership of {membership.organisation.slug} was removed: "
                    "it is not in the demo table."
                )
        for user in demo_users:
            user.groups.clear()
            user.user_permissions.clear()

    def _ensure(self, model, lookup: dict, values: dict):
        if self.reset:
            return model.objects.update_or_create(**lookup, defaults=values)[0]
        row, created = model.objects.get_or_create(**lookup, defaults=values)
        self.kept |= not created
        return row

    def _user(self, email: str, password: str, **flags) -> User:
        # Active, with the table's rights: staff may have deactivated a demo user in admin (who could then not
        # sign in with any password) or made one staff; --reset puts that back too.
        flags["is_active"] = True
        user, created = User.objects.get_or_create(email=email, defaults=flags)
        self.kept_users |= not created and not self.set_password
        self.kept |= self.kept_users
        if not (created or self.set_password):  # --reset sets the password too
            return user
        if self.reset:
            for flag, value in flags.items():
                setattr(user, flag, value)
        user.set_password(password)
        user.save()
        return user
