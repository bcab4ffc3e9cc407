"""Security e-mails: the organisation's Owners and Admins hear of every change to its Claude API key, and a user of
every change to their password and every new API token on their account, once the change is committed."""

import io
import logging
import re
import time
from contextlib import contextmanager
from datetime import UTC, timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orgs import account_views, guards, mailer, models, recent_auth, services
from orgs.crypto import Sealed
from orgs.models import ApiToken, AuditAction, AuditEvent, ClaudeApiKey, KeyStatus, Membership, OutboxMail, Plan, Role
from tests.base import CANARY_KEY, GOOD_KEY, PASSWORD, make_user, organisation_admin_form
from tests.clients import api_delete_key, api_put_key, bearer, console, token_client
from tests.insights.helpers import seed
from tests.orgs.helpers import store_key

SAVE = "/orgs/{}/settings/claude-api-key/save"
REMOVE = "/orgs/{}/settings/claude-api-key/remove"
NEW = "a-New-passw0rd-for-acme"
KEY_FRAGMENTS = [CANARY_KEY, CANARY_KEY[13:45], CANARY_KEY[-12:], "NEVER-LEAK-ME", "CANARY"]
# What to do if the change was not expected: a key saved by someone else sends the organisation's questions to their
# Anthropic account, so it must go at once; a key removed is saved again.
UNEXPECTED_SAVE = (
    "If you did not expect this change, remove the key in Settings → AI Insights at once: your organisation's "
    "questions now go to the Anthropic account that key belongs to, which may not be yours."
)
UNEXPECTED_REMOVAL = "If you did not expect this change, save your organisation's key again in Settings → AI Insights."


@pytest.fixture
def mail(settings, mailoutbox):
    """Opsion set up to send mail (EMAIL_URL), into Django's locmem outbox."""
    settings.EMAIL_CONFIGURED = True
    settings.DEFAULT_FROM_EMAIL = "Opsion <no-reply@opsion.example>"
    settings.SUPPORT_URL = "https://support.opsion.example/"
    return mailoutbox


@pytest.fixture
def committed(transactional_db, mail):
    """`with committed() as outbox:` runs the block with no test transaction around it, so each of its transactions
    commits (or rolls back) as in production and the mail thread sends from the rows it can read, then waits for the
    mail thread to send what it was given. The outbox holds only what the block sent: the e-mails of the setup
    before it (a token created, a key stored) are sent first and left out."""

    @contextmanager
    def run():
        assert mailer.wait(timeout=10), "the mail thread is still sending the setup's e-mails"
        mail.clear()
        yield mail
        assert mailer.wait(timeout=10), "the mail thread is still sending"

    return run


def whole(message) -> str:
    """Everything that leaves the server: headers, subject and body as they go on the wire."""
    return message.message().as_string()


def to(outbox) -> list[str]:
    return sorted(address for message in outbox for address in message.to)


def assert_no_key_in(outbox) -> None:
    for message in outbox:
        for fragment in KEY_FRAGMENTS:
            assert fragment not in whole(message) and fragment not in message.body, message.subject


def utc(moment) -> str:
    """A time as the console writes it ("30 Nov 2026, 08:04 UTC"), spelt out here so that a change to either fails."""
    at = moment.astimezone(UTC)
    return f"{at.day} {at:%b %Y, %H:%M} UTC"


@pytest.fixture
def crowd(world):
    """Acme with more people than the world gives it: a second Owner, a deactivated Admin, a second Member; and
    initech's Admin, who manages another organisation."""
    second_owner = make_user("second-owner@acme.test", name="Sam Second")
    Membership.objects.create(user=second_owner, organisation=world.acme, role=Role.OWNER)
    gone = make_user("former-admin@acme.test", is_active=False)
    Membership.objects.create(user=gone, organisation=world.acme, role=Role.ADMIN)
    Membership.objects.create(user=make_user("member2@acme.test"), organisation=world.acme, role=Role.MEMBER)
    world.acme_admin.name = "Ada Admin"
    world.acme_admin.save(update_fields=["name"])
    return world


ACME_MANAGERS = ["admin@acme.test", "owner@acme.test", "second-owner@acme.test"]


# --- The Claude API key ---------------------------------------------------------------------------------------------


def test_a_key_saved_in_the_console_is_mailed_to_every_active_owner_and_admin_of_the_organisation(crowd, committed):
    with committed() as outbox:
        response = console(crowd.acme_admin).post(SAVE.format("acme"), {"api_key": CANARY_KEY})

    assert response.status_code == 302
    assert to(outbox) == ACME_MANAGERS  # the actor too; no Member, no deactivated Admin, no other organisation's
    assert all(len(message.to) == 1 and not message.cc and not message.bcc for message in outbox)
    saved_at = AuditEvent.objects.get(organisation=crowd.acme, action=AuditAction.KEY_SAVED).created_at
    page = console(crowd.acme_admin).get("/orgs/acme/settings/audit-log/").content.decode()
    for message in outbox:
        body = " ".join(message.body.split())
        assert message.subject == "Claude API key saved for Acme Digital Assets"
        assert message.from_email == "Opsion <no-reply@opsion.example>"
        assert "A Claude API key was saved for the Opsion organisation Acme Digital Assets." in body
        assert "By: Ada Admin (admin@acme.test), in the Opsion console" in body
        assert f"When: {utc(saved_at)}" in body
        assert f"{utc(saved_at)}</td><td>Claude API key saved" in page  # as the audit log says it
        assert UNEXPECTED_SAVE in body and "audit log" in body and UNEXPECTED_REMOVAL not in body
        assert "because you are an Owner or Admin of Acme Digital Assets" in body
        assert "http" not in message.body  # no link at all, so none carrying a token
        assert message.content_subtype == "plain" and not getattr(message, "alternatives", [])  # as the reset's
    assert_no_key_in(outbox)


def test_an_organisation_name_on_two_lines_makes_a_one_line_subject_and_the_mail_still_goes(world, committed):
    # A newline in a header is refused when the message is sent: the name is made one line, not the mail lost.
    world.acme.name = "Acme\nDigital Assets"
    world.acme.save(update_fields=["name"])

    with committed() as outbox:
        console(world.acme_admin).post(SAVE.format("acme"), {"api_key": GOOD_KEY})

    assert to(outbox) == ["admin@acme.test", "owner@acme.test"]
    assert {message.subject for message in outbox} == {"Claude API key saved for Acme Digital Assets"}


def test_a_key_replaced_through_the_api_says_it_replaced_the_last_one_and_that_it_came_through_the_api(
    crowd, committed
):
    store_key(crowd.acme, GOOD_KEY, by=crowd.acme_owner)
    client = token_client(crowd.acme_owner)  # its token's own e-mail goes before the block, and is left out

    with committed() as outbox:
        response = api_put_key(client, "acme", {"apiKey": CANARY_KEY})

    assert response.status_code == 200, response.content
    assert to(outbox) == ACME_MANAGERS
    event = AuditEvent.objects.get(organisation=crowd.acme, action=AuditAction.KEY_REPLACED)
    body = " ".join(outbox[0].body.split())
    # Said as the audit log says it: a key rotated is "replaced", not "saved" as a first key is.
    assert {message.subject for message in outbox} == {"Claude API key replaced for Acme Digital Assets"}
    assert (
        "The Claude API key of the Opsion organisation Acme Digital Assets was replaced: a new key was saved in "
        "place of the one saved before." in body
    )
    assert "was saved for" not in body
    assert f"When: {utc(event.created_at)}" in body
    assert UNEXPECTED_SAVE in body and UNEXPECTED_REMOVAL not in body
    assert "By: owner@acme.test, through the Opsion API (a personal API token)" in body
    assert event.via == "api"
    assert_no_key_in(outbox)


@pytest.mark.parametrize("surface", ["console", "api"])
def test_a_removed_key_is_mailed_to_the_owners_and_admins_saying_queries_are_back_on_the_platform_key(
    crowd, committed, surface
):
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    client = token_client(crowd.acme_admin) if surface == "api" else console(crowd.acme_admin)

    with committed() as outbox:
        if surface == "api":
            assert api_delete_key(client, "acme").status_code == 200
        else:
            assert client.post(REMOVE.format("acme"), {"confirm": "yes"}).status_code == 302

    assert not ClaudeApiKey.objects.filter(organisation=crowd.acme).exists()
    assert to(outbox) == ACME_MANAGERS
    event = AuditEvent.objects.get(organisation=crowd.acme, action=AuditAction.KEY_REMOVED)
    body = " ".join(outbox[0].body.split())
    assert outbox[0].subject == "Claude API key removed from Acme Digital Assets"
    assert "The Claude API key of the Opsion organisation Acme Digital Assets was removed." in body
    assert "By: Ada Admin (admin@acme.test)" in body and f"When: {utc(event.created_at)}" in body
    assert "now use Opsion's platform key" in body and UNEXPECTED_REMOVAL in body and UNEXPECTED_SAVE not in body
    assert_no_key_in(outbox)


def test_a_key_left_behind_by_a_downgrade_and_removed_is_mailed_saying_it_was_not_in_use(world, committed):
    store_key(world.globex, CANARY_KEY, by=world.globex_owner)  # saved on a BYOM plan, before the downgrade

    with committed() as outbox:
        assert console(world.globex_admin).post(REMOVE.format("globex"), {"confirm": "yes"}).status_code == 302

    assert to(outbox) == ["admin@globex.test", "owner@globex.test"]
    body = " ".join(outbox[0].body.split())
    assert "It was not in use on the Professional plan: queries already ran on Opsion's platform key." in body
    assert "now use Opsion's platform key" not in body
    assert_no_key_in(outbox)


def test_a_key_left_behind_and_removed_is_not_told_to_save_it_again_on_a_plan_that_refuses_it(world, committed):
    # On Professional there is no AI Insights card to save a key in, and a save is refused (byom_plan_required).
    store_key(world.globex, CANARY_KEY, by=world.globex_owner)

    with committed() as outbox:
        assert console(world.globex_admin).post(REMOVE.format("globex"), {"confirm": "yes"}).status_code == 302

    body = " ".join(outbox[0].body.split())
    assert UNEXPECTED_REMOVAL not in body
    assert (
        "If you did not expect this change: queries are not affected, as the key was not in use, but a key can be "
        "saved again in Settings → AI Insights only once Globex Payments is back on the Institutional or Custom plan."
    ) in body


def test_a_key_removed_by_opsion_staff_in_admin_is_mailed_saying_so(crowd, committed):
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    action = {"action": "remove_claude_api_key", "_selected_action": [crowd.acme.pk], "confirm": "yes"}

    with committed() as outbox:
        response = console(crowd.staff).post("/admin/orgs/organisation/", action)

    assert response.status_code == 302
    assert to(outbox) == ACME_MANAGERS  # staff are no member of it: they know
    assert "By: Opsion staff (staff@opsion.test), in Opsion's admin" in " ".join(outbox[0].body.split())
    assert_no_key_in(outbox)


def test_a_removal_that_removes_nothing_sends_nothing(world, committed):
    client = token_client(world.acme_admin)

    with committed() as outbox:
        assert api_delete_key(client, "acme").status_code == 200  # idempotent: there was no key

    assert outbox == []


def refused_writes(world):
    """Each a key write that is refused: nothing changes, nothing is audited, no one is mailed."""
    member, admin = console(world.acme_member), console(world.acme_admin)
    return {
        "a member saves": lambda: member.post(SAVE.format("acme"), {"api_key": CANARY_KEY}),
        "a member removes": lambda: member.post(REMOVE.format("acme"), {"confirm": "yes"}),
        "a plan without BYOM": lambda: console(world.globex_admin).post(SAVE.format("globex"), {"api_key": CANARY_KEY}),
        "a malformed key": lambda: admin.post(SAVE.format("acme"), {"api_key": CANARY_KEY + "!"}),
        "a stale confirmation": lambda: admin.post(
            REMOVE.format("acme"), {"confirm": "yes", "saved_at": "2020-01-01T00:00:00+00:00"}
        ),
    }


@pytest.mark.parametrize(
    "write", ["a member saves", "a member removes", "a plan without BYOM", "a malformed key", "a stale confirmation"]
)
def test_a_refused_key_write_mails_no_one(world, committed, write):
    store_key(world.acme, GOOD_KEY, by=world.acme_owner)
    events = AuditEvent.objects.count()

    with committed() as outbox:
        response = refused_writes(world)[write]()

    assert response.status_code in (400, 403, 409), response.status_code
    assert AuditEvent.objects.count() == events  # refused indeed
    assert outbox == []


def test_a_key_write_refused_by_the_abuse_guard_mails_no_one(world, committed):
    for _ in range(int(guards.KEY_WRITE_RATE.split("/")[0])):
        guards.key_write(user=world.acme_admin, org_slug="acme")

    with committed() as outbox:
        response = console(world.acme_admin).post(SAVE.format("acme"), {"api_key": CANARY_KEY})

    assert response.status_code == 429
    assert outbox == []


def test_a_key_write_whose_transaction_is_rolled_back_mails_no_one(world, committed):
    membership = world.membership(world.acme_admin, world.acme)

    with committed() as outbox:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.claude_api_key_set(membership=membership, raw_key=CANARY_KEY, ip=None)
            raise RuntimeError("something after the save fails")

    assert not ClaudeApiKey.objects.filter(organisation=world.acme).exists()
    assert outbox == []


@pytest.mark.django_db(transaction=True)
def test_a_key_e_mail_that_fails_is_logged_by_account_and_request_never_by_address_and_the_key_is_kept(
    world, mail, settings, caplog
):
    # Committed for real, inside the request as in production: the e-mail is handed over under the request's ID.
    settings.EMAIL_BACKEND = "tests.orgs.test_password_reset.RefusingBackend"  # its error quotes address and body

    with caplog.at_level(logging.INFO):
        response = console(world.acme_admin).post(SAVE.format("acme"), {"api_key": CANARY_KEY})
    assert mailer.wait(timeout=10)

    assert response.status_code == 302 and mail == []
    assert ClaudeApiKey.objects.filter(organisation=world.acme).exists()  # the change stands
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert sorted(record.getMessage() for record in errors) == sorted(
        f"claude api key saved e-mail to user {user.pk} not sent (SMTPRecipientsRefused)"
        for user in (world.acme_owner, world.acme_admin)
    )
    assert {record.request_id for record in errors} == {response["X-Request-ID"]}
    assert "@acme.test" not in "".join(record.getMessage() for record in errors)
    assert "Acme Digital Assets" not in caplog.text and "NEVER-LEAK-ME" not in caplog.text


# --- Passwords ------------------------------------------------------------------------------------------------------


def assert_password_mail(outbox, address: str, how: str) -> None:
    assert to(outbox) == [address]
    message = outbox[0]
    body = " ".join(message.body.split())
    assert message.subject == "Your Opsion password was changed"
    assert f"The password of your Opsion account {address} was changed {how}" in body
    assert "If this wasn't you, reset your password" in body and "Forgot your password?" in body
    assert body.endswith("contact Opsion support: https://support.opsion.example/ — Opsion")  # no dot to click
    assert re.search(rf"was changed {how}, at \d{{1,2}} [A-Z][a-z]{{2}} \d{{4}}, \d\d:\d\d UTC\.", body)


def test_a_password_changed_in_the_console_is_mailed_to_its_user(world, committed):
    client = console(world.acme_member)

    with committed() as outbox:
        wrong = {"old_password": "wrong", "new_password1": NEW, "new_password2": NEW}
        refused = client.post("/accounts/password/", wrong)
        assert refused.status_code == 200 and outbox == []  # not changed: nothing to tell
        changed = client.post(
            "/accounts/password/", {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}
        )

    assert changed.status_code == 302
    assert_password_mail(outbox, "member@acme.test", "on its Change password page")


def reset_link_opened(client: Client, committed, address: str) -> tuple[str, list]:
    """The new-password page of the reset link mailed to `address`, opened by `client`, and the outbox (emptied)."""
    with committed() as outbox:
        client.post("/accounts/password/reset/", {"email": address})
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/[\w-]+/[\w-]+/)", outbox[0].body)[1]
    opened = client.get(link)
    outbox.clear()
    return opened["Location"], outbox


def test_a_password_reset_by_link_is_mailed_after_the_link(world, committed):
    client = Client()
    page, outbox = reset_link_opened(client, committed, "admin@acme.test")

    with committed():
        done = client.post(page, {"new_password1": NEW, "new_password2": NEW})

    assert done.status_code == 302
    assert_password_mail(outbox, "admin@acme.test", "with a reset link")


def mailed_body(outbox) -> str:
    return " ".join(outbox[0].body.split())


def test_a_password_changed_with_the_api_tokens_revoked_says_so_in_its_mail(world, committed):
    bearer(world.acme_member)
    bearer(world.acme_member)
    new = {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW, "revoke_api_tokens": "on"}

    with committed() as outbox:
        assert console(world.acme_member).post("/accounts/password/", new).status_code == 302

    assert_password_mail(outbox, "member@acme.test", "on its Change password page")
    body = mailed_body(outbox)
    assert (
        "Every other browser signed in as you was signed out, and your 2 API tokens were revoked: integrations using "
        "them have stopped working."
    ) in body
    assert "keep working" not in body
    # None is left to revoke: what to look for is a token made since, by whoever changed the password.
    assert "revoke any API token you did not create in Settings → API tokens" in body


def test_a_password_changed_counts_as_kept_only_the_tokens_that_still_work(world, committed):
    # An expired token is refused already: "your 2 API tokens keep working" would overstate what a thief holds.
    bearer(world.acme_member)
    expired, _ = services.api_token_create(user=world.acme_member, name="old laptop")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    new = {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}

    with committed() as outbox:
        assert console(world.acme_member).post("/accounts/password/", new).status_code == 302

    assert "Every other browser signed in as you was signed out; your API token keeps working." in mailed_body(outbox)


def test_a_password_changed_keeping_the_api_tokens_says_how_many_keep_working(world, committed):
    bearer(world.acme_member)
    bearer(world.acme_member)
    new = {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}

    with committed() as outbox:
        assert console(world.acme_member).post("/accounts/password/", new).status_code == 302

    body = mailed_body(outbox)
    assert "Every other browser signed in as you was signed out; your 2 API tokens keep working." in body
    assert "revoke your API tokens in Settings → API tokens" in body
    assert "revoked" not in body


def test_a_password_changed_by_a_user_without_api_tokens_says_nothing_of_them(world, committed):
    # Most users have none: "your API tokens keep working" would send them looking for tokens they never made.
    new = {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}

    with committed() as outbox:
        assert console(world.acme_member).post("/accounts/password/", new).status_code == 302

    body = mailed_body(outbox)
    assert "Every other browser signed in as you was signed out. If this wasn't you" in body
    assert "keep working" not in body and "keeps working" not in body
    assert "revoke any API token you did not create in Settings → API tokens" in body


def test_a_password_staff_set_says_how_many_of_the_users_api_tokens_keep_working(world, committed):
    bearer(world.acme_member)

    with committed() as outbox:
        url = f"/admin/orgs/user/{world.acme_member.pk}/password/"
        assert console(world.staff).post(url, {"password1": NEW, "password2": NEW}).status_code == 302

    assert "Every browser signed in as you was signed out; your API token keeps working." in mailed_body(outbox)


def test_a_password_reset_with_the_api_tokens_revoked_says_so_in_its_mail(world, committed):
    bearer(world.acme_admin)
    client = Client()
    page, outbox = reset_link_opened(client, committed, "admin@acme.test")

    with committed():
        new = {"new_password1": NEW, "new_password2": NEW, "revoke_api_tokens": "on"}
        assert client.post(page, new).status_code == 302

    assert_password_mail(outbox, "admin@acme.test", "with a reset link")
    assert (
        "Every browser signed in as you was signed out, and your API token was revoked: integrations using it have "
        "stopped working."
    ) in mailed_body(outbox)


def test_a_password_set_by_staff_in_admin_is_mailed_to_its_user(world, committed):
    url = f"/admin/orgs/user/{world.acme_member.pk}/password/"
    staff = console(world.staff)

    with committed() as outbox:
        mismatch = staff.post(url, {"password1": NEW, "password2": NEW + "x"})
        assert mismatch.status_code == 200 and outbox == []
        response = staff.post(url, {"password1": NEW, "password2": NEW})

    assert response.status_code == 302
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)
    assert_password_mail(outbox, "member@acme.test", "by Opsion staff")


def test_a_password_set_with_manage_py_changepassword_is_mailed_to_its_user(world, committed, monkeypatch):
    # Django's own command, which an operator reaches for first: it set the password and told no one.
    typed = iter([NEW + "x", NEW, NEW, NEW])  # a mismatch first: asked again, nothing set
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))

    with committed() as outbox:
        call_command("changepassword", "member@acme.test", stdout=io.StringIO(), stderr=io.StringIO())

    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)
    assert_password_mail(outbox, "member@acme.test", "by Opsion staff")


def test_manage_py_changepassword_whose_e_mail_cannot_be_written_keeps_the_old_password(world, committed, monkeypatch):
    # As the console's and admin's: the new password and its e-mail's outbox row commit together. The command saved
    # the password on its own, so a failure writing the row (or the process dying just before) left a new password
    # its user was never told of.
    typed = iter([NEW, NEW])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))

    def outbox_insert_fails(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "orgs_outboxmail"'):
            raise OperationalError("the database went away before the e-mail's row was written")
        return execute(sql, params, many, context)

    with committed() as outbox, pytest.raises(OperationalError), connection.execute_wrapper(outbox_insert_fails):
        call_command("changepassword", "member@acme.test", stdout=io.StringIO(), stderr=io.StringIO())

    assert outbox == [] and not OutboxMail.objects.exists()
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


def test_manage_py_changepassword_holds_no_transaction_while_the_operator_types(world, committed, monkeypatch):
    # On SQLite every transaction takes the database's write lock as it begins: one held while someone types would
    # stop every other write (sign-ins, queries) for as long.
    in_transaction = []

    def typing(prompt=""):
        in_transaction.append(connection.in_atomic_block)
        return NEW

    monkeypatch.setattr("getpass.getpass", typing)

    with committed() as outbox:
        call_command("changepassword", "member@acme.test", stdout=io.StringIO(), stderr=io.StringIO())

    assert in_transaction == [False, False]
    assert_password_mail(outbox, "member@acme.test", "by Opsion staff")


def test_manage_py_changepassword_keeps_what_staff_changed_while_the_operator_typed(world, committed, monkeypatch):
    # The user is read before the prompt and saved after it: saved whole, the row as read then put back whatever staff
    # changed meanwhile, an account deactivated in admin (its sessions and tokens stopped) active again, with a
    # password just set.
    def typing(prompt=""):
        models.User.objects.filter(pk=world.acme_member.pk).update(is_active=False, name="Renamed meanwhile")
        return NEW

    monkeypatch.setattr("getpass.getpass", typing)

    with committed():
        call_command("changepassword", "member@acme.test", stdout=io.StringIO(), stderr=io.StringIO())

    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)
    assert not world.acme_member.is_active and world.acme_member.name == "Renamed meanwhile"


def test_manage_py_changepassword_refused_mails_no_one(world, committed, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "x")  # never a password the validators accept

    with committed() as outbox, pytest.raises(CommandError):
        call_command("changepassword", "member@acme.test", stdout=io.StringIO(), stderr=io.StringIO())

    assert outbox == []
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


def test_staff_changing_their_own_password_in_admin_are_mailed(world, committed):
    with committed() as outbox:
        response = console(world.staff).post(
            "/admin/password_change/", {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}
        )

    assert response.status_code == 302
    assert_password_mail(outbox, "staff@opsion.test", "on its Change password page")


def test_opening_admins_password_change_or_failing_it_mails_no_one(world, committed):
    staff = console(world.staff)

    with committed() as outbox:
        opened = staff.get("/admin/password_change/")
        wrong = staff.post(
            "/admin/password_change/", {"old_password": "wrong", "new_password1": NEW, "new_password2": NEW}
        )

    assert opened.status_code == 200 and wrong.status_code == 200
    assert outbox == []


def test_a_password_staff_set_on_a_deactivated_account_mails_no_one(world, committed):
    gone = make_user("gone@acme.test", is_active=False)

    with committed() as outbox:
        response = console(world.staff).post(
            f"/admin/orgs/user/{gone.pk}/password/", {"password1": NEW, "password2": NEW}
        )

    assert response.status_code == 302
    gone.refresh_from_db()
    assert gone.check_password(NEW) and outbox == []


# --- API tokens -----------------------------------------------------------------------------------------------------


def test_a_token_created_in_the_console_is_mailed_to_its_user_without_the_token(world, committed):
    client = console(world.acme_admin)

    with committed() as outbox:
        assert client.post("/orgs/acme/settings/tokens/create", {"name": ""}).status_code == 400
        assert outbox == []  # refused: nothing created
        response = client.post("/orgs/acme/settings/tokens/create", {"name": "Reporting pipeline"})

    assert response.status_code == 200
    assert to(outbox) == ["admin@acme.test"]
    message = outbox[0]
    body = " ".join(message.body.split())
    assert message.subject == "A new API token was created on your Opsion account"
    assert "A personal API token named “Reporting pipeline” was created on your Opsion account admin@acme.test" in body
    assert " UTC" in body and "revoke it in Settings → API tokens" in body
    token = world.acme_admin.api_tokens.get()
    assert f"at {utc(token.created_at)}." in body
    assert f"until it expires at {utc(token.expires_at)}, or until" in body
    assert token.prefix not in whole(message) and "opsn_" not in whole(message)


def test_a_token_created_with_the_command_is_mailed_to_its_user(world, committed):
    with committed() as outbox:
        call_command("create_api_token", "member@acme.test", "--name", "CI pipeline", stdout=io.StringIO())

    assert to(outbox) == ["member@acme.test"]
    assert "“CI pipeline”" in outbox[0].body and "opsn_" not in whole(outbox[0])


def refused_tokens(world):
    """Each sets up a refusal (its tokens made, its guard spent, before the block whose mail counts) and returns the
    post refused: nothing is created, so its user is mailed nothing."""
    create = "/orgs/acme/settings/tokens/create"

    def at_the_cap():
        for i in range(models.ACTIVE_TOKENS_MAX):
            services.api_token_create(user=world.acme_admin, name=f"Token {i}")
        return lambda: console(world.acme_admin).post(create, {"name": "One too many"})

    def past_the_hours_new_tokens():
        for _ in range(int(guards.TOKEN_CREATE_RATE.split("/")[0])):
            guards.token_create(user=world.acme_admin)
        return lambda: console(world.acme_admin).post(create, {"name": "One too many"})

    def with_a_wrong_password():
        client = console(world.acme_admin)
        session = client.session
        session[recent_auth.SESSION_KEY] = time.time() - 16 * 60  # past the window: the password is asked
        session.save()
        return lambda: client.post(create, {"name": "Nightly export", "password": "not-the-password"})

    return {
        "at the cap": at_the_cap,
        "past the hour's": past_the_hours_new_tokens,
        "wrong password": with_a_wrong_password,
    }


@pytest.mark.parametrize("refusal", ["at the cap", "past the hour's", "wrong password"])
def test_a_refused_token_mails_no_one(world, committed, refusal):
    post = refused_tokens(world)[refusal]()  # the tokens made at the cap are mailed, before the block
    tokens = world.acme_admin.api_tokens.count()

    with committed() as outbox:
        response = post()

    assert response.status_code in (400, 409, 429), response.status_code
    assert world.acme_admin.api_tokens.count() == tokens  # refused indeed
    assert outbox == []


# --- Without mail ---------------------------------------------------------------------------------------------------


def test_without_mail_nothing_is_sent_and_every_change_still_goes_through(transactional_db, world, mailoutbox):
    # Committed for real: an e-mail written anyway would be sent from its row.
    admin = console(world.acme_admin)
    saved = admin.post(SAVE.format("acme"), {"api_key": CANARY_KEY})
    removed = admin.post(REMOVE.format("acme"), {"confirm": "yes"})
    token = admin.post("/orgs/acme/settings/tokens/create", {"name": "Reporting pipeline"})
    new = {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}
    changed = admin.post("/accounts/password/", new)

    assert mailer.wait(timeout=10)
    assert [r.status_code for r in (saved, removed, token, changed)] == [302, 302, 200, 302]
    assert mailoutbox == [] and not OutboxMail.objects.exists()


# --- A plan change that puts a stored key into use, or takes it out -------------------------------------------------


def change_plan(staff, org, plan):
    return console(staff).post(f"/admin/orgs/organisation/{org.pk}/change/", organisation_admin_form(org, plan=plan))


def test_restoring_a_byom_plan_that_puts_a_stored_key_back_in_use_is_mailed_to_the_owners_and_admins(crowd, committed):
    # The key left behind by a downgrade bills the customer's own Anthropic account again from the moment staff
    # restore the plan: its Owners and Admins hear of it, as of every other change to which key is used.
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    crowd.acme.plan = Plan.PROFESSIONAL
    crowd.acme.save(update_fields=["plan"])

    with committed() as outbox:
        response = change_plan(crowd.staff, crowd.acme, Plan.INSTITUTIONAL)

    assert response.status_code == 302
    assert to(outbox) == ACME_MANAGERS  # no Member, no deactivated Admin, not staff, no other organisation's
    assert all(len(message.to) == 1 and not message.cc and not message.bcc for message in outbox)
    event = AuditEvent.objects.get(organisation=crowd.acme, action=AuditAction.PLAN_CHANGED)
    for message in outbox:
        body = " ".join(message.body.split())
        assert message.subject == "Claude API key in use again for Acme Digital Assets"
        assert (
            "Opsion staff changed the plan of the Opsion organisation Acme Digital Assets from Professional to "
            "Institutional. Its stored Claude API key is in use again: AI Insights queries of Acme Digital Assets "
            "now run on that key, billed to the Anthropic account it belongs to." in body
        )
        assert "By: Opsion staff, in Opsion's admin" in body and "staff@opsion.test" not in body
        assert f"When: {utc(event.created_at)}" in body
        assert "Limit now: 200 AI Insights queries per rolling 60 minutes." in body
        assert "If you no longer want it used, remove the key in Settings → AI Insights." in body
        assert "because you are an Owner or Admin of Acme Digital Assets" in body
        assert "http" not in message.body
        assert message.content_subtype == "plain" and not getattr(message, "alternatives", [])
    assert_no_key_in(outbox)


def test_a_downgrade_that_takes_a_stored_key_out_of_use_is_mailed_to_the_owners_and_admins(crowd, committed):
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)

    with committed() as outbox:
        assert change_plan(crowd.staff, crowd.acme, Plan.STARTER).status_code == 302

    assert to(outbox) == ACME_MANAGERS
    body = " ".join(outbox[0].body.split())
    assert outbox[0].subject == "Claude API key no longer in use for Acme Digital Assets"
    assert (
        "Opsion staff changed the plan of the Opsion organisation Acme Digital Assets from Institutional to "
        "Starter. Its stored Claude API key is no longer used: AI Insights queries of Acme Digital Assets now use "
        "Opsion's platform key. The key stays stored, unused, and would be used again if the plan returned." in body
    )
    assert "By: Opsion staff, in Opsion's admin" in body
    assert "Limit now: 20 AI Insights queries per rolling 60 minutes." in body
    assert "You can remove the key in Settings, where it is listed as the stored Claude API key." in body
    assert "http" not in outbox[0].body
    assert_no_key_in(outbox)


def test_a_downgrade_over_the_platform_limit_says_no_one_can_ask_for_a_while(crowd, committed):
    # 25 queries counted in the window on the organisation's key, 20 allowed on the platform key: asking is refused
    # from the moment the plan changes, until enough of them leave the window. Staff are told; so are its managers.
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    seed(crowd.acme, *([1800] * 5 + [600] * 20))

    with committed() as outbox:
        assert change_plan(crowd.staff, crowd.acme, Plan.STARTER).status_code == 302

    body = " ".join(outbox[0].body.split())
    assert (
        "Acme Digital Assets has used 25 queries in the last 60 minutes, so no one in it can ask AI Insights for "
        "about 50 min." in body
    )


@pytest.mark.parametrize("by", ["acme_admin", "staff"])
def test_a_removal_over_the_platform_limit_says_the_limit_and_that_no_one_can_ask_for_a_while(crowd, committed, by):
    # The one who removed it was warned on the confirmation; the other Owners and Admins learn it only here, as they
    # do when a plan change takes the key out of use.
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    seed(crowd.acme, *([1800] * 5 + [600] * 20))

    with committed() as outbox:
        if by == "staff":
            action = {"action": "remove_claude_api_key", "_selected_action": [crowd.acme.pk], "confirm": "yes"}
            assert console(crowd.staff).post("/admin/orgs/organisation/", action).status_code == 302
        else:
            assert console(crowd.acme_admin).post(REMOVE.format("acme"), {"confirm": "yes"}).status_code == 302

    body = " ".join(outbox[0].body.split())
    assert (
        "AI Insights queries of Acme Digital Assets now use Opsion's platform key, limited to 20 queries per rolling "
        "60 minutes. Acme Digital Assets has used 25 queries in the last 60 minutes, so no one in it can ask AI "
        "Insights for about 50 min." in body
    )


def test_a_removal_under_the_platform_limit_names_the_limit_and_no_lockout(crowd, committed):
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    seed(crowd.acme, *([600] * 5))

    with committed() as outbox:
        assert console(crowd.acme_admin).post(REMOVE.format("acme"), {"confirm": "yes"}).status_code == 302

    body = " ".join(outbox[0].body.split())
    assert "now use Opsion's platform key, limited to 20 queries per rolling 60 minutes." in body
    assert "no one in it can ask" not in body


def test_a_downgrade_counts_the_window_once_for_the_email_and_for_staff(crowd, committed):
    # One plan change, one count of the window: the e-mail and admin's message to staff say the same lockout from it.
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    seed(crowd.acme, *([1800] * 5 + [600] * 20))
    staff = console(crowd.staff)

    with committed() as outbox, CaptureQueriesContext(connection) as queries:
        response = staff.post(
            f"/admin/orgs/organisation/{crowd.acme.pk}/change/", organisation_admin_form(crowd.acme, plan=Plan.STARTER)
        )

    counts = [q["sql"] for q in queries if "insights_insightquery" in q["sql"] and "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1, counts
    said = "has used 25 queries in the last 60 minutes, so no one in it can ask AI Insights for about 50 min."
    assert f"Acme Digital Assets {said}" in " ".join(outbox[0].body.split())
    told = " ".join(m.message for m in get_messages(response.wsgi_request))
    assert "It has used 25 queries in the window, so no one in it can ask AI Insights for about 50 min." in told


@pytest.mark.parametrize(
    "status, unreadable, said",
    [
        (
            KeyStatus.INVALID,
            False,
            "Anthropic rejected this key when it was last used: queries will fail until a valid key is saved in "
            "Settings → AI Insights.",
        ),
        (
            KeyStatus.VALID,
            True,
            "Opsion cannot decrypt this key now: queries are refused until it is saved again in Settings → AI "
            "Insights.",
        ),
    ],
)
def test_a_restored_key_that_cannot_answer_is_not_promised_to(crowd, committed, status, unreadable, said):
    store_key(crowd.acme, CANARY_KEY, by=crowd.acme_owner)
    ClaudeApiKey.objects.filter(organisation=crowd.acme).update(status=status)
    if unreadable:  # encrypted with a key no longer configured
        ClaudeApiKey.objects.filter(organisation=crowd.acme).update(
            secret=Sealed(Fernet(Fernet.generate_key()).encrypt(b"x").decode())
        )
    crowd.acme.plan = Plan.PROFESSIONAL
    crowd.acme.save(update_fields=["plan"])

    with committed() as outbox:
        assert change_plan(crowd.staff, crowd.acme, Plan.INSTITUTIONAL).status_code == 302

    body = " ".join(outbox[0].body.split())
    assert said in body
    assert "now run on that key" not in body


def test_the_limit_mailed_is_the_one_configured(crowd, committed, settings):
    settings.INSIGHTS_BYOM_LIMIT, settings.INSIGHTS_WINDOW_SECONDS = 150, 7200
    store_key(crowd.globex, CANARY_KEY, by=crowd.globex_owner)

    with committed() as outbox:
        assert change_plan(crowd.staff, crowd.globex, Plan.CUSTOM).status_code == 302

    assert to(outbox) == ["admin@globex.test", "owner@globex.test"]
    assert "Limit now: 150 AI Insights queries per rolling 2 hours." in " ".join(outbox[0].body.split())


@pytest.mark.parametrize(
    "org, plan, key",
    [
        ("acme", Plan.CUSTOM, True),  # BYOM to BYOM: the key stays in use
        ("globex", Plan.STARTER, True),  # neither plan uses it: it stays unused
        ("globex", Plan.INSTITUTIONAL, False),  # across the line, but no key is stored
        ("acme", Plan.PROFESSIONAL, False),
    ],
)
def test_a_plan_change_that_changes_no_stored_keys_use_mails_no_one(world, committed, org, plan, key):
    org = getattr(world, org)
    if key:
        store_key(org, CANARY_KEY)

    with committed() as outbox:
        assert change_plan(world.staff, org, plan).status_code == 302

    org.refresh_from_db()
    assert org.plan == plan  # changed indeed
    assert outbox == []


def test_a_plan_change_refused_by_the_form_mails_no_one(world, committed):
    store_key(world.acme, CANARY_KEY)
    data = organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL, slug="")  # a slug is required

    with committed() as outbox:
        response = console(world.staff).post(f"/admin/orgs/organisation/{world.acme.pk}/change/", data)

    world.acme.refresh_from_db()
    assert response.status_code == 200 and world.acme.plan == Plan.INSTITUTIONAL
    assert outbox == []


def test_a_plan_change_whose_transaction_is_rolled_back_mails_no_one(world, committed):
    store_key(world.acme, CANARY_KEY)

    with committed() as outbox:
        with pytest.raises(RuntimeError), transaction.atomic():
            world.acme.plan = Plan.PROFESSIONAL
            world.acme.save(update_fields=["plan"])
            services.plan_changed_as_staff(org=world.acme, staff_user=world.staff, old_plan=Plan.INSTITUTIONAL, ip=None)
            raise RuntimeError("something after the change fails")

    world.acme.refresh_from_db()
    assert world.acme.plan == Plan.INSTITUTIONAL and not AuditEvent.objects.exists()
    assert outbox == []


@pytest.mark.django_db(transaction=True)
def test_a_plan_change_mails_once_really_committed_and_not_when_really_rolled_back(world, mail):
    # No test transaction: the admin's save commits, or is rolled back when the memberships in the same save are
    # refused, as in production.
    store_key(world.acme, CANARY_KEY)
    staff = console(world.staff)
    leaves_no_manager = organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL)
    for i in range(world.acme.memberships.count()):  # each row demoted: refused, and the plan is not saved
        leaves_no_manager[f"memberships-{i}-role"] = Role.MEMBER

    refused = staff.post(f"/admin/orgs/organisation/{world.acme.pk}/change/", leaves_no_manager)
    assert mailer.wait(timeout=10)
    world.acme.refresh_from_db()
    assert refused.status_code == 200 and world.acme.plan == Plan.INSTITUTIONAL and mail == []

    saved = staff.post(
        f"/admin/orgs/organisation/{world.acme.pk}/change/", organisation_admin_form(world.acme, plan=Plan.PROFESSIONAL)
    )
    assert mailer.wait(timeout=10)
    assert saved.status_code == 302
    assert to(mail) == ["admin@acme.test", "owner@acme.test"]
    assert_no_key_in(mail)


def test_admins_password_pages_hold_a_transaction_only_to_save(transactional_db, world, monkeypatch):
    # The password and its e-mail's outbox row commit together; the pages' GETs need no transaction, which on SQLite
    # takes the database's write lock (every transaction begins IMMEDIATE) while the page renders.
    seen = []
    own, staffs = account_views._admin_password_change, DjangoUserAdmin.user_change_password

    def own_page(request):
        seen.append(("own", request.method, connection.in_atomic_block))
        return own(request)

    def staffs_page(self, request, *args, **kwargs):
        seen.append(("staff", request.method, connection.in_atomic_block))
        return staffs(self, request, *args, **kwargs)

    monkeypatch.setattr(account_views, "_admin_password_change", own_page)
    monkeypatch.setattr(DjangoUserAdmin, "user_change_password", staffs_page)
    staff = console(world.staff)  # a superuser
    other = f"/admin/orgs/user/{world.acme_member.pk}/password/"

    staff.get("/admin/password_change/")
    staff.post("/admin/password_change/", {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW})
    staff.get(other)
    staff.post(other, {"password1": NEW, "password2": NEW, "usable_password": "true"})

    assert seen == [
        ("own", "GET", False),
        ("own", "POST", True),
        ("staff", "GET", False),
        ("staff", "POST", True),
    ]
