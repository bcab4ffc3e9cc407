"""Django's `changepassword`, followed by what follows any other new password: the user is e-mailed (by Opsion staff,
the words admin's password form uses), and told how many of their API tokens keep working.

It takes precedence over django.contrib.auth's command because `orgs` is listed before it in INSTALLED_APPS.
"""

import getpass

from django.contrib.auth.management.commands import changepassword

from orgs import services
from orgs.models import User


class Command(changepassword.Command):
    help = changepassword.Command.help + " The user is e-mailed that it was changed, as after any new password."

    def handle(self, *args, **options):
        # No transaction around it: it would be held while the operator types (on SQLite, BEGIN IMMEDIATE takes the
        # database's write lock, and every query would wait). The password is saved first, then the user is mailed.
        said = super().handle(*args, **options)  # asks, checks and sets it; or raises CommandError, nothing set
        username = options["username"] or getpass.getuser()  # as Django's command reads it
        services.password_changed(user=User.objects.using(options["database"]).get(email=username), how="staff")
        return said
