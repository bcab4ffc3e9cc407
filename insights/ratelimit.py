"""The rolling window: at most N queries per organisation in any span of W seconds.

One row per query (InsightQuery) is the log. A decision locks the organisation row, counts the
rows in the window and inserts the new one, in one short transaction committed before Anthropic
is called. Time is the database's clock, so every app server counts against the same time.

On PostgreSQL the decision is one call of the SQL function `insights_ratelimit_acquire`
(migration 0002): lock, count and insert in one round trip instead of five (BEGIN, lock, count,
insert, COMMIT), which keeps it within a small factor of a bare INSERT (docs/benchmarks.md). One
statement could not do it alone: a statement's snapshot is taken before it waits for the lock, so
its count would miss the row committed by the request it waited for. Inside a function each
statement takes a fresh snapshot. SQLite keeps a transaction below, which BEGIN IMMEDIATE serialises.
"""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Count, DateTimeField, ExpressionWrapper, F, Max, Min, QuerySet
from django.db.models import Window as Over
from django.db.models.expressions import DatabaseDefault
from django.db.models.functions import Now, RowNumber

from insights.models import InsightQuery
from opsion.errors import Refused
from orgs.models import BYOM_PLANS, Membership, Organisation


@dataclass(frozen=True)
class Window:
    limit: int
    window_seconds: int
    used: int
    reset_seconds: int  # until the oldest counted query leaves the window; 0 when none counts

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def window_words(seconds: int) -> str:
    """The window as the pages name it: "60 minutes" (the product documentation's), "10 minutes", "2 hours"."""
    if seconds % 3600 == 0 and seconds > 3600:
        count, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0:
        count, unit = seconds // 60, "minute"
    else:
        count, unit = seconds, "second"
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def duration(seconds: int) -> str:
    """`1 h 5 min`, `12 min`, `45 s`: when the next query frees up, rounded up (never early) to the minute."""
    seconds = int(seconds or 0)
    if seconds >= 3600:
        hours, minutes = divmod(-(-seconds // 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if seconds >= 60:
        minutes = -(-seconds // 60)
        return f"{minutes} min"
    return f"{seconds} s"


class RateLimited(Refused):
    code, status = "rate_limited", 429

    def __init__(self, window: Window) -> None:
        # Wording from the product documentation: "Rate limit reached (200/hour)", for its hour-long window.
        per = "/hour" if window.window_seconds == 3600 else f" per {window_words(window.window_seconds)}"
        super().__init__(f"Rate limit reached ({window.limit}{per})", retry_after=window.reset_seconds)
        self.window = window  # as the decision saw it: the response needs no second look
        self.key_source: str | None = None  # whose key's limit it is, once the caller that chose the key says


def _refuse(org_id: int, *, used: int, limit: int, oldest, now, window_seconds: int) -> RateLimited:
    frees_in = _frees_in(org_id, used=used, limit=limit, oldest=oldest, now=now, window_seconds=window_seconds)
    return RateLimited(Window(limit, window_seconds, used, frees_in))


# `_orm_stats` as the ORM writes it for SQLite, written out once: building that statement through the
# ORM cost more than the rest of a SQLite decision put together (docs/benchmarks.md). Same clock
# (SQLite's NOW, as the column's default), same arithmetic (Django's own django_format_dtdelta);
# tests/insights/test_ratelimit.py checks the two agree. One difference: SQLite compares the times as text, and
# django_format_dtdelta writes a time on the second without its fraction ("…10:00:00"), which sorts before the
# column default's "…10:00:00.000": a query exactly a window old would still count. STRFTIME writes the cutoff as the
# default writes created_at.
_SQLITE_STATS = (
    "SELECT COUNT(*), MIN(created_at), STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"
    " FROM insights_insightquery WHERE organisation_id = %s AND created_at >"
    " STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', django_format_dtdelta('-', STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW'), %s))"
)


def _stats(org_id: int, window_seconds: int) -> tuple[int, datetime | None, datetime | None]:
    """Queries counted in the window, the oldest one's time and the database's now."""
    connection = connections[router.db_for_write(InsightQuery)]
    if connection.vendor != "sqlite":
        return _orm_stats(org_id, window_seconds)
    with connection.cursor() as cursor:
        cursor.execute(_SQLITE_STATS, [org_id, window_seconds * 1_000_000])
        used, oldest, now = cursor.fetchone()
    as_datetime = connection.ops.convert_datetimefield_value
    return used, as_datetime(oldest, None, connection), as_datetime(now, None, connection)


# A decision's statistics on SQLite, with the key in force (the organisation's plan, its stored key's save time) and
# whether the asker is still an active member read in the same statement: one statement, as the count alone was.
_SQLITE_DECISION = _SQLITE_STATS.replace(
    "SELECT COUNT(*), MIN(created_at), STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')",
    "SELECT COUNT(*), MIN(created_at), STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW'),"
    " (SELECT plan FROM orgs_organisation WHERE id = %s),"
    " (SELECT saved_at FROM orgs_claudeapikey WHERE organisation_id = %s),"
    " EXISTS (SELECT 1 FROM orgs_membership AS m JOIN orgs_user AS u ON u.id = m.user_id"
    " WHERE m.organisation_id = %s AND m.user_id = %s AND u.is_active)",
)


def _decision_stats(
    org_id: int, window_seconds: int, member_id: int | None
) -> tuple[int, datetime | None, datetime | None, datetime | None, bool]:
    """_stats, the `saved_at` of the key the organisation's queries run on now (None for the platform key, as
    insights.keys.resolve decides, and as the PostgreSQL function checks), and whether user `member_id` is an active
    member of the organisation (True when None: no member to check). Inside the decision's transaction."""
    connection = connections[router.db_for_write(InsightQuery)]
    if connection.vendor != "sqlite":
        plan, saved_at = Organisation.objects.filter(pk=org_id).values_list("plan", "claude_api_key__saved_at").get()
        member = member_id is None or _members(org_id, member_id).exists()
        return (*_orm_stats(org_id, window_seconds), saved_at if plan in BYOM_PLANS else None, member)
    with connection.cursor() as cursor:
        cursor.execute(_SQLITE_DECISION, [org_id, org_id, org_id, member_id, org_id, window_seconds * 1_000_000])
        used, oldest, now, plan, saved_at, member = cursor.fetchone()
    as_datetime = connection.ops.convert_datetimefield_value
    in_force = as_datetime(saved_at, None, connection) if plan in BYOM_PLANS else None
    now = as_datetime(now, None, connection)
    return used, as_datetime(oldest, None, connection), now, in_force, member_id is None or bool(member)


def _members(org_id: int, user_id: int) -> QuerySet:
    """The membership of `user_id` in the organisation, if they are an active member (the SQL above, as the ORM's)."""
    return Membership.objects.filter(organisation_id=org_id, user_id=user_id, user__is_active=True)


def ago(age: timedelta) -> ExpressionWrapper:
    """That long before the database's clock, which stamps created_at and which the window counts against (an app
    server's clock may run ahead or behind)."""
    return ExpressionWrapper(Now() - age, output_field=DateTimeField())


def counted(rows: QuerySet, window_seconds: int) -> QuerySet:
    """The rows inside the rolling window: the ones the limit counts."""
    # From the first microsecond inside the window, as _frees_in reads it: on SQLite a start on the second is written
    # "…10:00:00", before a row stamped at it ("…10:00:00.000"), which would still count here and not in a decision.
    return rows.filter(created_at__gte=ago(timedelta(seconds=window_seconds) - timedelta(microseconds=1)))


def _orm_stats(org_id: int, window_seconds: int) -> tuple[int, datetime | None, datetime | None]:
    row = counted(InsightQuery.objects.filter(organisation_id=org_id), window_seconds).aggregate(
        # COUNT(*), not COUNT(id): PostgreSQL can then answer from the index alone.
        used=Count("*"),
        oldest=Min("created_at"),
        now=Max(Now()),
    )
    return row["used"], row["oldest"], row["now"]


def _reset(oldest: datetime | None, now: datetime | None, window_seconds: int) -> int:
    if oldest is None or now is None:
        return 0
    return max(1, math.ceil((oldest + timedelta(seconds=window_seconds) - now).total_seconds()))


def _frees_in(org_id: int, *, used: int, limit: int, oldest, now, window_seconds: int) -> int:
    """Seconds until the next query is allowed: when the oldest counted row leaves the window, or,
    when more than `limit` rows count (the limit fell: the key was removed, the plan downgraded),
    when enough of them have left for one more to fit. A limit of 0 (allowed: it switches a key off) lets
    nothing through however many leave: a whole window, never "now" (nor a row that is not there)."""
    if limit <= 0:
        return window_seconds
    if used > limit:
        # At or after the first microsecond inside the window, not after its start: on SQLite, which compares times as
        # text, a start on the second is written "…10:00:00", before a row stamped at it ("…10:00:00.000").
        first_inside = now - timedelta(seconds=window_seconds) + timedelta(microseconds=1)
        oldest = (
            InsightQuery.objects.filter(organisation_id=org_id, created_at__gte=first_inside)
            .order_by("created_at")
            .values_list("created_at", flat=True)[used - limit]
        )
    return _reset(oldest, now, window_seconds)


def peek(*, org: Organisation, limit: int, window_seconds: int) -> Window:
    """The window as it stands, without counting anything."""
    used, oldest, now = _stats(org.pk, window_seconds)
    frees_in = _frees_in(org.pk, used=used, limit=limit, oldest=oldest, now=now, window_seconds=window_seconds)
    return Window(limit, window_seconds, used, frees_in)


def window_on_platform_key(org: Organisation) -> Window:
    """The window as it would stand on the platform key's limit: what removing the organisation's key, or a plan
    change taking it out of use, would leave (the queries already counted stay counted). Here, not in
    insights.services, so that orgs.notifications can import it: insights.services imports orgs.services, which
    imports orgs.notifications."""
    return windows_on_platform_key([org])[org.pk]


def counted_by_organisation(org_ids, window_seconds: int) -> QuerySet:
    """`counted` for many organisations in one grouped statement, however many: a row for each with queries in the
    window, holding how many count (`used`), the oldest one's time (`oldest`) and the database's clock (`now`)."""
    rows = counted(InsightQuery.objects.filter(organisation_id__in=org_ids), window_seconds).order_by()
    return rows.values("organisation_id").annotate(used=Count("*"), oldest=Min("created_at"), now=Max(Now()))


def windows_on_platform_key(orgs) -> dict[int, Window]:
    """window_on_platform_key of each of `orgs`, by primary key, in one query however many there are: two when some
    have used more than the limit, where the next query fits only once several have left (as _frees_in reads it)."""
    limit, window_seconds = settings.INSIGHTS_PLATFORM_LIMIT, settings.INSIGHTS_WINDOW_SECONDS
    stats = {row["organisation_id"]: row for row in counted_by_organisation([org.pk for org in orgs], window_seconds)}
    over = [org_id for org_id, row in stats.items() if 0 < limit < row["used"]]
    frees_at = _limit_th_newest(over, limit, now=stats[over[0]]["now"], window_seconds=window_seconds) if over else {}
    windows = {}
    for org in orgs:
        row = stats.get(org.pk, {"used": 0, "oldest": None, "now": None})
        if limit <= 0:
            frees_in = window_seconds  # nothing is let through however many leave, as _frees_in says
        else:
            frees_in = _reset(frees_at.get(org.pk, row["oldest"]), row["now"], window_seconds)
        windows[org.pk] = Window(limit, window_seconds, row["used"], frees_in)
    return windows


def _limit_th_newest(org_ids: list[int], limit: int, *, now: datetime, window_seconds: int) -> dict[int, datetime]:
    """By organisation, the time of the `limit`-th newest query counted at `now`: the one whose leaving lets the next
    query fit, the row _frees_in finds for one organisation at a time as the oldest but (used - limit), here for all
    of them in one statement."""
    first_inside = now - timedelta(seconds=window_seconds) + timedelta(microseconds=1)  # as _frees_in counts them
    newest_first = Over(RowNumber(), partition_by=F("organisation_id"), order_by=F("created_at").desc())
    rows = (
        InsightQuery.objects.filter(organisation_id__in=org_ids, created_at__gte=first_inside)
        .annotate(newest_first=newest_first)
        .filter(newest_first=limit)
        .values_list("organisation_id", "created_at")
    )
    return dict(rows)


def locked_out_words(window: Window, *, who: str, counted_in: str = "") -> str:
    """What a full `window` on the platform key means, in the one sentence every surface says it with (no full stop:
    a surface may go on): "{who} has used 25 queries in the last 60 minutes, so no one in it can ask AI Insights for
    about 21 min"; staff read `counted_in` "in the window". Empty while a query remains."""
    if window.remaining:
        return ""
    counted_in = counted_in or f"in the last {window_words(window.window_seconds)}"
    return (
        f"{who} has used {window.used} queries {counted_in}, so no one in it can ask AI Insights for about "
        f"{duration(window.reset_seconds)}"
    )


class KeyChanged(Exception):
    """The organisation's plan or key changed while the decision waited for its lock: nothing was counted, and the
    key and limit must be chosen again."""


class NotMember(Exception):  # noqa: N818 (not an error of ours: the asker left as the decision waited)
    """The asker was removed from the organisation (or deactivated) while the decision waited for its lock: nothing
    was counted, and they are to be answered as any non-member is."""


UNCHECKED = object()  # `key_saved_at` of a caller choosing no key (tests of the limiter alone)


def acquire(
    *,
    org: Organisation,
    limit: int,
    window_seconds: int,
    row: dict,
    key_saved_at=UNCHECKED,
    member_id: int | None = None,
) -> tuple[InsightQuery, Window]:
    """Count one query and insert its row, or raise RateLimited with the exact Retry-After.

    `member_id` is the asker, found a member before the decision waited for the organisation row: once it is held,
    NotMember is raised, nothing counted, unless they are still an active member of `org` (a removal or a
    deactivation committed meanwhile). None checks no one (tests of the limiter alone).

    `key_saved_at` is the key the caller chose `limit` for: the `saved_at` of the organisation's own key, or None
    for the platform key. The plan and key were read before the decision waited for the organisation row, which
    key writes and staff's changes hold until they commit: once it is held they are checked again, and if another
    key is in force now (removed, replaced, saved; the plan changed) KeyChanged is raised, nothing counted."""
    using = router.db_for_write(InsightQuery)
    _require_autocommit(connections[using])
    if connections[using].vendor == "postgresql":
        return _acquire_in_one_round_trip(
            org=org,
            limit=limit,
            window_seconds=window_seconds,
            row=row,
            using=using,
            key_saved_at=key_saved_at,
            member_id=member_id,
        )
    with transaction.atomic(using=using, durable=True):
        # Lock the organisation row so two requests racing at 19/20 cannot both pass. The count
        # must run after the lock: under READ COMMITTED each statement takes a fresh snapshot.
        # (SQLite has no row locks and needs none: BEGIN IMMEDIATE has already serialised us.)
        if connections[using].features.has_select_for_update:
            Organisation.objects.select_for_update().filter(pk=org.pk).values_list("pk", flat=True).get()
        used, oldest, now, in_force, member = _decision_stats(org.pk, window_seconds, member_id)
        if not member:
            raise NotMember()
        if key_saved_at is not UNCHECKED and in_force != key_saved_at:
            raise KeyChanged()
        if used >= limit:
            raise _refuse(org.pk, used=used, limit=limit, oldest=oldest, now=now, window_seconds=window_seconds)
        query = InsightQuery.objects.create(organisation=org, **row)
    oldest = oldest or query.created_at
    return query, Window(limit, window_seconds, used + 1, _reset(oldest, query.created_at, window_seconds))


def _acquire_in_one_round_trip(
    *, org: Organisation, limit: int, window_seconds: int, row: dict, using: str, key_saved_at, member_id: int | None
) -> tuple[InsightQuery, Window]:
    query = InsightQuery(organisation=org, **row)
    checked = key_saved_at is not UNCHECKED
    call = (
        "SELECT used, oldest, db_now, new_id, new_created_at, key_changed, not_member"
        " FROM insights_ratelimit_acquire(%s, %s, %s, %s::jsonb, %s::text[], %s::timestamptz, %s::bigint)"
    )
    params = [
        org.pk,
        limit,
        window_seconds,
        _row_json(query, using),
        sorted(str(plan) for plan in BYOM_PLANS) if checked else None,
        key_saved_at if checked else None,
        member_id,
    ]
    connection = connections[using]
    if connection.in_atomic_block or _reads_committed(connection):
        with connection.cursor() as cursor:
            cursor.execute(call, params)
            used, oldest, now, new_id, created_at, key_changed, not_member = cursor.fetchone()
    else:
        # The server starts a statement's own transaction at another level (default_transaction_isolation): under
        # REPEATABLE READ the function's count would keep the snapshot taken before it waited for the lock, and miss
        # the query of the decision it waited for. A transaction Django begins says READ COMMITTED (the connection's
        # isolation_level, opsion/settings.py): BEGIN and COMMIT, two round trips more, on such a server only.
        with transaction.atomic(using=using, durable=True), connection.cursor() as cursor:
            cursor.execute(call, params)
            used, oldest, now, new_id, created_at, key_changed, not_member = cursor.fetchone()
    if not_member:
        raise NotMember()
    if key_changed:
        raise KeyChanged()
    if used is None:
        raise Organisation.DoesNotExist("Organisation matching query does not exist.")
    if new_id is None:
        raise _refuse(org.pk, used=used, limit=limit, oldest=oldest, now=now, window_seconds=window_seconds)
    # The row now exists: mark the instance saved, as Model.save() would.
    query.pk, query.created_at = new_id, created_at
    query._state.adding, query._state.db = False, using
    oldest = oldest or created_at
    return query, Window(limit, window_seconds, used + 1, _reset(oldest, created_at, window_seconds))


def _reads_committed(connection) -> bool:
    """Whether a statement outside a transaction runs under READ COMMITTED on this connection, as the limiter's
    function needs. Asked once per connection to the server: a database's or role's default applies as it opens."""
    connection.ensure_connection()
    known = getattr(connection, "_limiter_read_committed", None)
    if known is None or known[0] is not connection.connection:
        with connection.cursor() as cursor:
            cursor.execute("SHOW default_transaction_isolation")
            known = (connection.connection, cursor.fetchone()[0] == "read committed")
        connection._limiter_read_committed = known
    return known[1]


def _require_autocommit(connection) -> None:
    """Django's durable-atomic check, without opening a transaction (BEGIN and COMMIT would be two more
    round trips). Inside a caller's transaction the function's row lock and the query row would last
    until that transaction ends: held across the call to Claude, and the row invisible to every count.
    A test's own transaction is exempt, as Django exempts it from durable blocks."""
    blocks = connection.atomic_blocks
    if blocks and not blocks[-1]._from_testcase:
        raise RuntimeError("ratelimit.acquire() must not run inside a transaction: it commits its own decision.")


def _row_json(query: InsightQuery, using: str) -> str:
    """The unsaved row's column values as the ORM would send them; database defaults left out."""
    connection = connections[using]
    values = {}
    for field in InsightQuery._meta.concrete_fields:
        value = getattr(query, field.attname)
        if field.primary_key or isinstance(value, DatabaseDefault):
            continue
        values[field.column] = field.get_db_prep_save(value, connection)
    # str() for datetimes gives PostgreSQL's own input format, microseconds and offset included.
    return json.dumps(values, default=str)
