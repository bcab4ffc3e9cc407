"""The second OS process of the race tests: fires AI Insights queries at the same database.

    python -m tests.insights.race_worker <membership id> <attempts> [<Idempotency-Key>]

It connects one thread per attempt, prints `ready`, waits for a line on stdin, fires every attempt at
once and prints a JSON list of outcomes. The database comes from DATABASE_URL, like any app server.
"""

import json
import os
import sys
import threading


def attempt(membership, idempotency_key: str | None = None) -> str:
    """One query as an app server runs it: count it, then ask Claude. Returns ok, limited, asked before (its
    Idempotency-Key holds a query: the API's replay or 409) or the error."""
    from insights import services
    from insights.ratelimit import RateLimited

    try:
        pending = services.start(
            membership=membership, text="What does MiCAR Article 36 require?", idempotency_key=idempotency_key
        )
    except RateLimited:
        return "limited"
    except services.AlreadyAsked:
        return "asked before"
    except Exception as exc:  # reported, so the test shows e.g. "database is locked"
        return f"error in start: {type(exc).__name__}: {exc}"
    try:
        pending.answer()
    except Exception as exc:
        return f"error in answer: {type(exc).__name__}: {exc}"
    return "ok"


def load_membership(membership_id: int):
    from orgs.models import Membership

    return Membership.objects.select_related("organisation", "user").get(pk=membership_id)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsion.settings")
    import django

    django.setup()
    from django.db import connection

    membership_id, attempts = int(sys.argv[1]), int(sys.argv[2])
    idempotency_key = sys.argv[3] if len(sys.argv) > 3 else None
    ready = threading.Barrier(attempts + 1, timeout=120)
    go = threading.Event()
    results: list[str] = []

    def fire() -> None:
        try:
            membership = load_membership(membership_id)  # opens this thread's connection
            ready.wait()
            go.wait(120)
            results.append(attempt(membership, idempotency_key))
        except Exception as exc:
            results.append(f"error in worker: {type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    ready.wait()
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    for thread in threads:
        thread.join(120)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
