"""The security e-mails' outbox: each written as a row in the transaction of the change it tells of, sent once that
commits, and sent later by another process if this one dies first.

A row is written already held by the process writing it (a random `claim`, `due_at` one LEASE ahead), and handed to
its mail thread (orgs.mailer) once the change commits: a rolled-back change leaves no row and sends nothing, a
committed one always has its row. The mail thread renews the hold just before it sends, then marks the row sent, or
on a failure lets it go until its backoff has passed. A process killed before that (SIGKILL, out of memory, a
gunicorn worker timeout) leaves the row held until its lease runs out; `send_pending_mail` (README: cron, every
minute) then claims and sends it. Every claim is one conditional write, taken with the row locked (PostgreSQL:
SELECT … FOR UPDATE SKIP LOCKED; SQLite: every transaction is BEGIN IMMEDIATE, one writer at a time), so two
processes never both hold a row and never both send it. What no claim can prevent: a process that dies after the
mail server took the e-mail but before the row was marked sends it twice, once late. For a security notice a
duplicate is the lesser harm.

The password reset e-mail is never written here: its link is a password in all but name, and the user can ask again.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.utils import timezone

from opsion import requestid
from orgs import mailer
from orgs.models import OutboxMail

log = logging.getLogger("opsion.mailer")

# How long a process holds a row it is about to send: far longer than one send can take (EMAIL_TIMEOUT is 10 s an
# exchange), and how long an e-mail left by a killed process waits before another sends it.
LEASE = timedelta(minutes=5)
# After a failed send: 1 min, then 2, 4 … up to 6 h between attempts; given up after ATTEMPTS_MAX (about 3 days).
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
ATTEMPTS_MAX = 20
# Sent rows stay a week (was it sent, and when?), given-up ones a month; then they are deleted.
SENT_KEPT = timedelta(days=7)
GIVEN_UP_KEPT = timedelta(days=30)


def add(*, to: str, subject: str, body: str, what: str) -> None:
    """Write the e-mail as a row in the current transaction and hand it to the mail thread once that commits; a
    rolled-back transaction takes the row with it and sends nothing. Raises what the database raises."""
    claim = secrets.token_hex(16)
    row = OutboxMail.objects.create(
        to=to,
        subject=subject,
        body=body,
        what=what,
        request_id=requestid.current(),
        due_at=timezone.now() + LEASE,
        claim=claim,
    )
    transaction.on_commit(partial(mailer.send_later, partial(_send_handed_over, row, claim), what=what))


@dataclass(frozen=True)
class Outcome:
    sent: int = 0
    failed: int = 0


def send_pending(*, now: datetime | None = None, limit: int = 500) -> Outcome:
    """Send the rows due at `now` that no live process holds (left by a process that died, or failed before), each
    claimed alone, at most `limit` of them. Raises nothing for a failed send: it is logged and retried later."""
    sent = failed = 0
    for _ in range(limit):
        row = _claim_next(now or timezone.now())
        if row is None:
            break
        with requestid.bound(row.request_id):
            if _deliver(row, now=now):
                sent += 1
            else:
                failed += 1
    return Outcome(sent=sent, failed=failed)


def prune(*, now: datetime | None = None) -> int:
    """Delete the rows sent more than SENT_KEPT ago and those given up more than GIVEN_UP_KEPT ago; returns how many.
    Raises nothing."""
    now = now or timezone.now()
    sent, _ = OutboxMail.objects.filter(sent_at__lt=now - SENT_KEPT).delete()
    given_up, _ = OutboxMail.objects.filter(given_up_at__lt=now - GIVEN_UP_KEPT).delete()
    return sent + given_up


def waiting() -> int:
    """How many rows are not yet sent nor given up."""
    return OutboxMail.objects.filter(sent_at__isnull=True, given_up_at__isnull=True).count()


def _claim_next(now: datetime) -> OutboxMail | None:
    claim = secrets.token_hex(16)
    with transaction.atomic():
        # SKIP LOCKED: a row another process is claiming is left to it, not waited for; its due_at is re-read with
        # the lock, so a row claimed and committed meanwhile is no longer due. SQLite has no row locks (Django drops
        # the clause) and needs none: this transaction began IMMEDIATE, so no other process writes meanwhile.
        row = (
            OutboxMail.objects.select_for_update(skip_locked=True)
            .filter(sent_at__isnull=True, given_up_at__isnull=True, due_at__lte=now)
            .order_by("due_at", "pk")
            .first()
        )
        if row is None:
            return None
        row.claim, row.due_at = claim, now + LEASE
        row.save(update_fields=["claim", "due_at"])
    return row


def _send_handed_over(row: OutboxMail, claim: str) -> None:
    """On the mail thread: send the row this process wrote, unless another process took it over meanwhile."""
    try:
        mine = OutboxMail.objects.filter(pk=row.pk, claim=claim, sent_at__isnull=True, given_up_at__isnull=True)
        if not mine.update(due_at=timezone.now() + LEASE):
            log.info("%s left to the process that took it over", row.what)  # its lease ran out in the queue
            return
        _deliver(row)  # which logs a failure as the mail thread would
    finally:
        connection.close()  # the mail thread has no request cycle to close it


def _deliver(row: OutboxMail, *, now: datetime | None = None) -> bool:
    """Send `row`, then mark it sent or let it go until its backoff has passed; False if the send failed."""
    message = EmailMessage(row.subject, row.body, to=[row.to])
    mine = OutboxMail.objects.filter(pk=row.pk, claim=row.claim)
    try:
        message.send()
    except Exception as exc:
        mailer.log_not_sent(row.what, exc)
        _failed(row, mine, now or timezone.now())
        return False
    mine.update(sent_at=now or timezone.now(), claim="")
    return True


def _failed(row: OutboxMail, mine, now: datetime) -> None:
    attempts = row.attempts + 1
    if attempts >= ATTEMPTS_MAX:
        if mine.update(attempts=attempts, given_up_at=now, claim=""):
            log.error("%s given up after %s failed attempts", row.what, attempts)
        return
    wait = min(BACKOFF_FIRST * 2 ** (attempts - 1), BACKOFF_MAX)
    if mine.update(attempts=attempts, due_at=now + wait, claim=""):
        minutes = int(wait.total_seconds() // 60)
        log.warning("%s will be tried again in %s min (attempt %s failed)", row.what, minutes, attempts)
