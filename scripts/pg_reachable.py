"""Exit 0 when the PostgreSQL server in argv[1] (a DATABASE_URL) accepts a connection."""

import sys

import psycopg

try:
    psycopg.connect(sys.argv[1], connect_timeout=3).close()
except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
    print(f"PostgreSQL unreachable: {type(exc).__name__}", file=sys.stderr)
    sys.exit(1)
