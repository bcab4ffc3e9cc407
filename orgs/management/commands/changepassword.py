"""Django's `changepassword`, followed by what follows any other new password: the user is e-mailed (by Opsion staff,
the words admin's password form uses), and told how many of their API tokens keep working.

It takes precedence over django.contrib.auth's command because `orgs` is listed before it in INSTALLED_APPS.
"""

import getpass

from django.contrib.auth.management.commands import changepassword
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from orgs import services
from orgs.models import User

MAX_TRIES = 3  # as Django's command


class Command(changepassword.Command):
    help = changepassword.Command.help + " The user is e-mailed that it was changed, as after any new password."

    def handle(self, *args, **options):
        database = options["database"]
        username = options["username"] or getpass.getuser()  # as Django's command reads it
        try:
            user = User._default_manager.using(database).get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"user '{username}' does not exist") from None
        self.stdout.write(f"Changing password for user '{user}'")
        # Asked with no transaction open: one would be held for as long as the operator types (on SQLite, BEGIN
        # IMMEDIATE takes the database's write lock, and every other write would wait).
        password = self._ask(user)
        # Then the new password and its e-mail's outbox row commit together, as every other new password's do: a
        # failure between them (or the process dying) leaves the old password and sends nothing, never a new
        # password its user is not told of. Django's own command saves the password alone.
        # The row is read again, locked, and only its password written: the one read before the prompt would put back
        # whatever staff changed while the operator typed (an account deactivated in admin, active again).
        with transaction.atomic(using=database):
            try:
                user = User._default_manager.using(database).select_for_update().get(pk=user.pk)
            except User.DoesNotExist:
                raise CommandError(f"user '{username}' was deleted while the password was typed") from None
            user.set_password(password)
            user.save(update_fields=["password"])
            services.password_changed(user=user, how="staff")
        return f"Password changed successfully for user '{user}'"

    def _ask(self, user: User) -> str:
        """The new password, typed twice and accepted by the validators, as Django's command asks for it; raises
        CommandError after MAX_TRIES refusals, or when nothing is typed."""
        for _ in range(MAX_TRIES):
            password, again = self._get_pass(), self._get_pass("Password (again): ")
            if password != again:
                self.stdout.write("Passwords do not match. Please try again.")
                continue
            try:
                validate_password(password, user)
            except ValidationError as err:
                self.stderr.write("\n".join(err.messages))
                continue
            return password
        raise CommandError(f"Aborting password change for user '{user}' after {MAX_TRIES} attempts")
