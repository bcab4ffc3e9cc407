"""Schema operations the migrations share."""

from django.db import migrations


def _drop_index(name: str):
    """DROP INDEX, CONCURRENTLY on PostgreSQL: no lock on the table or the tables its foreign key names
    (Django's own AlterField would drop and re-add the constraint, re-checking every row under lock)."""

    def forwards(apps, schema_editor):
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}")

    return forwards


def _create_index(name: str, table: str, column: str):
    def backwards(apps, schema_editor):
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        q = schema_editor.quote_name
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {q(name)} ON {q(table)} ({q(column)})")

    return backwards


def without_index(operation: migrations.AlterField, name: str, table: str, column: str):
    """`operation` (a foreign key's db_index=False) for the model state; for the database, its index dropped
    CONCURRENTLY on PostgreSQL. Migrations using it set `atomic = False`."""
    return migrations.SeparateDatabaseAndState(
        state_operations=[operation],
        database_operations=[migrations.RunPython(_drop_index(name), _create_index(name, table, column))],
    )
