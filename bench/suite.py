"""Run every benchmark section against one database and write the results as JSON.

    python -m bench.suite --vendor postgresql --out results.json [--quick] [--only decision,history]

The database is created (PostgreSQL: dropped and re-created; SQLite: a temporary file) and migrated
first. `--quick` shrinks every section to a few seconds, for working on the harness itself.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime

SECTIONS = ("pipeline", "decision", "history", "concurrency", "encryption")

# Full run: sized to keep `make bench` (both databases) under about ten minutes on two cores.
FULL = {
    "pipeline": {
        "rounds": 5,
        "seconds": 3.0,
        "clients": 4,
        "workers": 4,
        # Answers streamed over about a second (ten chunks): still quicker than Claude's. The clients'
        # first requests are spread over that second, as users' are, so they do not arrive in waves.
        "paced": {"chunk_pause": 0.1, "stagger": 1.0, "clients": 32, "seconds": 6.0, "rounds": 3},
    },
    "decision": {"rounds": 9, "calls": 200},
    "history": {"sizes": (1_000, 100_000, 1_000_000), "others": 300_000, "rounds": 7, "calls": 100},
    "concurrency": {"clients": (1, 8, 32), "rounds": 3, "seconds": 1.5},
    "encryption": {"rounds": 7, "calls": 2000, "rows": 10_000, "rotations": 3},
}
# SQLite's decisions serialise on one write lock and its checkpoints sync the disk: fewer calls keep the run short.
SQLITE = {"decision": {"calls": 100}, "history": {"calls": 50}}
QUICK = {
    "pipeline": {
        "rounds": 2,
        "seconds": 1.0,
        "clients": 4,
        "workers": 2,
        "paced": {"chunk_pause": 0.05, "stagger": 0.5, "clients": 16, "seconds": 2.0, "rounds": 1},
    },
    "decision": {"rounds": 3, "calls": 50},
    "history": {"sizes": (1_000, 10_000, 50_000), "others": 10_000, "rounds": 3, "calls": 30},
    "concurrency": {"clients": (1, 8), "rounds": 1, "seconds": 0.5},
    "encryption": {"rounds": 3, "calls": 200, "rows": 500, "rotations": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vendor", choices=("postgresql", "sqlite"), required=True)
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/opsion_bench")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS))
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.vendor == "sqlite" and not args.quick:
        sizes = {name: values | SQLITE.get(name, {}) for name, values in sizes.items()}
    only = [s for s in args.only.split(",") if s]

    from bench import db

    os.environ["DATABASE_URL"] = db.prepare(args.vendor, args.postgres_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    db.migrate()

    from django.db import connection

    from bench import world

    bench = world.build()
    results: dict = {
        "vendor": args.vendor,
        "database": _database_version(connection),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": {"start": _load_average()},
        "sizes": {k: {n: list(v) if isinstance(v, tuple) else v for n, v in sizes[k].items()} for k in only},
    }
    for section in SECTIONS:
        if section not in only:
            continue
        print(f"[{args.vendor}] {section} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        module = __import__(f"bench.{section}", fromlist=["run"])
        results[section] = module.run(bench, **sizes[section])
        results[section]["elapsed_seconds"] = round(time.monotonic() - started, 1)
        print(f"[{args.vendor}] {section} done in {results[section]['elapsed_seconds']} s", file=sys.stderr, flush=True)
    results["load_average"]["end"] = _load_average()
    connection.close()
    if args.vendor == "sqlite":  # a temporary file of a few hundred MB after a full run
        shutil.rmtree(os.path.dirname(connection.settings_dict["NAME"]), ignore_errors=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1, default=str)


def _load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def _database_version(connection) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return "PostgreSQL " + cursor.fetchone()[0]
        cursor.execute("SELECT sqlite_version()")
        return "SQLite " + cursor.fetchone()[0]


if __name__ == "__main__":
    main()
