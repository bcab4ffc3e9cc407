"""Turn the per-database results into docs/benchmarks.md and the table `make bench` prints."""

from datetime import UTC, datetime

VENDORS = (("postgresql", "PostgreSQL"), ("sqlite", "SQLite"))


def _time(s: dict | None) -> str:
    if not s:
        return "—"

    def one(x: float) -> str:
        if abs(x) >= 1:
            return f"{x:.2f} s"
        if abs(x) >= 1e-3:
            return f"{x * 1e3:.2f} ms"
        return f"{x * 1e6:.1f} µs"

    return f"{one(s['median'])} ({one(s['q1'])}–{one(s['q3'])})"


def _ratio(s: dict | None) -> str:
    if not s:
        return "—"
    return f"{s['median']:.2f}× ({s['q1']:.2f}–{s['q3']:.2f})"


def _rate(s: dict | None, unit: str) -> str:
    if not s:
        return "—"
    return f"{s['median']:,.0f} {unit} ({s['q1']:,.0f}–{s['q3']:,.0f})"


def _verdict(s: dict | None, *, at_most: float | None = None, at_least: float | None = None) -> str:
    if not s:
        return ""
    ok = (at_most is None or s["median"] <= at_most) and (at_least is None or s["median"] >= at_least)
    return " ✅" if ok else " ❌"


def _get(results: dict, vendor: str, *path):
    node = results.get(vendor)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def headline(results: dict) -> list[str]:
    rows = []

    def row(label: str, target: str, fmt, *path, **verdict) -> None:
        cells = [label]
        for vendor, _ in VENDORS:
            value = _get(results, vendor, *path)
            cells.append(fmt(value) + (_verdict(value, **verdict) if verdict else "") if value else "—")
        rows.append([*cells, target])

    row(
        "1. Real endpoint / baseline, throughput",
        "≥ 0.80",
        _ratio,
        "pipeline",
        "throughput_ratio",
        "real",
        at_least=0.8,
    )
    row(
        "1. … with a DB connection per request (CONN_MAX_AGE=0)",
        "",
        _ratio,
        "pipeline",
        "throughput_ratio",
        "real_connection_per_request",
    )
    row(
        "1. … at a Claude-like pace (answers take about 1 s): p50 over baseline",
        "",
        _time,
        "pipeline",
        "paced",
        "p50_over_baseline",
        "real",
    )
    row("2. Decision / INSERT floor", "≤ 3×", _ratio, "decision", "ratio_to_floor", "acquire", at_most=3)
    row("2. … without the commit flush", "≤ 3×", _ratio, "decision", "ratio_to_floor_no_flush", "acquire", at_most=3)
    row("2. Before (5 round trips) / floor", "", _ratio, "decision", "ratio_to_floor", "acquire_before")
    row("2. … without the commit flush", "", _ratio, "decision", "ratio_to_floor_no_flush", "acquire_before")
    row("2. django-ratelimit on Redis / floor", "", _ratio, "decision", "ratio_to_floor", "django_ratelimit_redis")
    row("3. Decision with 1 M / 1 k history rows", "≤ 1.5×", _ratio, "history", "largest_over_smallest", at_most=1.5)
    row("3. … without the commit flush", "≤ 1.5×", _ratio, "history", "largest_over_smallest_no_flush", at_most=1.5)
    row(
        "4. 32 clients: 32 orgs / 1 org, decisions/s",
        "> 1 (PostgreSQL)",
        _ratio,
        "concurrency",
        "spread_over_one",
        "32",
    )
    row("5. Fernet decrypt, per call", "", _time, "encryption", "seconds_per_call", "decrypt")
    row("5. rotate_encryption_keys, per 10 k rows", "", _time, "encryption", "rotation_seconds_per_10k")
    return _table(["Measure: median (IQR)", "PostgreSQL", "SQLite", "Target"], rows)


def pipeline(results: dict) -> list[str]:
    names = {
        "baseline": "Baseline: SDK call only",
        "real": "Real endpoint",
        "real_connection_per_request": "Real endpoint, CONN_MAX_AGE=0",
    }
    lines = []
    for vendor, title in VENDORS:
        data = results.get(vendor, {}).get("pipeline")
        if not data:
            continue
        lines.append(
            f"**{title}** — {data['workers']} gunicorn sync workers, {data['clients']} closed-loop clients, "
            f"{data['seconds_per_run']} s per run"
        )
        lines.append("")
        rows = []
        for key, label in names.items():
            if key not in data["rps"]:
                continue
            ratio = data["throughput_ratio"].get(key)
            extra = data["extra_ms_per_request"].get(key)
            rows.append(
                [
                    label,
                    _rate(data["rps"][key], "req/s"),
                    _time(data["p50"][key]),
                    _time(data["p99"][key]),
                    _ratio(ratio) if ratio else "1",
                    _time({k: v / 1000 if k != "n" else v for k, v in extra.items()}) if extra else "—",
                    str(data["errors"][key]),
                ]
            )
        header = ["Variant", "Throughput", "p50", "p99", "Throughput / baseline", "Machine time over baseline"]
        lines += _table([*header, "Errors"], rows)
        lines += _cpu_by_process(data, names)
        sdk = data["sdk_client_construction_seconds"]
        lines.append(
            f"Building the SDK client: a whole client with its own connection pool "
            f"{_time(sdk['whole'])}; the per-call client over the shared pool, which `claude.stream_answer` "
            f"builds, {_time(sdk['per_call'])}."
        )
        lines.append("")
        lines += _paced(data["paced"])
        lines.append(f"The {len(data['statements_per_request'])} SQL statements of one real request:")
        lines.append("")
        lines += [f"{i}. `{sql}`" for i, sql in enumerate(data["statements_per_request"], 1)]
        lines.append("")
    return lines


CPU_PARTS = {
    "app": "App (gunicorn)",
    "database": "PostgreSQL server",
    "fake": "Fake Anthropic",
    "load": "Load generator",
}


def _cpu_by_process(data: dict, names: dict[str, str]) -> list[str]:
    """Where each request's machine time goes: CPU per request, by process, median over rounds."""
    cpu = data.get("cpu_ms_per_request") or {}
    parts = [part for part in CPU_PARTS if part in cpu.get("baseline", {})]
    if not parts:
        return []

    def ms(x: float) -> str:
        return f"{x:.2f} ms"

    medians = {name: {part: cpu[name][part]["median"] for part in parts} for name in names if name in cpu}
    rows = [
        [label, *(ms(medians[key][part]) for part in parts), ms(sum(medians[key].values()))]
        for key, label in names.items()
        if key in medians
    ]
    extra = {part: medians["real"][part] - medians["baseline"][part] for part in parts}
    rows.append(
        [
            "**Real − baseline: Opsion's own work**",
            *(f"**{ms(extra[p])}**" for p in parts),
            f"**{ms(sum(extra.values()))}**",
        ]
    )
    header = ["CPU per request, by process (medians)", *(CPU_PARTS[part] for part in parts), "All"]
    return _table(header, rows)


def _paced(data: dict) -> list[str]:
    lines = [
        f"At a Claude-like pace — the fake pausing {data['chunk_pause']} s between chunks; gunicorn "
        f"{data['serve']}; {data['clients']} closed-loop clients, their first requests spread over "
        f"{data['stagger']} s; {data['seconds_per_run']} s per run:",
        "",
    ]
    rows = [
        [
            label,
            _rate(data["rps"][key], "req/s"),
            _time(data["p50"][key]),
            _time(data["p99"][key]),
            _ratio(data["throughput_ratio"][key]) if key != "baseline" else "1",
            _time(data["p50_over_baseline"][key]) if key != "baseline" else "—",
            str(data["errors"][key]),
        ]
        for key, label in (("baseline", "Baseline: SDK call only"), ("real", "Real endpoint"))
    ]
    header = ["Variant", "Throughput", "p50", "p99", "Throughput / baseline", "p50 over baseline", "Errors"]
    return lines + _table(header, rows)


def decision(results: dict) -> list[str]:
    names = {
        "floor": "Floor: one single-row INSERT (ORM `create`, autocommit)",
        "acquire": "`ratelimit.acquire` now",
        "acquire_before": "`ratelimit.acquire` before (ORM: BEGIN, lock, count, insert, COMMIT)",
        "django_ratelimit_redis": "django-ratelimit, Redis, fixed window",
    }
    lines = []
    for vendor, title in VENDORS:
        data = results.get(vendor, {}).get("decision")
        if not data:
            continue
        per, to_floor, to_floor_nf = data["seconds_per_call"], data["ratio_to_floor"], data["ratio_to_floor_no_flush"]
        rows = []
        for key, label in names.items():
            if key not in per:
                continue
            rows.append(
                [
                    label,
                    _time(per[key]),
                    _ratio(to_floor.get(key)) if key != "floor" else "1",
                    _time(per.get(f"{key}_no_flush")),
                    (_ratio(to_floor_nf.get(key)) if key != "floor" else "1") if f"{key}_no_flush" in per else "—",
                ]
            )
        lines.append(f"**{title}** — {data['calls_per_round']} calls per variant per round")
        lines.append("")
        lines += _table(["Variant", "Per decision", "/ floor", "Per decision, no flush", "/ floor, no flush"], rows)
        over = data["over_floor_seconds"]
        lines.append(
            f"Now / before, side by side: {_ratio(data['after_over_before'])} durable, "
            f"{_ratio(data['after_over_before_no_flush'])} without the flush. Time over the floor (the "
            f"insert is paid anyway): now {_time(over['acquire'])}, before {_time(over['acquire_before'])}."
        )
        lines.append("")
    return lines


def history(results: dict) -> list[str]:
    lines = []
    for vendor, title in VENDORS:
        data = results.get(vendor, {}).get("history")
        if not data:
            continue
        lines.append(
            f"**{title}** — {data['rows_loaded']:,} rows loaded in {data['load_seconds']} s; "
            f"{data['in_window']} rows in the window for each measured organisation "
            f"(counted for the largest: {data['counted_in_window_for_largest']})."
        )
        lines.append("")
        rows = [
            [label, _time(data["seconds_per_call"][label]), _time(data["seconds_per_call"][f"{label}_no_flush"])]
            for label in data["labels"]
        ]
        rows.append(
            [
                f"{data['labels'][-1]} / {data['labels'][0]}",
                _ratio(data["largest_over_smallest"]),
                _ratio(data["largest_over_smallest_no_flush"]),
            ]
        )
        lines += _table(["History rows for the organisation", "Per decision", "Per decision, no flush"], rows)
        lines += [f"The window count for the {data['labels'][-1]} organisation, now (`COUNT(*)`):", ""]
        lines += ["```", data["plan"], "```", ""]
        lines += ["Before (`COUNT(id)`):", "", "```", data["plan_before"], "```", ""]
    return lines


def concurrency(results: dict) -> list[str]:
    lines = []
    for vendor, title in VENDORS:
        data = results.get(vendor, {}).get("concurrency")
        if not data:
            continue
        rows = []
        before = bool(data.get("now_over_before"))
        for n, per in data["decisions_per_second"].items():
            cells = [n, _rate(per["one"], "/s"), _rate(per["spread"], "/s"), _ratio(data["spread_over_one"][n])]
            if before:
                cells += [
                    _rate(per["one_before"], "/s"),
                    _rate(per["spread_before"], "/s"),
                    _ratio(data["now_over_before"][n]["one"]),
                    _ratio(data["now_over_before"][n]["spread"]),
                ]
            rows.append(cells)
        lines.append(f"**{title}** — {data['seconds_per_run']} s per run")
        lines.append("")
        header = ["Clients", "One organisation", "Spread over 32", "Spread / one"]
        if before:
            header += ["One org, before", "Spread, before", "Now / before, one", "Now / before, spread"]
        lines += _table(header, rows)
        exact = data["exactness"]
        lines.append(
            f"Exactness under the race: {exact['clients']} clients on one organisation with a limit of "
            f"{exact['limit']}: {exact['allowed']} let through, {exact['refused']} refused."
        )
        lines.append("")
    return lines


def encryption(results: dict) -> list[str]:
    labels = {
        "encrypt": "Encrypt (`crypto.encrypt`)",
        "decrypt": "Decrypt, current key",
        "decrypt_old_key": "Decrypt, second key in the list (before rotation)",
    }
    rows = []
    for key, label in labels.items():
        rows.append([label, *(_time(_get(results, v, "encryption", "seconds_per_call", key)) for v, _ in VENDORS)])
    rows.append(
        [
            "`rotate_encryption_keys`, per 10 k rows",
            *(_time(_get(results, v, "encryption", "rotation_seconds_per_10k")) for v, _ in VENDORS),
        ]
    )
    lines = _table(["Operation", "PostgreSQL", "SQLite"], rows)
    for vendor, title in VENDORS:
        data = _get(results, vendor, "encryption")
        if data:
            lines.append(
                f"{title}: {data['rotation_rows']:,} rows per rotation; last run said “{data['rotation_output']}”"
            )
            lines.append("")
    return lines


def context(results: dict) -> list[str]:
    lines = []
    for vendor, title in VENDORS:
        data = results.get(vendor)
        if data is None:
            lines.append(f"- {title}: **not measured** ({results.get(f'{vendor}_skipped', 'unavailable')}).")
            continue
        load = data.get("load_average", {})
        lines.append(
            f"- {title}: {data['database']}, Python {data['python']}, {data['cpus']} CPUs; load average "
            f"{load.get('start', '?')} at the start of its run, {load.get('end', '?')} at the end; "
            f"{data.get('elapsed_seconds', '?')} s."
        )
    return lines + [""]


def markdown(results: dict, *, prose: dict[str, str]) -> str:
    runs = [results[v]["measured_at"] for v, _ in VENDORS if results.get(v, {}).get("measured_at")]
    when = runs[0] if runs else datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    quick = any(results.get(v, {}).get("quick") for v, _ in VENDORS)
    parts = [
        "# Benchmarks: the insights pipeline and the rolling limiter",
        "",
        f"Generated by `make bench` on {when}{' (QUICK run: sizes shrunk, figures not meaningful)' if quick else ''}. "
        "Regenerate with `make bench`; this file is overwritten.",
        "",
        prose["intro"],
        "",
        *context(results),
        "## Headline",
        "",
        *headline(results),
        prose["headline"],
        "",
        "## 1. Pipeline overhead",
        "",
        prose["pipeline"],
        "",
        *pipeline(results),
        "## 2. Limiter decision cost",
        "",
        prose["decision"],
        "",
        *decision(results),
        "## 3. Flat in history size",
        "",
        prose["history"],
        "",
        *history(results),
        "## 4. Concurrency",
        "",
        prose["concurrency"],
        "",
        *concurrency(results),
        "## 5. Encryption",
        "",
        prose["encryption"],
        "",
        *encryption(results),
        "## The limiter's design, before and after",
        "",
        prose["design"],
        "",
        "## Admin's query log filters on a large log",
        "",
        prose["admin_log"],
        "",
        "## Method",
        "",
        prose["method"],
        "",
    ]
    return "\n".join(parts)


def terminal(results: dict) -> str:
    """What `make bench` prints: the headline table and the per-section tables."""
    return "\n".join(
        [
            "",
            *headline(results),
            *pipeline(results),
            *decision(results),
            *concurrency(results),
            *encryption(results),
        ]
    )
