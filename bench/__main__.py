"""`python -m bench`: run the suite on PostgreSQL and on SQLite, print the table, write the report.

Each database gets its own process (bench.suite), since Django's settings are fixed at start-up.
PostgreSQL is skipped, loudly, when the server cannot be reached.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import prose, report

ROOT = Path(__file__).resolve().parent.parent


def _postgres_reachable(url: str) -> str | None:
    """None when the server answers; else why not."""
    from bench.db import maintenance_url

    try:
        psycopg.connect(maintenance_url(url), connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/opsion_bench")
    parser.add_argument("--quick", action="store_true", help="a few seconds per section, for harness work")
    parser.add_argument("--only", default="", help="comma-separated sections (default: all)")
    parser.add_argument("--vendors", default="postgresql,sqlite")
    parser.add_argument("--out", default=None, help="default: docs/benchmarks.md (artifacts/ when --quick)")
    parser.add_argument("--from-json", default=None, help="re-render the report from saved raw results, no run")
    args = parser.parse_args()
    out = (
        Path(args.out) if args.out else ROOT / ("artifacts/benchmarks-quick.md" if args.quick else "docs/benchmarks.md")
    )

    results: dict = json.loads(Path(args.from_json).read_text()) if args.from_json else {}
    workdir = Path(tempfile.mkdtemp(prefix="opsion-bench-results-"))
    for vendor in [] if args.from_json else args.vendors.split(","):
        if vendor == "postgresql":
            why = _postgres_reachable(args.postgres_url)
            if why:
                print(f"!!!!!!!! PostgreSQL unreachable, its benchmarks are SKIPPED: {why} !!!!!!!!", file=sys.stderr)
                results["postgresql_skipped"] = why
                continue
        path = workdir / f"{vendor}.json"
        argv = [sys.executable, "-m", "bench.suite", "--vendor", vendor, "--out", str(path)]
        argv += ["--postgres-url", args.postgres_url] + (["--quick"] if args.quick else [])
        argv += ["--only", args.only] if args.only else []
        started = time.monotonic()
        subprocess.run(argv, cwd=ROOT, check=True)  # noqa: S603 - our own interpreter, fixed arguments
        results[vendor] = json.loads(path.read_text())
        results[vendor]["elapsed_seconds"] = round(time.monotonic() - started)
    shutil.rmtree(workdir, ignore_errors=True)

    print(report.terminal(results))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.markdown(results, prose=prose.TEXT))
    if args.from_json:
        print(f"Wrote {out} from {args.from_json}")
        return
    raw = ROOT / "artifacts" / (out.stem + ".json")  # every figure, for whoever wants more than the tables
    raw.parent.mkdir(exist_ok=True)
    raw.write_text(json.dumps(results, indent=1))
    print(f"Wrote {out} (raw results: {raw})")


if __name__ == "__main__":
    main()
