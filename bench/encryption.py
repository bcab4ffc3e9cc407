"""Section 5: Fernet per call, and `manage.py rotate_encryption_keys` per 10 k stored keys.

Encrypt and decrypt go through orgs.crypto, as the app does. "Decrypt, old key" is the cost
between adding a new key and running the rotation: MultiFernet tries the new key first. The
rotation is timed over 10 k organisations with a stored key each, alternating which of two keys
comes first so every run moves every row.
"""

import io
import time

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from bench import stats
from bench.world import BYOM_KEY, Bench, make_orgs
from orgs import crypto
from orgs.models import ClaudeApiKey


def run(bench: Bench, *, rounds: int, calls: int, rows: int, rotations: int) -> dict:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    org_id = bench.api_org.pk  # each key is bound to its organisation (orgs.crypto)
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        ciphertext = crypto.encrypt(BYOM_KEY, organisation_id=org_id)
    timed = {
        "encrypt": stats.per_call(lambda: crypto.encrypt(BYOM_KEY, organisation_id=org_id), calls),
        "decrypt": stats.per_call(lambda: crypto.decrypt(ciphertext, organisation_id=org_id), calls),
    }
    with override_settings(FIELD_ENCRYPTION_KEYS=[old, new]):
        per_call = stats.interleave(timed, rounds=rounds)
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        old_key = stats.interleave({"decrypt_old_key": timed["decrypt"]}, rounds=rounds)

    orgs = make_orgs("rotation", rows)
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        ClaudeApiKey.objects.bulk_create(ClaudeApiKey(organisation=org, secret=BYOM_KEY) for org in orgs)
    seconds = []
    outputs = []
    for i in range(rotations):
        # The configured key stays last so the bench organisation's own key still opens.
        order = ([new, old] if i % 2 == 0 else [old, new]) + settings.FIELD_ENCRYPTION_KEYS
        out = io.StringIO()
        with override_settings(FIELD_ENCRYPTION_KEYS=order):
            started = time.perf_counter()
            call_command("rotate_encryption_keys", stdout=out)
            seconds.append(time.perf_counter() - started)
        outputs.append(out.getvalue().splitlines()[0])  # the count; the report quotes it within one line
    stored = ClaudeApiKey.objects.count()  # the rotation orgs' keys and the bench organisation's
    # Put the bench organisation's key back under the configured key, for anything run after this.
    ClaudeApiKey.objects.filter(organisation=bench.api_org).update(
        secret=crypto.Sealed(crypto.encrypt(BYOM_KEY, organisation_id=org_id))
    )
    return {
        "seconds_per_call": {name: stats.summary(values) for name, values in (per_call | old_key).items()},
        "rotation_seconds": stats.summary(seconds),
        "rotation_rows": stored,
        "rotation_seconds_per_10k": stats.summary([s * 10_000 / stored for s in seconds]),
        "rotation_output": outputs[-1],
        "calls_per_round": calls,
    }
