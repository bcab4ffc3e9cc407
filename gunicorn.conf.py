"""gunicorn's timeouts, derived from ANTHROPIC_TIMEOUT_SECONDS as the settings read it (README: Running in production).

A streamed answer can take about twice ANTHROPIC_TIMEOUT_SECONDS: the first read may wait that long, and the reply is
then cut off at the first read that long after its headers (insights/claude.py; SDK retries are off). A stopping
worker (a deploy's restart, SIGTERM or SIGHUP) then sends the e-mails still waiting for up to 10 s more
(orgs/mailer.py, EXIT_GRACE_SECONDS). A fixed --graceful-timeout cut every longer answer off at each restart, with
nothing saying so, once someone raised the timeout; this file keeps the two in step.

gunicorn reads ./gunicorn.conf.py by itself when started from the checkout; options on its command line win over it,
so the production command names no timeout of its own. It also keeps a worker told to stop from accepting connections
it would close unanswered (post_worker_init, below).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The settings module itself, not another reading of the environment: the same .env file, the same checks (a value
# they refuse stops gunicorn here, naming it), the same default. Read in a child process: gunicorn forks every worker
# from this one, so whatever it imported (the settings, orgs.mailer and theirs) every worker would run as it was when
# gunicorn started, a SIGHUP's new workers included, whatever code or .env a deploy had put in place since.
_READ = (
    "import json\n"
    "from django.conf import settings\n"
    "from orgs.mailer import EXIT_GRACE_SECONDS\n"
    "print(json.dumps([settings.ANTHROPIC_TIMEOUT_SECONDS, EXIT_GRACE_SECONDS]))\n"
)


def _answer_and_mail_seconds() -> tuple[float, float]:
    environment = {**os.environ}
    environment.setdefault("DJANGO_SETTINGS_MODULE", "opsion.settings")
    # `python -c` puts the working directory first on the path: the checkout, which is not installed as a package.
    read = subprocess.run(  # noqa: S603 (this interpreter, fixed code)
        [sys.executable, "-c", _READ], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )
    if read.returncode:
        # The settings' own message: it names the variable, never its value.
        sys.stderr.write(read.stderr)
        raise RuntimeError("gunicorn.conf.py: the settings refused this environment (above)")
    timeout, grace = json.loads(read.stdout)
    return timeout, grace


_timeout, _grace = _answer_and_mail_seconds()
graceful_timeout = math.ceil(2 * _timeout + _grace)
# A gthread worker's heartbeat runs beside its request threads, so this only bounds how long a stuck worker goes
# unnoticed; a sync worker (-k sync) sends none while it answers and would be killed mid-answer below this.
timeout = graceful_timeout


def post_worker_init(worker) -> None:
    """Leave new connections to the other workers once this one has been told to stop (gunicorn's own hook).

    gunicorn 23's gthread worker, on the SIGTERM a reload (SIGHUP) or a stop sends it, keeps waiting in its poll for
    up to a second and accepts whatever arrives meanwhile, then leaves its loop and closes those connections
    unanswered: a probe or a request arriving just after a "graceful" reload met a reset connection
    (benoitc/gunicorn#3038, #3380; not fixed in the version constraints.txt pins). Declining to accept once the
    worker is no longer alive leaves such a connection in the listening socket's queue, shared with the master,
    for a worker that is staying (or a new one) to take. A connection accepted before the signal whose request had
    not yet been read when the worker leaves its loop is answered before the worker closes its poller (below).
    """
    import select

    from gunicorn.workers.gthread import TConn, ThreadWorker

    if not isinstance(worker, ThreadWorker):
        return
    accept = worker.accept

    def accept_while_alive(server, listener) -> None:
        if worker.alive:
            accept(server, listener)

    # run() binds the listener's callback from worker.accept after this hook returns, so the instance's own wins.
    worker.accept = accept_while_alive

    # A connection accepted just before the signal whose request had not yet been read as the worker left its loop
    # sat in its poller, which run() closes next: closed unanswered, a reset (1 probe in a few hundred during a
    # SIGHUP). Answered here instead, one after another, before the poller closes: each waits up to a second for its
    # request (the client is sending it), as gunicorn's own `Connection: close` answer once the worker is stopping. An
    # idle keep-alive connection is closed, as gunicorn closes it.
    poller, close_poller = worker.poller, worker.poller.close

    def close_after_answering_the_accepted() -> None:
        for key in list(poller.get_map().values()):
            conn = getattr(key.data, "args", (None,))[0]
            if not isinstance(conn, TConn):
                continue  # a listening socket
            poller.unregister(key.fileobj)
            try:
                if not conn.initialized and select.select([conn.sock], [], [], 1.0)[0]:
                    conn.init()
                    worker.handle(conn)
            finally:
                conn.close()
        close_poller()

    poller.close = close_after_answering_the_accepted
