"""The limiter's function stamps a query with the time of its decision, taken once the organisation's lock is held.

0002's function counted against, and stamped the row with, the time its statement started
(statement_timestamp(), and created_at's default, now()), before it waited for the lock. A decision that queued
behind another was stamped early by the wait: its row left the window that much early, and for that long the
window held one query more than the limit. clock_timestamp() read after the lock is the decision's own time; the
row is stamped with the same value the window was counted against.
"""

from importlib import import_module

from django.db import migrations

previous = import_module("insights.migrations.0002_ratelimit_acquire_function")

ACQUIRE = """
CREATE OR REPLACE FUNCTION insights_ratelimit_acquire(
    p_organisation_id bigint, p_limit integer, p_window_seconds integer, p_row jsonb,
    OUT used bigint, OUT oldest timestamptz, OUT db_now timestamptz, OUT new_id bigint, OUT new_created_at timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    insert_columns text;
    row_values jsonb;
BEGIN
    -- Serialise decisions for this organisation, and only this one, until the transaction ends.
    PERFORM 1 FROM orgs_organisation WHERE id = p_organisation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- all NULL: the caller raises Organisation.DoesNotExist
    END IF;
    -- The decision's time, read now the lock is held (statement_timestamp() and now() are when the call began,
    -- before any wait for the lock): the window is counted against it and the new row is stamped with it.
    db_now := clock_timestamp();
    -- A new statement, so under READ COMMITTED a new snapshot taken after the lock: it sees every
    -- row committed by whoever held the lock before us. COUNT(*) and MIN(created_at) are both
    -- answered from the insight_org_created index (a range scan on organisation, created_at).
    SELECT count(*), min(q.created_at) INTO used, oldest
      FROM insights_insightquery AS q
     WHERE q.organisation_id = p_organisation_id
       AND q.created_at > db_now - make_interval(secs => p_window_seconds);
    IF used >= p_limit THEN
        RETURN;  -- refused: nothing inserted, new_id stays NULL
    END IF;
    -- The row's columns come from the model (see ratelimit._row_json), so a new field needs no
    -- change here; created_at is the decision's time, other columns left out take their defaults.
    row_values := p_row || jsonb_build_object('created_at', db_now);
    SELECT string_agg(quote_ident(k), ', ') INTO insert_columns FROM jsonb_object_keys(row_values) AS k;
    EXECUTE format(
        'INSERT INTO insights_insightquery (%1$s) SELECT %1$s '
        'FROM jsonb_populate_record(NULL::insights_insightquery, $1) RETURNING id, created_at',
        insert_columns
    ) INTO new_id, new_created_at USING row_values;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("insights", "0003_drop_indexes_covered_by_composites")]

    operations = [previous.PostgreSQLOnly(ACQUIRE, reverse_sql=previous.ACQUIRE)]
