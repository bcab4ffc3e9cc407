"""Section 2: the cost of one limiter decision, beside django-ratelimit on Redis and the INSERT floor.

All variants run in the same process on one persistent connection, interleaved round by round.
The floor is what any design that logs each query must pay: one single-row INSERT of the same row
into the same table, committed on its own. Each round's inserted rows are deleted afterwards so the
window never grows during the run.

Each database variant runs twice: durable (as deployed: PostgreSQL waits for the log flush at every
commit; SQLite, in WAL mode with synchronous = NORMAL, syncs the log at checkpoints) and with the
flush switched off for the session (synchronous_commit = off; SQLite synchronous = OFF).
The flush is the same for every variant and, on a shared disk, noisy; without it the figures
isolate what a design controls: round trips and work per decision.
"""

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.test import RequestFactory

from bench import db, legacy, stats
from bench.world import Bench, make_orgs
from insights import ratelimit
from insights.models import InsightQuery

HUGE = 10**9
WINDOW = 3600


def redis_available() -> bool:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        return False
    from django.core.cache import cache

    try:
        cache.set("opsion-bench-ping", 1, 5)
        return True
    except Exception:  # noqa: BLE001 - any failure means "no Redis" for the benchmark
        return False


def _flush_setting(value: str | None = None) -> str:
    """The session's commit-flush setting, as deployed unless changed; sets `value` first if given."""
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if value is not None:
            cursor.execute(f"SET synchronous_commit = {value}" if postgresql else f"PRAGMA synchronous = {value}")
        cursor.execute("SHOW synchronous_commit" if postgresql else "PRAGMA synchronous")
        return str(cursor.fetchone()[0])


def _without_flush(timed: Callable[[], float]) -> Callable[[], float]:
    """`timed` with the flush off, then the session put back as it was (as deployed: PostgreSQL
    synchronous_commit = on; SQLite in WAL mode with synchronous = NORMAL, as the settings open it)."""

    def run() -> float:
        deployed = _flush_setting()
        _flush_setting("off" if connection.vendor == "postgresql" else "OFF")
        try:
            return timed()
        finally:
            _flush_setting(deployed)

    return run


def run(bench: Bench, *, rounds: int, calls: int) -> dict:
    limiter_org, legacy_org, floor_org = make_orgs("decision", 3, member=bench.user)
    row = bench.row()

    def acquire() -> None:
        # As a query decides: the key in force (the organisation has none: the platform key) and the asker's membership
        # checked under the lock.
        ratelimit.acquire(
            org=limiter_org, limit=HUGE, window_seconds=WINDOW, row=row, key_saved_at=None, member_id=bench.user.pk
        )

    def acquire_before() -> None:
        legacy.acquire(org=legacy_org, limit=HUGE, window_seconds=WINDOW, row=row)

    def floor() -> None:
        InsightQuery.objects.create(organisation=floor_org, **row)

    database = {"floor": floor, "acquire": acquire, "acquire_before": acquire_before}
    timed = {name: stats.per_call(fn, calls) for name, fn in database.items()}
    timed |= {f"{name}_no_flush": _without_flush(stats.per_call(fn, calls)) for name, fn in database.items()}
    warm = list(database.values())
    if redis_available():
        from django_ratelimit.core import is_ratelimited

        request = RequestFactory().post("/")

        def redis_fixed_window() -> None:
            is_ratelimited(
                request,
                group="opsion-bench",
                key=lambda _g, _r: f"org:{limiter_org.pk}",
                rate="1000000/h",
                increment=True,
            )

        timed["django_ratelimit_redis"] = stats.per_call(redis_fixed_window, calls)
        warm.append(redis_fixed_window)

    watermark = db.last_query_id()
    org_ids = [limiter_org.pk, legacy_org.pk, floor_org.pk]
    for fn in warm:  # connections, prepared plans, caches
        for _ in range(max(5, calls // 10)):
            fn()

    def reset() -> None:
        db.reset_rows(org_ids=org_ids, above_id=watermark)

    reset()
    results = stats.interleave(timed, rounds=rounds, between=reset)
    out: dict = {"seconds_per_call": {name: stats.summary(values) for name, values in results.items()}}
    out["ratio_to_floor"] = {
        name: stats.summary(stats.ratios(results[name], results["floor"]))
        for name in ("acquire", "acquire_before", "django_ratelimit_redis")
        if name in results
    }
    out["ratio_to_floor_no_flush"] = {
        name: stats.summary(stats.ratios(results[f"{name}_no_flush"], results["floor_no_flush"]))
        for name in ("acquire", "acquire_before")
    }
    # The row is written anyway (it is the usage history), so a design's marginal cost is its time
    # minus the floor's; django-ratelimit's is all of its time, on top of that insert.
    out["over_floor_seconds"] = {
        name: stats.summary([a - f for a, f in zip(results[name], results["floor"], strict=True)])
        for name in ("acquire", "acquire_before")
    }
    out["after_over_before"] = stats.summary(stats.ratios(results["acquire"], results["acquire_before"]))
    out["after_over_before_no_flush"] = stats.summary(
        stats.ratios(results["acquire_no_flush"], results["acquire_before_no_flush"])
    )
    out["calls_per_round"] = calls
    return out
