"""The rolling limiter's decision as one PostgreSQL function: one round trip instead of five.

insights.ratelimit calls it on PostgreSQL only; SQLite keeps the ORM path (BEGIN IMMEDIATE already
serialises it), so the operation does nothing on other databases.
"""

from django.db import migrations

ACQUIRE = """
CREATE OR REPLACE FUNCTION insights_ratelimit_acquire(
    p_organisation_id bigint, p_limit integer, p_window_seconds integer, p_row jsonb,
    OUT used bigint, OUT oldest timestamptz, OUT db_now timestamptz, OUT new_id bigint, OUT new_created_at timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    insert_columns text;
BEGIN
    -- Serialise decisions for this organisation, and only this one, until the transaction ends.
    PERFORM 1 FROM orgs_organisation WHERE id = p_organisation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- all NULL: the caller raises Organisation.DoesNotExist
    END IF;
    -- A new statement, so under READ COMMITTED a new snapshot taken after the lock: it sees every
    -- row committed by whoever held the lock before us. COUNT(*) and MIN(created_at) are both
    -- answered from the insight_org_created index (a range scan on organisation, created_at).
    SELECT count(*), min(q.created_at), statement_timestamp() INTO used, oldest, db_now
      FROM insights_insightquery AS q
     WHERE q.organisation_id = p_organisation_id
       AND q.created_at > statement_timestamp() - make_interval(secs => p_window_seconds);
    IF used >= p_limit THEN
        RETURN;  -- refused: nothing inserted, new_id stays NULL
    END IF;
    -- The row's columns come from the model (see ratelimit._row_json), so a new field needs no
    -- change here; columns left out (created_at) take their database default.
    SELECT string_agg(quote_ident(k), ', ') INTO insert_columns FROM jsonb_object_keys(p_row) AS k;
    EXECUTE format(
        'INSERT INTO insights_insightquery (%1$s) SELECT %1$s '
        'FROM jsonb_populate_record(NULL::insights_insightquery, $1) RETURNING id, created_at',
        insert_columns
    ) INTO new_id, new_created_at USING p_row;
END
$$;
"""

DROP = "DROP FUNCTION IF EXISTS insights_ratelimit_acquire(bigint, integer, integer, jsonb);"


class PostgreSQLOnly(migrations.RunSQL):
    """RunSQL that runs on PostgreSQL and is a no-op on every other database."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("insights", "0001_initial"),
        ("orgs", "0001_initial"),
    ]

    operations = [PostgreSQLOnly(ACQUIRE, reverse_sql=DROP)]
