"""`make loadtest`: the app under a bounded load, then checked from its own database.

1. Recreates a dedicated PostgreSQL database (default opsion_loadtest) and migrates it.
2. Creates several organisations (half BYOM) with API tokens (setup_world.py).
3. Starts the fake Anthropic server (tests/fake_anthropic.py) and gunicorn with 4 workers.
4. Runs locust headless (default 50 users for 60 s) against the JSON API.
5. Checks: zero 5xx (locust's counts and gunicorn's access log), and no organisation has more
   accepted queries than its limit in any 60-minute span (a SQL window query over InsightQuery).
6. Writes the result into docs/reliability.md and exits non-zero if a check failed.

The limits are lowered for the run (INSIGHTS_PLATFORM_LIMIT / INSIGHTS_BYOM_LIMIT) so that every
organisation actually reaches its limit within the minute.
"""

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from cryptography.fernet import Fernet
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ARTIFACTS = BASE_DIR / "artifacts" / "loadtest"
DOC = BASE_DIR / "docs" / "reliability.md"
BEGIN, END = "<!-- loadtest:begin -->", "<!-- loadtest:end -->"
# A query may be answered or refused at the limit; every read must simply succeed.
EXPECTED = {"POST queries": ("200", "429")}

# Every organisation's accepted queries in the busiest closed 60-minute span ending at one of them.
WINDOW_SQL = """
SELECT o.slug,
       COUNT(*) AS accepted,
       MAX(w.in_span) AS busiest_span,
       COUNT(*) FILTER (WHERE w.outcome = 'answered') AS answered,
       COUNT(*) FILTER (WHERE w.outcome = 'failed') AS failed,
       COUNT(*) FILTER (WHERE w.outcome = 'pending') AS pending
FROM (
    SELECT organisation_id, outcome,
           COUNT(*) OVER (
               PARTITION BY organisation_id ORDER BY created_at
               RANGE BETWEEN make_interval(secs => %(window)s) PRECEDING AND CURRENT ROW
           ) AS in_span
    FROM insights_insightquery
) AS w
JOIN orgs_organisation AS o ON o.id = w.organisation_id
GROUP BY o.slug
ORDER BY o.slug
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], env: dict) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=BASE_DIR, env=env, check=True)  # noqa: S603 - our own fixed commands


def recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        sys.exit(f"refusing to recreate database {name!r}: give the load test its own database")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parts.path.lstrip("/"))))


def wait_healthy(base_url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args[0]} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"{base_url} did not become healthy in {seconds:.0f} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # gunicorn: graceful, lets in-flight requests finish
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def window_report(url: str, window: int) -> list[dict]:
    with psycopg.connect(url) as conn:
        cursor = conn.execute(WINDOW_SQL, {"window": window})
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def access_log_5xx(path: Path) -> tuple[int, int]:
    total = errors = 0
    for line in path.read_text().splitlines():
        status = line.split(" ", 1)[0]
        if status.isdigit():
            total += 1
            errors += status.startswith("5")
    return total, errors


def locust_totals(csv_prefix: Path) -> dict:
    stats = (csv_prefix.parent / f"{csv_prefix.name}_stats.csv").read_text().splitlines()
    header = stats[0].split(",")
    for line in stats[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("Name") == "Aggregated":
            return row
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/opsion_loadtest")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--platform-limit", type=int, default=15)
    parser.add_argument("--byom-limit", type=int, default=40)
    parser.add_argument("--keep-db", action="store_true", help="leave the database for inspection")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/reliability.md")
    options = parser.parse_args()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fake_port, app_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{app_port}"
    window = 3600
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME",)},
        "OPSION_READ_DOTENV": "0",
        "DEBUG": "0",
        "HTTPS": "0",
        "STATIC_MANIFEST": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": options.database_url,
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "ANTHROPIC_API_KEY": "sk-ant-api03-loadtest-platform-" + "0" * 40,
        "ANTHROPIC_TIMEOUT_SECONDS": "30",
        "INSIGHTS_PLATFORM_LIMIT": str(options.platform_limit),
        "INSIGHTS_BYOM_LIMIT": str(options.byom_limit),
        "INSIGHTS_WINDOW_SECONDS": str(window),
        "REDIS_URL": "",
        "LOG_LEVEL": "ERROR",  # every 429 is a django.request WARNING: thousands of lines
        "LOADTEST_WORLD": str(ARTIFACTS / "world.json"),
        "LOADTEST_RESULT": str(ARTIFACTS / "statuses.json"),
    }
    access_log = ARTIFACTS / "gunicorn-access.log"
    access_log.unlink(missing_ok=True)
    (ARTIFACTS / "statuses.json").unlink(missing_ok=True)

    recreate_database(options.database_url)
    fake = app = None
    try:
        run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env)
        run(
            [PYTHON, "scripts/loadtest/setup_world.py", "--orgs", str(options.orgs), "--out", env["LOADTEST_WORLD"]],
            env,
        )
        fake = subprocess.Popen(  # noqa: S603
            [PYTHON, "tests/fake_anthropic.py", "--port", str(fake_port), "--chunk-pause", "0.002"],
            cwd=BASE_DIR,
            env=env,
        )
        app = subprocess.Popen(  # noqa: S603
            [
                *(PYTHON, "-m", "gunicorn", "opsion.wsgi:application", "--bind", f"127.0.0.1:{app_port}"),
                *("--workers", str(options.workers), "--timeout", "60"),
                *("--access-logfile", str(access_log), "--access-logformat", "%(s)s %(m)s %(U)s %(M)sms"),
            ],
            cwd=BASE_DIR,
            env=env,
        )
        wait_healthy(base_url, app)
        started = datetime.now(UTC)
        locust = subprocess.run(  # noqa: S603
            [
                *(PYTHON, "-m", "locust", "-f", "scripts/loadtest/locustfile.py", "--headless"),
                *("--users", str(options.users), "--spawn-rate", str(options.spawn_rate)),
                *("--run-time", f"{options.duration}s", "--stop-timeout", "30", "--host", base_url),
                *("--csv", str(ARTIFACTS / "locust"), "--only-summary", "--loglevel", "WARNING"),
            ],
            cwd=BASE_DIR,
            env=env,
        )
    finally:
        stop(app)
        stop(fake)

    world = {org["slug"]: org for org in json.loads(Path(env["LOADTEST_WORLD"]).read_text())}
    statuses = json.loads((ARTIFACTS / "statuses.json").read_text())
    rows = window_report(options.database_url, window)
    served, server_errors = access_log_5xx(access_log)
    totals = locust_totals(ARTIFACTS / "locust")
    if not options.keep_db:
        drop_database(options.database_url)

    over_limit = [r["slug"] for r in rows if r["busiest_span"] > world[r["slug"]]["limit"]]
    locust_5xx = sum(n for counts in statuses.values() for what, n in counts.items() if what.split()[-1][0] == "5")
    unexpected = sum(
        n
        for counts in statuses.values()
        for what, n in counts.items()
        if what.rsplit(" ", 1)[1] not in EXPECTED.get(what.rsplit(" ", 1)[0], ("200",))
    )
    pending = sum(r["pending"] for r in rows)
    # Every 200 the clients saw is an answered row, and every answered row was a 200.
    mismatched = [r["slug"] for r in rows if statuses.get(r["slug"], {}).get("POST queries 200", 0) != r["answered"]]
    passed = not (over_limit or mismatched) and locust_5xx == server_errors == unexpected == pending == 0

    report = {
        "started": started,
        "options": options,
        "rows": rows,
        "world": world,
        "statuses": statuses,
        "served": served,
        "server_errors": server_errors,
        "locust_5xx": locust_5xx,
        "unexpected": unexpected,
        "totals": totals,
        "passed": passed,
        "over_limit": over_limit,
        "mismatched": mismatched,
        "locust_exit": locust.returncode,
    }
    text = render(report)
    print(text)
    if not options.no_doc:
        write_doc(text)
    return 0 if passed else 1


def render(r: dict) -> str:
    o = r["options"]
    t = r["totals"]
    lines = [
        f"Last run: {r['started']:%Y-%m-%d %H:%M} UTC, `make loadtest`: gunicorn with {o.workers} sync workers on "
        f"PostgreSQL, the fake Anthropic server, locust headless with {o.users} users for {o.duration} s across "
        f"{o.orgs} organisations (half BYOM). Limits lowered for the run: platform {o.platform_limit}, "
        f"BYOM {o.byom_limit} per rolling 60 minutes.",
        "",
        f"**Result: {'PASS' if r['passed'] else 'FAIL'}.** "
        f"{r['served']} requests served; 5xx in gunicorn's access log: {r['server_errors']}; "
        f"5xx seen by locust: {r['locust_5xx']}; other unexpected statuses: {r['unexpected']}. "
        f"Throughput {float(t.get('Requests/s') or 0):.0f} requests/s; median {t.get('50%', '?')} ms, "
        f"95th percentile {t.get('95%', '?')} ms, max {float(t.get('Max Response Time') or 0):.0f} ms. "
        f"Organisations over their limit: {', '.join(r['over_limit']) or 'none'}; "
        f"200s not matching answered rows: {', '.join(r['mismatched']) or 'none'}.",
        "",
        "| Organisation | Key | Limit | Accepted | Busiest 60-min span | Answered | Failed | Pending | 200s | 429s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in r["rows"]:
        org = r["world"][row["slug"]]
        counts = r["statuses"].get(row["slug"], {})
        lines.append(
            f"| {row['slug']} | {org['key_source']} | {org['limit']} | {row['accepted']} | {row['busiest_span']} "
            f"| {row['answered']} | {row['failed']} | {row['pending']} "
            f"| {counts.get('POST queries 200', 0)} | {counts.get('POST queries 429', 0)} |"
        )
    lines += [
        "",
        "Accepted = InsightQuery rows (a query counts once the limiter lets it through). Busiest span = the most "
        "accepted queries of one organisation in any closed 60-minute span, from a SQL window function "
        "(`COUNT(*) OVER (PARTITION BY organisation_id ORDER BY created_at RANGE BETWEEN 3600 s PRECEDING AND "
        "CURRENT ROW)`); it must never exceed the limit.",
    ]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# Reliability\n\n## Load test\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n## Load test\n\n{BEGIN}\n{END}\n"
    doc = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", doc, flags=re.S)
    DOC.write_text(doc)
    print(f"wrote {DOC.relative_to(BASE_DIR)}")


if __name__ == "__main__":
    sys.exit(main())
