"""Queries answered before the stop reason was recorded read as complete: nothing better is known of them, and the
answer was shown as complete then. Failed and pending ones keep none (Claude did not end them).

Every query ever asked is a row, so this is most of a large table. It runs outside a transaction, in ranges of
BATCH ids each committed on its own: in 0005's transaction, behind its ALTER TABLE, one UPDATE of every answered row
would hold PostgreSQL's ACCESS EXCLUSIVE lock on the table until the last row was written, and every question asked
meanwhile (the rolling limit counts these rows) would wait for it. Each range locks only its own rows, briefly, and
a migration stopped part-way is simply run again: it fills in only rows still without a stop reason.
"""

from django.db import migrations
from django.db.models import Max, Min

BATCH = 10_000


def answered_ended_complete(apps, schema_editor):
    queries = apps.get_model("insights", "InsightQuery").objects.using(schema_editor.connection.alias)
    bounds = queries.aggregate(first=Min("pk"), last=Max("pk"))
    if bounds["first"] is None:
        return
    for start in range(bounds["first"], bounds["last"] + 1, BATCH):
        queries.filter(pk__gte=start, pk__lt=start + BATCH, outcome="answered", stop_reason__isnull=True).update(
            stop_reason="complete"
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("insights", "0005_insightquery_stop_reason"),
    ]

    operations = [
        migrations.RunPython(answered_ended_complete, migrations.RunPython.noop, elidable=True),
    ]
