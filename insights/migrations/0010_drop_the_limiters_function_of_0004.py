"""Drop the limiter's function of 0004's signature, kept beside 0007's for a rolling deploy.

Processes on a release before 0007 called it until they restarted. Every release since calls 0007's only, so a deploy
from one of them loses nothing. A deploy straight from a release before 0007 must pass through one between 0007 and
this one, or restart every process at once: until then, its old processes' queries would fail.
"""

from importlib import import_module

from django.db import migrations

first = import_module("insights.migrations.0002_ratelimit_acquire_function")
its = import_module("insights.migrations.0004_ratelimit_stamps_the_decision")

DROP = "DROP FUNCTION IF EXISTS insights_ratelimit_acquire(bigint, integer, integer, jsonb);"


class Migration(migrations.Migration):
    dependencies = [("insights", "0009_insightquery_idempotency_key_index")]

    operations = [first.PostgreSQLOnly(DROP, reverse_sql=its.ACQUIRE)]
