"""The limiter's function checks, once the organisation's lock is held, that the query's asker is still an active
member of the organisation; if not, it decides nothing and says so, and the caller answers as to any non-member.

A query finds its asker's membership before its decision waits for the organisation row. 0007's function then
counted and stored the query of someone removed from the organisation (or deactivated) during that wait, and the
caller asked Claude with the organisation's key. Here the membership is looked up once the lock is held, in a
statement of its own (a fresh snapshot under READ COMMITTED: a removal committed during the wait is seen): one probe
of the unique (user, organisation) index and one of the user's primary key. A NULL `p_user_id` checks nothing (calls
of the limiter alone, for no member).
"""

from importlib import import_module

from django.db import migrations

first = import_module("insights.migrations.0002_ratelimit_acquire_function")

ACQUIRE = """
CREATE OR REPLACE FUNCTION insights_ratelimit_acquire(
    p_organisation_id bigint, p_limit integer, p_window_seconds integer, p_row jsonb,
    p_byom_plans text[], p_key_saved_at timestamptz, p_user_id bigint,
    OUT used bigint, OUT oldest timestamptz, OUT db_now timestamptz, OUT new_id bigint, OUT new_created_at timestamptz,
    OUT key_changed boolean, OUT not_member boolean
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    insert_columns text;
    row_values jsonb;
    current_plan text;
    key_in_force timestamptz;
BEGIN
    -- Serialise decisions for this organisation, and only this one, until the transaction ends. The plan is read
    -- as the lock is taken: after a wait, the version committed by whoever held it.
    SELECT o.plan INTO current_plan FROM orgs_organisation AS o WHERE o.id = p_organisation_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- all NULL: the caller raises Organisation.DoesNotExist
    END IF;
    -- A new statement, so a new snapshot: a removal or deactivation committed while this call waited is seen.
    IF p_user_id IS NOT NULL THEN
        PERFORM 1 FROM orgs_membership AS m JOIN orgs_user AS u ON u.id = m.user_id
         WHERE m.organisation_id = p_organisation_id AND m.user_id = p_user_id AND u.is_active;
        IF NOT FOUND THEN
            not_member := true;
            RETURN;  -- nothing counted: the caller answers as to a non-member
        END IF;
    END IF;
    not_member := false;
    IF p_byom_plans IS NOT NULL THEN
        IF current_plan = ANY (p_byom_plans) THEN
            SELECT k.saved_at INTO key_in_force FROM orgs_claudeapikey AS k WHERE k.organisation_id = p_organisation_id;
        END IF;
        IF key_in_force IS DISTINCT FROM p_key_saved_at THEN
            key_changed := true;
            RETURN;  -- nothing counted: the caller chooses the key and limit again
        END IF;
    END IF;
    key_changed := false;
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

DROP = (
    "DROP FUNCTION IF EXISTS insights_ratelimit_acquire(bigint, integer, integer, jsonb, text[], timestamptz, bigint);"
)


class Migration(migrations.Migration):
    dependencies = [("insights", "0010_drop_the_limiters_function_of_0004")]

    # A new signature is a new function beside 0007's, which is kept for a rolling deploy: the processes still on
    # the previous release call it until they restart. This release never calls it; a later migration drops it.
    operations = [first.PostgreSQLOnly(ACQUIRE, reverse_sql=DROP)]
