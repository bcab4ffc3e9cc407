"""gunicorn's timeouts, derived from ANTHROPIC_TIMEOUT_SECONDS as the settings read it (README: Running in production).

A streamed answer can take about twice ANTHROPIC_TIMEOUT_SECONDS: the first read may wait that long, and the reply is
then cut off at the first read that long after its headers (insights/claude.py; SDK retries are off). A stopping
worker (a deploy's restart, SIGTERM or SIGHUP) then sends the e-mails still waiting for up to 10 s more
(orgs/mailer.py, EXIT_GRACE_SECONDS). A fixed --graceful-timeout cut every longer answer off at each restart, with
nothing saying so, once someone raised the timeout; this file keeps the two in step.

gunicorn reads ./gunicorn.conf.py by itself when started from the checkout; options on its command line win over it,
so the production command names no timeout of its own.
"""

import math
import os
import sys
from pathlib import Path

# The checkout is not installed as a package (README: run everything from it), and the `gunicorn` script does not put
# the working directory on the path before it reads this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsion.settings")

from django.conf import settings  # noqa: E402

from orgs.mailer import EXIT_GRACE_SECONDS  # noqa: E402 (its thread starts at the first e-mail, never in the master)

# The settings module itself, not another reading of the environment: the same .env file, the same checks (a value
# they refuse stops gunicorn here, naming it), the same default.
graceful_timeout = math.ceil(2 * settings.ANTHROPIC_TIMEOUT_SECONDS + EXIT_GRACE_SECONDS)
# A gthread worker's heartbeat runs beside its request threads, so this only bounds how long a stuck worker goes
# unnoticed; a sync worker (-k sync) sends none while it answers and would be killed mid-answer below this.
timeout = graceful_timeout
