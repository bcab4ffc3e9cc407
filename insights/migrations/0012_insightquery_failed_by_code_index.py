from django.db import migrations, models

INDEX = models.Index(fields=["error_code", "id"], condition=~models.Q(error_code=""), name="insight_failed_by_code")


def add_index(apps, schema_editor):
    # Built CONCURRENTLY on PostgreSQL: a plain CREATE INDEX would hold every query's insert while it reads the whole
    # log. A build that failed part-way leaves an INVALID index of this name, dropped first so the migration can
    # simply be run again.
    model = apps.get_model("insights", "InsightQuery")
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.add_index(model, INDEX)
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s AND NOT i.indisvalid",
            [INDEX.name],
        )
        if cursor.fetchone():
            schema_editor.execute(f"DROP INDEX CONCURRENTLY {schema_editor.quote_name(INDEX.name)}")
    sql = str(INDEX.create_sql(model, schema_editor))
    schema_editor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1))


def drop_index(apps, schema_editor):
    schema_editor.remove_index(apps.get_model("insights", "InsightQuery"), INDEX)


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("insights", "0011_ratelimit_checks_the_asker_is_still_a_member"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="insightquery", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, drop_index)],
        ),
    ]
