"""The security e-mails' outbox: a committed change's e-mail goes exactly once even if the process that made the change
dies before sending it; a rolled-back one's never exists. (orgs.outbox, send_pending_mail)"""

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core import mail as django_mail
from django.core.mail.backends import locmem
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from orgs import mailer, outbox, services
from orgs.models import ClaudeApiKey, OutboxMail
from tests.base import CANARY_KEY, OTHER_KEY, query_plan
from tests.clients import console
from tests.orgs.test_password_reset import HeldBackend, RefusingBackend, ask_only
from tests.orgs.test_security_emails import KEY_FRAGMENTS, SAVE, assert_no_key_in, to
from tests.reliability.app_servers import database_url

ACME_MANAGERS = ["admin@acme.test", "owner@acme.test"]

# A process making a key change that is killed once the change commits, before it hands its e-mails to its mail
# thread: its on_commit callback, registered before the change's, runs first.
KILLED_AFTER_COMMIT = """
import os, signal, sys
import django
django.setup()
from django.db import transaction
from orgs import services
from orgs.models import Membership
from tests.base import CANARY_KEY
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    services.claude_api_key_set(membership=Membership.objects.get(pk=int(sys.argv[1])), raw_key=CANARY_KEY, ip=None)
print("not killed")
"""


@pytest.fixture
def mail(settings, mailoutbox):
    settings.EMAIL_CONFIGURED = True
    settings.DEFAULT_FROM_EMAIL = "Opsion <no-reply@opsion.example>"
    return mailoutbox


def send_pending_mail() -> str:
    out = io.StringIO()
    call_command("send_pending_mail", stdout=out)
    return out.getvalue()


def run_killed_after_commit(membership) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OPSION_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": django_settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(django_settings.FIELD_ENCRYPTION_KEYS),
        "DATABASE_URL": database_url(),
        "EMAIL_URL": "consolemail://",  # were anything sent, it would print
        "REDIS_URL": "",
    }
    env.pop("TEST_DATABASE_NAME", None)
    return subprocess.run(  # noqa: S603 (this interpreter, fixed code)
        [sys.executable, "-c", KILLED_AFTER_COMMIT, str(membership.pk)],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_a_key_change_whose_process_is_killed_before_mailing_is_mailed_once_by_send_pending_mail(world, mail):
    killed = run_killed_after_commit(world.membership(world.acme_admin, world.acme))

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "not killed" not in killed.stdout and "Subject:" not in killed.stdout  # it sent nothing
    assert ClaudeApiKey.objects.filter(organisation=world.acme).exists()  # the change committed
    assert OutboxMail.objects.filter(sent_at=None).count() == 2

    # The killed process still holds its rows for the lease: no one can tell a dead process from a slow one.
    assert send_pending_mail().startswith("Sent 0 e-mails.")
    assert mail == []

    OutboxMail.objects.update(due_at=F("due_at") - outbox.LEASE)  # the lease has run out
    said = send_pending_mail()

    assert said.startswith("Sent 2 e-mails."), said
    assert to(mail) == ACME_MANAGERS
    assert {message.subject for message in mail} == {"Claude API key saved for Acme Digital Assets"}
    assert "By: admin@acme.test, in the Opsion console" in " ".join(mail[0].body.split())
    assert send_pending_mail().startswith("Sent 0 e-mails.")
    assert mailer.wait(timeout=10)
    assert len(mail) == 2  # exactly once each
    assert not OutboxMail.objects.filter(sent_at=None).exists()


@pytest.mark.django_db(transaction=True)
def test_a_committed_change_is_mailed_by_its_own_process_once_and_a_rolled_back_one_leaves_no_row(world, mail):
    membership = world.membership(world.acme_owner, world.acme)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.claude_api_key_set(membership=membership, raw_key=OTHER_KEY, ip=None)
        raise RuntimeError("something after the save fails")
    assert mailer.wait(timeout=10)
    assert not OutboxMail.objects.exists() and mail == []

    assert console(world.acme_owner).post(SAVE.format("acme"), {"api_key": CANARY_KEY}).status_code == 302
    assert mailer.wait(timeout=10)

    assert to(mail) == ACME_MANAGERS
    assert_no_key_in(mail)
    assert OutboxMail.objects.count() == 2 and not OutboxMail.objects.filter(sent_at=None).exists()
    assert outbox.send_pending(now=timezone.now() + timedelta(days=1)) == outbox.Outcome(sent=0, failed=0)
    assert len(mail) == 2


@pytest.mark.django_db(transaction=True)
def test_a_change_rolled_back_in_the_request_leaves_no_row(world, mail):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.api_token_create(user=world.acme_member, name="Nightly export")
        raise RuntimeError("something after the creation fails")
    assert mailer.wait(timeout=10)

    assert not OutboxMail.objects.exists() and mail == []


class SlowBackend(locmem.EmailBackend):
    """Django's test outbox behind a mail server taking 20 ms a message: long enough for claimers to overlap."""

    def send_messages(self, messages):
        time.sleep(0.02)
        return super().send_messages(messages)


def waiting_rows(count: int) -> list[OutboxMail]:
    """Rows left by a process that died, due now."""
    due = timezone.now() - timedelta(seconds=1)
    return OutboxMail.objects.bulk_create(
        OutboxMail(to=f"user{i}@acme.test", subject=f"Mail {i}", body="Body", what=f"test e-mail {i}", due_at=due)
        for i in range(count)
    )


@pytest.mark.django_db(transaction=True)
def test_claimers_running_at_once_send_each_email_once(mail, settings):
    settings.EMAIL_BACKEND = f"{__name__}.SlowBackend"
    waiting_rows(30)
    start = threading.Barrier(4)
    outcomes, errors = [], []

    def claimer():
        try:
            start.wait()
            outcomes.append(outbox.send_pending())
        except BaseException as exc:  # noqa: BLE001 (reported below, on the test's thread)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sorted(message.subject for message in django_mail.outbox) == sorted(f"Mail {i}" for i in range(30))
    assert sum(outcome.sent for outcome in outcomes) == 30
    assert sum(1 for outcome in outcomes if outcome.sent) > 1  # they did run side by side
    assert not OutboxMail.objects.filter(sent_at=None).exists()


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_is_tried_again_after_its_backoff_and_logged_without_the_address(world, mail, settings, caplog):
    settings.EMAIL_BACKEND = "tests.orgs.test_password_reset.RefusingBackend"
    with caplog.at_level(logging.INFO):
        assert console(world.acme_admin).post(SAVE.format("acme"), {"api_key": CANARY_KEY}).status_code == 302
        assert mailer.wait(timeout=10)
    failed_at = timezone.now()

    rows = OutboxMail.objects.all()
    assert [(row.attempts, row.sent_at, row.claim) for row in rows] == [(1, None, ""), (1, None, "")]
    assert all(failed_at - timedelta(seconds=5) < row.due_at - outbox.BACKOFF_FIRST < failed_at for row in rows)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "tried again" in r.msg]
    assert sorted(warnings) == sorted(
        f"claude api key saved e-mail to user {user.pk} will be tried again in 1 min (attempt 1 failed)"
        for user in (world.acme_owner, world.acme_admin)
    )

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert outbox.send_pending(now=failed_at + timedelta(seconds=30)).sent == 0  # not yet
    assert outbox.send_pending(now=failed_at + timedelta(seconds=61)).sent == 2
    assert to(mail) == ACME_MANAGERS
    assert "@acme.test" not in caplog.text and "NEVER-LEAK-ME" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_an_email_refused_every_time_is_tried_with_growing_waits_then_given_up(mail, settings, caplog):
    settings.EMAIL_BACKEND = f"{RefusingBackend.__module__}.RefusingBackend"
    (row,) = waiting_rows(1)
    now = timezone.now()
    waits = []
    with caplog.at_level(logging.INFO):
        for _ in range(outbox.ATTEMPTS_MAX):
            assert outbox.send_pending(now=now) == outbox.Outcome(sent=0, failed=1)
            row.refresh_from_db()
            waits.append(round((row.due_at - now).total_seconds() / 60))
            now = row.due_at

    assert waits[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 360]
    assert row.attempts == outbox.ATTEMPTS_MAX and row.given_up_at is not None and row.sent_at is None
    assert outbox.send_pending(now=now + timedelta(days=7)).failed == 0  # no more tries
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[-1] == f"test e-mail 0 given up after {outbox.ATTEMPTS_MAX} failed attempts"
    assert "user0@acme.test" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_row_taken_over_by_another_process_while_waiting_in_the_queue_is_not_sent_here(world, mail, settings):
    for event in (HeldBackend.sending, HeldBackend.release, HeldBackend.finished):
        event.clear()
    settings.EMAIL_BACKEND = f"{HeldBackend.__module__}.HeldBackend"
    try:
        assert console(world.acme_admin).post(SAVE.format("acme"), {"api_key": CANARY_KEY}).status_code == 302
        assert HeldBackend.sending.wait(10)  # the first e-mail is being sent; the second waits in the queue
        second = OutboxMail.objects.order_by("pk").last()
        # Its lease ran out meanwhile, and send_pending_mail in another process claimed it.
        OutboxMail.objects.filter(pk=second.pk).update(claim="another-process", due_at=timezone.now())
    finally:
        HeldBackend.release.set()
    assert mailer.wait(timeout=10)

    assert len(mail) == 1 and mail[0].to != [second.to]
    assert OutboxMail.objects.get(pk=second.pk).sent_at is None  # the other process sends it and marks it


def test_old_rows_are_pruned_and_waiting_ones_kept(db):
    now = timezone.now()
    rows = waiting_rows(5)
    sent_long_ago, sent_lately, given_up_long_ago, given_up_lately, waiting = rows
    OutboxMail.objects.filter(pk=sent_long_ago.pk).update(sent_at=now - outbox.SENT_KEPT - timedelta(minutes=1))
    OutboxMail.objects.filter(pk=sent_lately.pk).update(sent_at=now - outbox.SENT_KEPT + timedelta(minutes=1))
    OutboxMail.objects.filter(pk=given_up_long_ago.pk).update(given_up_at=now - outbox.GIVEN_UP_KEPT - timedelta(1))
    OutboxMail.objects.filter(pk=given_up_lately.pk).update(given_up_at=now - timedelta(days=1))
    OutboxMail.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(days=365))

    assert outbox.prune(now=now) == 2
    assert set(OutboxMail.objects.values_list("pk", flat=True)) == {sent_lately.pk, given_up_lately.pk, waiting.pk}


@pytest.mark.django_db(transaction=True)  # committed, so the rows are sent and kept as they are in production
def test_the_rows_hold_no_key_and_no_token(world, mail):
    services.claude_api_key_set(membership=world.membership(world.acme_admin, world.acme), raw_key=CANARY_KEY, ip=None)
    _, raw = services.api_token_create(user=world.acme_member, name="Nightly export")
    assert mailer.wait(timeout=10)

    rows = list(OutboxMail.objects.values_list("to", "subject", "body", "what", "request_id"))
    assert len(rows) == 3 and len(mail) == 3
    stored = repr(rows)
    for fragment in [*KEY_FRAGMENTS, raw, raw[:12], raw[-12:], "http"]:
        assert fragment not in stored


def test_a_password_reset_email_is_never_written_to_the_outbox(world, mail):
    assert ask_only("admin@acme.test").status_code == 302
    assert mailer.wait(timeout=10)

    assert to(mail) == ["admin@acme.test"] and "/accounts/password/reset/" in mail[0].body
    assert not OutboxMail.objects.exists()


def test_without_mail_the_command_sends_nothing_and_says_so(db, settings):
    settings.EMAIL_CONFIGURED = False
    waiting_rows(2)
    # Sent while EMAIL_URL was set, since unset: still deleted in time.
    sent_long_ago = waiting_rows(1)[0]
    OutboxMail.objects.filter(pk=sent_long_ago.pk).update(sent_at=timezone.now() - outbox.SENT_KEPT - timedelta(1))

    assert send_pending_mail() == (
        "EMAIL_URL is unset: Opsion sends no mail. 2 e-mails left waiting. Deleted 1 old outbox rows.\n"
    )
    assert OutboxMail.objects.filter(sent_at=None).count() == 2 and OutboxMail.objects.count() == 2


def test_each_run_finds_what_to_send_and_what_to_prune_on_an_index_not_by_reading_every_row(db):
    # send_pending_mail runs every minute: without an index, each run's prune would read every row the outbox keeps
    # (a week of sent e-mails, a month of given-up ones) twice, to delete the few that have just grown old.
    now = timezone.now()
    rows = waiting_rows(3000)
    OutboxMail.objects.filter(pk__in=[row.pk for row in rows[:2800]]).update(sent_at=now - timedelta(days=1))
    OutboxMail.objects.filter(pk__in=[row.pk for row in rows[2800:2950]]).update(given_up_at=now - timedelta(days=2))

    plans = {
        "claim": query_plan(
            OutboxMail.objects.filter(sent_at__isnull=True, given_up_at__isnull=True, due_at__lte=now)
            .order_by("due_at", "pk")
            .values("pk")[:1]
        ),
        "sent": query_plan(OutboxMail.objects.filter(sent_at__lt=now - outbox.SENT_KEPT).values("pk")),
        "given up": query_plan(OutboxMail.objects.filter(given_up_at__lt=now - outbox.GIVEN_UP_KEPT).values("pk")),
    }

    assert "orgs_outbox_waiting_due" in plans["claim"], plans
    assert "orgs_outbox_sent_at" in plans["sent"], plans
    assert "orgs_outbox_given_up_at" in plans["given up"], plans
