"""Section 4: decisions per second with 1, 8 and 32 concurrent clients.

Each client is a thread with its own database connection, calling ratelimit.acquire in a loop for
a fixed time: all on one organisation (every decision waits for the organisation's lock), or
spread over 32 organisations (a lock per organisation, so they should not wait for each other).
The layouts are interleaved round by round. The clients share one Python process, so on two cores
the figures are a floor on what the database can do; the comparison between the layouts is the
point. On PostgreSQL the first design (bench.legacy) runs beside the current one. A last run
checks the limit stays exact under the race: 32 clients, one organisation, a limit of 50,
exactly 50 let through.
"""

import threading
import time

from django.db import connection, connections

from bench import db, decision, legacy, stats
from bench.world import Bench, make_orgs
from insights import ratelimit

SPREAD = 32


def _decide(**kwargs):
    """ratelimit.acquire as a query calls it: the key in force (the platform key) and the asker's membership checked
    under the lock."""
    return ratelimit.acquire(**kwargs, key_saved_at=None, member_id=kwargs["row"]["user"].pk)


def _burst(
    orgs: list, clients: int, seconds: float, row: dict, *, limit: int = decision.HUGE, acquire=_decide
) -> tuple[int, int]:
    """Run `clients` threads for `seconds`; returns (decisions let through, decisions refused)."""
    allowed = [0] * clients
    refused = [0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(i: int) -> None:
        org = orgs[i % len(orgs)]
        try:
            ratelimit.peek(org=org, limit=limit, window_seconds=decision.WINDOW)  # connect before the start
            start.wait()
            while not stop.is_set():
                try:
                    acquire(org=org, limit=limit, window_seconds=decision.WINDOW, row=row)
                    allowed[i] += 1
                except ratelimit.RateLimited:
                    refused[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(allowed), sum(refused)


def run(bench: Bench, *, clients: list[int], rounds: int, seconds: float) -> dict:
    orgs = make_orgs("concurrency", SPREAD, member=bench.user)
    row = bench.row()
    watermark = db.last_query_id()
    org_ids = [org.pk for org in orgs]
    connection.close()  # the threads open their own

    def reset() -> None:
        db.reset_rows(org_ids=org_ids, above_id=watermark)
        connection.close()

    def rate(layout: list, n: int, acquire=_decide):
        def measure() -> float:
            started = time.perf_counter()
            allowed, _ = _burst(layout, n, seconds, row, acquire=acquire)
            return allowed / (time.perf_counter() - started)

        return measure

    # On SQLite the design did not change (the ORM path either way), so "before" runs on PostgreSQL only.
    before = connection.vendor == "postgresql"
    out: dict = {"decisions_per_second": {}, "spread_over_one": {}, "now_over_before": {}}
    for n in clients:
        variants = {"one": rate(orgs[:1], n), "spread": rate(orgs, n)}
        if before:
            variants |= {
                "one_before": rate(orgs[:1], n, legacy.acquire),
                "spread_before": rate(orgs, n, legacy.acquire),
            }
        results = stats.interleave(variants, rounds=rounds, between=reset)
        out["decisions_per_second"][str(n)] = {name: stats.summary(values) for name, values in results.items()}
        out["spread_over_one"][str(n)] = stats.summary(stats.ratios(results["spread"], results["one"]))
        if before:
            out["now_over_before"][str(n)] = {
                layout: stats.summary(stats.ratios(results[layout], results[f"{layout}_before"]))
                for layout in ("one", "spread")
            }

    # Exactness under the race, on a fresh organisation: 32 clients, limit 50.
    (exact_org,) = make_orgs("exactness", 1, member=bench.user)
    connection.close()
    allowed, refused = _burst([exact_org], 32, 1.0, row, limit=50)
    out["exactness"] = {"clients": 32, "limit": 50, "allowed": allowed, "refused": refused}
    out["seconds_per_run"] = seconds
    return out
