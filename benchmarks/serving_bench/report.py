"""The printed report: the machine, then a table or a paragraph per measurement, then the targets.

``print_report`` prints a finished results dict (as written to the JSON file) section by section;
``machine_info`` is the machine's part of it, taken at the start of the run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from serving_bench.settings import CLIENT_CPU, HIST_GB, SERVER_CPU


def machine_info() -> dict[str, Any]:
    packages = [
        "fastapi", "uvicorn", "onnxruntime", "scikit-learn", "mlflow", "starlette", "httptools",
        "uvloop", "msgspec", "orjson", "prometheus-client", "sqlalchemy",
    ]  # fmt: skip
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0].strip() if wrk.stdout + wrk.stderr else "",
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "packages": versions,
    }


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_machine(results: dict[str, Any]) -> None:
    """The machine, the package versions, the pinning, the profile and the models."""
    machine = results["machine"]
    print("\n== machine")
    print(
        f"cores {machine['cores']} ({machine['cpu_model']}), kernel {machine['kernel']}, "
        f"python {machine['python']}, {machine['wrk']}"
    )
    print("packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()))
    print(
        f"server pinned to CPU {SERVER_CPU}, load generators to CPU {CLIENT_CPU}; "
        f"machine busy before start: {results['idle_check_pct']}% of one core; "
        f"profile: {'quick' if results['quick'] else 'full'} {results['profile']}"
    )
    prepared = results["prepared"]
    print(
        f"models: champion = {prepared['candidates']['champion']}, "
        f"{HIST_GB} = {prepared['candidates'][HIST_GB]}; wine red first row; "
        f"MLflow serves the registered native scikit-learn models"
    )


def print_throughput(results: dict[str, Any]) -> None:
    """Single-row throughput per contender: the median round, its spread and Little's law."""
    profile = results["profile"]
    print(
        f"\n== single-row throughput: wrk -t1 -c64, {profile['rounds']} interleaved round(s) of "
        f"{profile['round_s']} s per contender; the median round"
    )
    header = (
        f"{'contender':<22}{'req/s':>8}{'spread%':>8}{'mean ms':>9}{'64/rps ms':>10}{'mean/L':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>7}{'srv CPU%':>9}{'foreign%':>9}"
    )
    print(header)
    for name, entry in results["contenders"].items():
        t = entry.get("throughput")
        if not t:
            continue
        errors = t["socket_errors"] + t["status"]
        print(
            f"{name:<22}{t['rps']:>8.0f}{fmt(t['spread_pct'], 1):>8}{t['mean_us'] / 1000:>9.2f}"
            f"{fmt(t.get('little_ms')):>10}{fmt(t.get('little_ratio')):>7}"
            f"{t['p50_us'] / 1000:>8.2f}{t['p99_us'] / 1000:>8.2f}{t['max_us'] / 1000:>8.1f}"
            f"{errors:>7}{t['cpu']['server_cpu_pct']:>9.0f}{t['cpu']['foreign_cpu_pct']:>9.1f}"
        )
    print(
        "(spread: (max - min) / median of the rounds' req/s; mean/L: wrk's mean latency over\n"
        " Little's law 64/(req/s), 1.00 = consistent; -off: metrics and prediction log disabled)"
    )


def print_kept(results: dict[str, Any]) -> None:
    """The kept throughput's head-to-head runs per model, and their median."""
    profile = results["profile"]
    kept_results = results.get("kept", {})
    for which in ("champion", HIST_GB):
        kept = kept_results.get(which)
        if not kept:
            continue
        print(
            f"\n== kept throughput [{which}]: metrics+log on and off loaded at once on CPU 0, "
            f"{len(kept['runs'])} runs of {profile['kept_s']} s (scheduler autogroups: "
            f"{kept_results.get('autogroup')})"
        )
        print(
            f"{'run':>4}{'on req':>9}{'off req':>9}{'on/off':>8}{'on CPU s':>10}{'off CPU s':>11}"
            f"{'on us/req':>11}{'off us/req':>12}{'per CPU':>9}{'client%':>9}{'errors':>8}"
        )
        for index, x in enumerate(kept["runs"], 1):
            print(
                f"{index:>4}{x['on_requests']:>9}{x['off_requests']:>9}{fmt(x['ratio'], 3):>8}"
                f"{x['on_cpu_s']:>10.2f}{x['off_cpu_s']:>11.2f}{fmt(x['on_cpu_us'], 1):>11}"
                f"{fmt(x['off_cpu_us'], 1):>12}{fmt(x['cpu_ratio'], 3):>9}"
                f"{x['client_core_busy_pct']:>9.0f}{x['on_errors'] + x['off_errors']:>8}"
            )
        print(
            f"median requests per server CPU second, on/off: {fmt(kept['median'], 3)} "
            f"(runs {fmt(kept['min'], 3)}-{fmt(kept['max'], 3)})"
        )


def print_latency(results: dict[str, Any]) -> None:
    """Latency at 1 connection (wrk, in rounds) and 64 (latency_client.py)."""
    print("\n== latency (ms)")
    print(
        f"{'contender':<24}{'c1 p50':>8}{'c1 p90':>8}{'c1 p99':>8}{'c1 max':>8}"
        f"{'c64 p50':>9}{'c64 p90':>9}{'c64 p99':>9}{'c64 p99.9':>10}{'c64 max':>9}"
        f"{'c64 req/s':>10}{'non-2xx':>8}{'1st max':>9}{'steady max':>11}{'foreign%':>9}"
    )
    for name, entry in results["contenders"].items():
        u = entry.get("unloaded")
        t = entry.get("tails64")
        if not u:
            continue
        line = (
            f"{name:<24}{u['p50_us'] / 1000:>8.3f}{u['p90_us'] / 1000:>8.3f}"
            f"{u['p99_us'] / 1000:>8.3f}{u['max_us'] / 1000:>8.2f}"
        )
        if t:
            line += (
                f"{t['p50_ms']:>9.2f}{t['p90_ms']:>9.2f}{t['p99_ms']:>9.2f}{t['p999_ms']:>10.2f}"
                f"{t['max_ms']:>9.1f}{t['rps']:>10.0f}{t['non_2xx'] + t['errors']:>8}"
                f"{fmt(t['first_request_max_ms'], 1):>9}{fmt(t['steady_max_ms'], 1):>11}"
                f"{t['cpu']['foreign_cpu_pct']:>9.1f}"
            )
        print(line)
    print(
        "(c1: wrk, 1 connection, every request; p50 and p99 are medians over the rounds, p90 and max"
        " those of the median-p99 round;\n"
        " c64: benchmarks/latency_client.py, 64 keep-alive "
        "connections, every latency kept, uncorrected, first request includes the connect;\n"
        " 1st max: slowest first request of a connection; steady max: slowest of all the others)"
    )


def print_batch(results: dict[str, Any]) -> None:
    """10,000-row round trips per contender."""
    print("\n== batch: 10,000 rows in one request (median of reps, plain http.client)")
    for name, entry in results["contenders"].items():
        b = entry.get("batch10k")
        if b:
            print(
                f"{name:<24} median {b['median_ms']:8.1f} ms  min {b['min_ms']:8.1f}  "
                f"max {b['max_ms']:8.1f}  rows {b['rows_returned']}  statuses {b['statuses']}  "
                f"body {b['request_bytes'] / 1e6:.1f} MB"
            )


def print_overload(results: dict[str, Any]) -> None:
    """1000 connections (wrk, then latency_client.py) and reloads under load."""
    for name, entry in results["contenders"].items():
        c = entry.get("c1000")
        if c:
            print(f"\n== 1000 connections for {results['profile']['c1000_s']} s ({name}, wrk)")
            print(
                f"requests {c['requests']} ({c['rps']:.0f}/s), socket errors connect "
                f"{c['connect']} read {c['read']} write {c['write']} timeout {c['timeout']}, "
                f"non-2xx {c['non2xx']}, over 2 s {c['over_2s']}, p50 {c['p50_us'] / 1000:.1f} ms,"
                f" p99 {c['p99_us'] / 1000:.1f} ms, max {c['max_us'] / 1000:.0f} ms, /ready after:"
                f" {c['ready_after']}, foreign CPU {c['cpu']['foreign_cpu_pct']}%"
            )
        cc = entry.get("c1000_client")
        if cc:
            print(
                f"same with latency_client.py for {cc['duration_s']:.0f} s: {cc['requests']} "
                f"requests, errors {cc['errors']}, non-2xx {cc['non_2xx']}, p50 {cc['p50_ms']:.0f}"
                f" ms, p99 {cc['p99_ms']:.0f} ms, max {cc['max_ms']:.0f} ms; first request of a "
                f"connection: p50 {cc['first_request_p50_ms']:.0f} ms, max "
                f"{cc['first_request_max_ms']:.0f} ms; all other requests: p99 "
                f"{cc['steady_p99_ms']:.0f} ms, max {cc['steady_max_ms']:.0f} ms"
            )
        r = entry.get("reload")
        if r:
            rl = r["reloads"]
            print(f"\n== {rl['requested']} reloads under 64-connection load ({name})")
            print(
                f"requests {r['requests']} ({r['rps']:.0f}/s), socket errors "
                f"{r['socket_errors']}, non-2xx {r['non2xx']}, p99 {r['p99_us'] / 1000:.1f} ms, "
                f"max {r['max_us'] / 1000:.0f} ms; reloads: {rl['ok']}/{rl['requested']} "
                f"answered 200 (statuses {rl['statuses']}), median {rl['median_ms']} ms, "
                f"max {rl['max_ms']} ms"
            )
            for failure in rl["failures"]:
                print(f"  reload failure: {failure}")


def print_health(results: dict[str, Any]) -> None:
    """The services' metrics and logged rows, slow shutdowns, log lines that look like trouble."""
    print("\n== service health (metrics scraped at the end, before shutdown)")
    written = 0.0
    for name, health in results["health"].items():
        m = health.get("metrics", {})
        written += m.get("prediction_log_written_rows_total", 0)
        print(
            f"{name}: predicted rows {m.get('predictions_total', 0):.0f}, log written "
            f"{m.get('prediction_log_written_rows_total', 0):.0f}, dropped "
            f"{m.get('prediction_log_dropped_rows_total', 0):.0f}, queue "
            f"{m.get('prediction_log_queue_rows', 0):.0f}; HTTP 5xx "
            f"{sum(v for k, v in m.items() if k.endswith(' 5xx')):.0f}, 4xx "
            f"{sum(v for k, v in m.items() if k.endswith(' 4xx')):.0f}; reloads ok "
            f"{m.get('reloads success', 0):.0f} failed {m.get('reloads failure', 0):.0f}"
        )
    print(
        f"rows in the shared pred.db after shutdown: {results.get('logged_rows_in_db')} "
        f"(log counters say {written:.0f})"
    )
    for name, entry in results["contenders"].items():
        shutdown = entry.get("shutdown", {})
        if shutdown.get("killed") or shutdown.get("seconds", 0) > 10:
            print(f"{name}: slow shutdown {shutdown}")
        problems = entry.get("log_problems", [])
        for line in problems[:3]:
            print(f"{name} log: {line[:160]}")
        if entry.get("log_problem_count", 0) > 3:
            print(f"{name} log: ... {entry['log_problem_count']} such lines in {name}.log")


def print_targets(results: dict[str, Any]) -> None:
    """The results against the targets, then the warnings."""
    print("\n== results vs targets")
    print(f"{'metric':<52}{'value':>10}  {'target':<9} {'status':<7} note")
    for row in results["targets"]:
        value = row["value"]
        if value is None:
            shown = "-"
        elif "req/s vs" in row["metric"] and "MLflow" in row["metric"]:
            shown = f"{value:.1f}x"
        elif "%" in row["target"] or "vs bare ASGI" in row["metric"]:
            shown = f"{value:.0%}"
        elif "ms" in row["target"]:
            shown = f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
        elif isinstance(value, float):
            shown = f"{value:.2f}"
        else:
            shown = str(value)
        status = {True: "meets", False: "MISSES", None: "n/a"}[row["meets"]]
        if row["target"] == "info":
            status = ""
        print(f"{row['metric']:<52}{shown:>10}  {row['target']:<9} {status:<7} {row['note']}")
    for warning in results["warnings"]:
        print(f"warning: {warning}")


def print_report(results: dict[str, Any]) -> None:
    """The whole report, section by section, in the order of the measurements."""
    print_machine(results)
    print_throughput(results)
    print_kept(results)
    print_latency(results)
    print_batch(results)
    print_overload(results)
    print_health(results)
    print_targets(results)
