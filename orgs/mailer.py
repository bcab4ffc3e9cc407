"""E-mail sent on one background thread per process, so that no request waits for the mail server.

A password reset request is answered at once, the same way for every address; its e-mail, if the address has an
account, is written and sent here afterwards. Sending on the request's own thread, even after the answer is
written, would hold that thread (and its connection) for as long as the mail server takes, which anyone could time.

One thread sends the e-mails in turn, at most CAPACITY of them waiting: a flood of requests costs the process
nothing more than that (the abuse guards already limit them to 20 an hour a network). No e-mail is lost without a
log line: a send that fails, one refused because too many are waiting, and any still waiting when the process
stops are each logged at ERROR, by a description that names the account's id, never its address or the message
(the reset link is a password in all but name). What no process can log is its own hard kill (SIGKILL, out of
memory): the few e-mails waiting then are lost silently, as the answers being written are; the user asks again.

The security e-mails (orgs.notifications: a key saved or removed, or put into or out of use by a plan change, a
password changed, a token created) go the same way, handed over once their change commits, but are not lost so: each
is first written to the database's outbox in the change's own transaction (orgs.outbox), and one this thread never
sent, or failed to, is sent later by `send_pending_mail`. Refused because too many are waiting, or still waiting
when the process stops, such an e-mail is logged here as unsent all the same, and goes out from the outbox.
"""

import atexit
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from opsion import requestid

log = logging.getLogger("opsion.mailer")

CAPACITY = 100
# How long a stopping process goes on sending what is waiting before it logs the rest as unsent. A send takes
# EMAIL_TIMEOUT (10 s) at most; gunicorn kills a worker still running after its graceful timeout, which
# gunicorn.conf.py makes room for this beside the answers being finished.
EXIT_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Job:
    send: Callable[[], None]
    what: str  # for the log: "password reset e-mail to user 42"
    # The request that asked for it: the send, and what is logged of it, carry its ID, so support can find the
    # e-mail a user's reference led to. Read when the job is made, on the request's thread.
    request_id: str = field(default_factory=requestid.current)


class Sender:
    """One daemon thread sending the jobs it is given, in order. It starts at the first job (and again in a forked
    child, which inherits no thread), so a process that never sends mail never runs it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._reset()

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._sending: Job | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        """Queue `job`, or log that it will not be sent: this never waits, whatever the mail thread is doing."""
        with self._changed:
            if len(self._waiting) >= self.capacity:
                log.error("%s not sent: %s already waiting to be sent", job.what, emails(len(self._waiting)))
                return
            self._waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="opsion-mailer", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until nothing is waiting or being sent; False if that took longer than `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and self._sending is None, timeout)

    def stop(self, grace: float = EXIT_GRACE_SECONDS) -> None:
        """At exit: go on sending for up to `grace` seconds, then log whatever is left and drop what is waiting."""
        with self._changed:
            if self._changed.wait_for(lambda: not self._waiting and self._sending is None, grace):
                return
            left = [f"{self._sending.what} (being sent, it may yet go)"] if self._sending else []
            left += [job.what for job in self._waiting]
            self._waiting.clear()
        log.error("the process is stopping with %s unsent: %s", emails(len(left)), ", ".join(left))

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting)
                self._sending = job = self._waiting.popleft()
            try:
                with requestid.bound(job.request_id):
                    try:
                        job.send()
                    except BaseException as exc:  # SystemExit too: it would end this thread, and no mail would go
                        log_not_sent(job.what, exc)
            finally:
                with self._changed:
                    self._sending = None
                    self._changed.notify_all()


def log_not_sent(what: str, exc: BaseException) -> None:
    """Log at ERROR that the e-mail `what` names was not sent, by the error's type and SMTP code only: an SMTP error's
    text quotes the addresses it refused, and other errors could quote the message (a reset e-mail's link resets the
    password)."""
    code = getattr(exc, "smtp_code", None)
    log.error("%s not sent (%s%s)", what, type(exc).__name__, f" {code}" if code else "")


def emails(count: int) -> str:
    """ "1 e-mail", "2 e-mails"."""
    return f"{count} e-mail{'' if count == 1 else 's'}"


sender = Sender(CAPACITY)


def send_later(send: Callable[[], None], *, what: str) -> None:
    """Call `send` on the mail thread, after this returns; `what` names it in the log if it fails or never runs.

    `send` is given what it needs (the account, the host) and must close any database connection it opens: the mail
    thread has no request cycle to close it (orgs.outbox's sends do)."""
    sender.submit(Job(send, what))


def wait(timeout: float | None = None) -> bool:
    """Tests: wait for every e-mail handed over so far to be sent (or its failure logged)."""
    return sender.wait(timeout)


# A forked child (a gunicorn worker of a --preload app) has no mail thread and sends nothing its parent queued.
os.register_at_fork(after_in_child=sender._reset)
# Django's own and gunicorn's workers leave with sys.exit: the daemon thread still runs while atexit handlers do.
atexit.register(sender.stop)
