"""Section 1: the real insights endpoint against a baseline that only calls Anthropic, under gunicorn.

Both are served by the same gunicorn (bench.settings: production settings plus the bench-only
baseline URL), both call the same standalone fake Anthropic server (tests/fake_anthropic.py)
through the same SDK client, and both are loaded by the same closed-loop clients in this process
(threads; each request on a fresh connection, as gunicorn's sync workers close it anyway). The
variants alternate round by round. The rolling limit is raised out of reach (INSIGHTS_BYOM_LIMIT)
and the rows a round inserts are deleted after it, so every round sees the same window.

The real endpoint runs twice: with the settings' default persistent connections
(CONN_MAX_AGE=60) and with a new database connection per request (CONN_MAX_AGE=0), to show what
the default saves.

A second pair then runs against a fake that streams at a Claude-like pace (a pause between chunks),
under gunicorn as the README deploys it (gthread workers): what a user waits for, and how much of
it is Opsion's. It is information beside the strict comparison, not a substitute for it.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

from bench import db, stats
from bench.world import QUESTION, Bench

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"query": QUESTION}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# gunicorn's workers each load the app before answering: on a busy two-core machine four of them took ~26 s, so
# 30 s failed a run for nothing; a server that is truly stuck still fails the run, after this long.
STARTUP_SECONDS = 120


def _wait_until_up(port: int, path: str | None, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a benchmark server exited early:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            if path is None:
                conn.connect()
            else:
                conn.request("GET", path)
                if conn.getresponse().status != 200:
                    raise OSError("not ready")
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"a benchmark server did not answer {path or 'a connection'} in {STARTUP_SECONDS} s:\n{log.read_text()[-2000:]}"
    )


# gunicorn as the bench runs it: sync workers for the strict comparison (one request per process,
# nothing shared), and the README's production line for the paced one (an answer holds a thread).
SYNC = ["--worker-class=sync"]
PRODUCTION = ["--worker-class=gthread", "--threads=8"]


@dataclass(frozen=True)
class Config:
    """One gunicorn: its environment overrides, which fake it calls and how it serves."""

    env: dict[str, str] = field(default_factory=dict)
    fake: str = "instant"
    workers: int = 4
    serve: list[str] = field(default_factory=lambda: SYNC)


class Servers:
    """The fake Anthropic servers (name → seconds between streamed chunks) and one gunicorn per
    configuration; stopped by process id."""

    def __init__(self, fakes: dict[str, float], configs: dict[str, Config]) -> None:
        self.fakes = fakes
        self.configs = configs
        self.fake_ports: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.processes: list[subprocess.Popen] = []
        self.logs = Path(tempfile.mkdtemp(prefix="opsion-bench-logs-"))

    def _start(self, name: str, argv: list[str], env: dict, port: int, ready_path: str | None) -> None:
        log = self.logs / f"{name}.log"
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and gunicorn, fixed arguments
            argv, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        _wait_until_up(port, ready_path, process, log)

    def __enter__(self) -> "Servers":
        try:
            return self._start_all()
        except BaseException:  # one that never came up: stop those that did, or they outlive the run
            self.__exit__(*sys.exc_info())  # their logs kept, to say why
            raise

    def _start_all(self) -> "Servers":
        for name, chunk_pause in self.fakes.items():
            self.fake_ports[name] = port = _free_port()
            fake = [sys.executable, "tests/fake_anthropic.py", "--port", str(port), "--chunk-pause", str(chunk_pause)]
            self._start(f"fake-anthropic-{name}", fake, dict(os.environ), port, None)
        for name, config in self.configs.items():
            port = _free_port()
            env = dict(os.environ) | config.env
            env |= {
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self.fake_ports[config.fake]}",
                "INSIGHTS_BYOM_LIMIT": str(10**9),
            }
            gunicorn = [
                str(Path(sys.executable).parent / "gunicorn"),
                "opsion.wsgi:application",
                f"--bind=127.0.0.1:{port}",
                f"--workers={config.workers}",
                *config.serve,
                "--log-level=warning",
            ]
            self._start(f"gunicorn-{name}", gunicorn, env, port, "/healthz")
            self.ports[name] = port
        return self

    def meters(self) -> dict:
        """Cumulative CPU seconds of each party to a request: the app servers, the database server (when
        it is PostgreSQL on this machine; SQLite's work is inside the app), the fakes and the load
        generator (this process, whose other threads are idle meanwhile)."""
        apps = [p.pid for p in self.processes if "gunicorn" in " ".join(map(str, p.args))]
        fakes = [p.pid for p in self.processes if p.pid not in apps]
        meters = {
            "app": lambda: sum(_tree_cpu_seconds(pid) for pid in apps),
            "fake": lambda: sum(_tree_cpu_seconds(pid) for pid in fakes),
            "load": time.process_time,
        }
        postmaster = _postmaster_pid()
        if postmaster is not None:
            meters["database"] = lambda: _tree_cpu_seconds(postmaster)
        return meters

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if exc[0] is None:  # keep the servers' logs only when something went wrong
            shutil.rmtree(self.logs, ignore_errors=True)


_TICKS = os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants, alive or already reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # exited, or no /proc: counted by its parent once reaped
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    own_and_reaped = sum(int(x) for x in fields[11:15]) / _TICKS  # utime stime cutime cstime
    return own_and_reaped + sum(_tree_cpu_seconds(int(child)) for child in children)


def _postmaster_pid() -> int | None:
    """The PostgreSQL server's parent process, when it runs on this machine (its backends are children)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    try:
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:  # a server elsewhere: its CPU is not ours to read
        return None


def _load(
    port: int, path: str, headers: dict, clients: int, seconds: float, meters: dict | None = None, stagger: float = 0
) -> dict:
    """Closed-loop load: `clients` threads each sending one request after another for `seconds`.

    `meters` (name → cumulative CPU seconds) are read before and after, giving CPU per request by process.
    `stagger` spreads the clients' first requests evenly over that many seconds: with answers that all
    take the same time, clients starting together would stay in lockstep, arriving in waves.
    """
    meters = meters or {}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = threading.Event()
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        start.wait()
        stop.wait(stagger * i / clients)
        while not stop.is_set():
            began = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", path, body=BODY, headers=headers)
                response = conn.getresponse()
                response.read()
                conn.close()
                ok = response.status == 200
            except OSError:
                ok = False
            if ok:
                latencies[i].append(time.perf_counter() - began)
            else:
                errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    cpu_before = {name: meter() for name, meter in meters.items()}
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = {name: meter() - cpu_before[name] for name, meter in meters.items()}
    done = [x for per_client in latencies for x in per_client]
    return {
        "rps": len(done) / elapsed,
        "p50": stats.quantile(done, 0.5),
        "p99": stats.quantile(done, 0.99),
        "errors": sum(errors),
        "cpu_ms_per_request": {name: 1000 * used / max(1, len(done)) for name, used in cpu.items()},
    }


def _sdk_client_seconds(rounds: int, calls: int = 10) -> dict:
    """What building the SDK client costs: a whole client (own connection pool, CA bundle) against
    the light per-call client over the shared pool that claude.stream_answer builds."""
    import anthropic  # measured here only; the app talks to the SDK through insights.claude alone

    from insights import claude

    def whole() -> None:
        anthropic.Anthropic(api_key="sk-ant-bench", base_url="http://127.0.0.1:9", max_retries=0).close()

    def per_call() -> None:
        anthropic.Anthropic(
            api_key="sk-ant-bench", base_url="http://127.0.0.1:9", max_retries=0, http_client=claude._http_client()
        )

    whole(), per_call()
    timed = stats.interleave(
        {"whole": stats.per_call(whole, calls), "per_call": stats.per_call(per_call, calls)}, rounds=rounds
    )
    return {name: stats.summary(values) for name, values in timed.items()}


def _statements(bench: Bench, path: str, fake_port: int) -> list[str]:
    """The SQL statements one real request runs, captured in this process with Django's test client."""
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME="127.0.0.1", headers={"Authorization": f"Bearer {bench.token}"})
    with override_settings(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{fake_port}", INSIGHTS_BYOM_LIMIT=10**9):
        client.post(path, BODY, content_type="application/json")  # the token's last-used time, once a minute
        with CaptureQueriesContext(connection) as captured:
            response = client.post(path, BODY, content_type="application/json")
    assert response.status_code == 200, response.content  # a broken setup must stop the bench
    return [" ".join(q["sql"].split())[:110] for q in captured.captured_queries]


def _compare(
    targets: dict[str, tuple],
    *,
    clients: int,
    seconds: float,
    rounds: int,
    reset,
    meters: dict | None = None,
    stagger: float = 0,
) -> dict:
    """Load each target with closed-loop clients, alternating round by round; every figure against
    the first target's (the baseline's)."""
    runs: dict[str, list[dict]] = {}

    def variant(name: str):
        port, path, headers = targets[name]

        def measure() -> float:
            result = _load(port, path, headers, clients, seconds, meters, stagger)
            runs.setdefault(name, []).append(result)
            return result["rps"]

        return measure

    for port, path, headers in targets.values():  # warm every worker: imports, connections
        _load(port, path, headers, clients, max(1.0, seconds / 2), stagger=stagger)
    reset()
    rps = stats.interleave({name: variant(name) for name in targets}, rounds=rounds, between=reset)
    base = next(iter(targets))
    others = [name for name in rps if name != base]
    p50 = {name: [r["p50"] for r in runs[name]] for name in runs}
    return {
        "clients": clients,
        "seconds_per_run": seconds,
        "rps": {name: stats.summary(values) for name, values in rps.items()},
        "p50": {name: stats.summary(values) for name, values in p50.items()},
        "p99": {name: stats.summary([r["p99"] for r in runs[name]]) for name in runs},
        "errors": {name: sum(r["errors"] for r in runs[name]) for name in runs},
        "cpu_ms_per_request": {
            name: {part: stats.summary([r["cpu_ms_per_request"][part] for r in runs[name]]) for part in meters or {}}
            for name in runs
        },
        # Machine time per request beyond the baseline's: 1/throughput is what one request costs the
        # whole (shared) machine, so the difference is Opsion's own work, whatever the bottleneck.
        "extra_ms_per_request": {
            name: stats.summary([1000 / r - 1000 / b for r, b in zip(rps[name], rps[base], strict=True)])
            for name in others
        },
        "throughput_ratio": {name: stats.summary(stats.ratios(rps[name], rps[base])) for name in others},
        # What a user waits beyond the baseline, request by request (same round, median against median).
        "p50_over_baseline": {
            name: stats.summary([a - b for a, b in zip(p50[name], p50[base], strict=True)]) for name in others
        },
    }


def run(bench: Bench, *, rounds: int, seconds: float, clients: int, workers: int, paced: dict) -> dict:
    """`paced`: chunk_pause, stagger (s), clients, seconds and rounds for the Claude-like comparison."""
    configs = {"default": Config(workers=workers)}
    configs["per_request"] = Config(env={"CONN_MAX_AGE": "0"}, workers=workers)
    configs["paced"] = Config(fake="paced", serve=PRODUCTION)
    real_path = f"/api/v1/orgs/{bench.api_org.slug}/insights/queries"
    auth = {"Authorization": f"Bearer {bench.token}", "Content-Type": "application/json"}
    plain = {"Content-Type": "application/json"}
    watermark = db.last_query_id()

    def reset() -> None:
        db.reset_rows(org_ids=[bench.api_org.pk], above_id=watermark)
        connection.close()

    connection.close()
    with Servers({"instant": 0.0, "paced": paced["chunk_pause"]}, configs) as servers:
        statements = _statements(bench, real_path, servers.fake_ports["instant"])
        reset()
        strict = {
            "baseline": (servers.ports["default"], "/bench/baseline", plain),
            "real": (servers.ports["default"], real_path, auth),
        }
        strict["real_connection_per_request"] = (servers.ports["per_request"], real_path, auth)
        out = _compare(strict, clients=clients, seconds=seconds, rounds=rounds, reset=reset, meters=servers.meters())
        like_claude = {
            "baseline": (servers.ports["paced"], "/bench/baseline", plain),
            "real": (servers.ports["paced"], real_path, auth),
        }
        out["paced"] = _compare(
            like_claude,
            clients=paced["clients"],
            seconds=paced["seconds"],
            rounds=paced["rounds"],
            reset=reset,
            stagger=paced["stagger"],
        )
    out["workers"] = workers
    out["paced"] |= {
        "chunk_pause": paced["chunk_pause"],
        "stagger": paced["stagger"],
        "serve": f"{configs['paced'].workers} workers, " + " ".join(PRODUCTION),
    }
    out["sdk_client_construction_seconds"] = _sdk_client_seconds(rounds)
    out["statements_per_request"] = statements
    return out
