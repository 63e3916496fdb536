"""``python benchmarks/serving.py``: checks, preparation, every measurement, report and JSON.

``main`` parses the options (``--quick``, ``--workdir``, ``--json-out``, ``--data``, ``--rebuild``,
``--rounds``, ``--round-seconds``), exits with a message when the machine lacks something (the
wine file, wrk, taskset, a second CPU), prepares or reuses the models, runs ``run_all`` (every
contender started, then the measurements in order), prints the report and writes the results as
JSON (default ``<workdir>/serving.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import serving_bench
from serving_bench.bodies import write_bodies
from serving_bench.contenders import Context, build_contenders, sanity
from serving_bench.cpu import idle_check
from serving_bench.health import logged_rows, scrape_metrics
from serving_bench.load import lua_script, run_latency_client, time_batches
from serving_bench.prepare import Prepared, load_prepared, prepare
from serving_bench.report import machine_info, print_report
from serving_bench.scenarios import (
    measure_c1000,
    measure_kept,
    measure_reload,
    measure_throughput,
    measure_unloaded,
)
from serving_bench.servers import running, wait_idle
from serving_bench.settings import CLIENT_CPU, CONNECTIONS, FULL, HIST_GB, QUICK, REPO
from serving_bench.targets import collect_warnings, target_rows


def run_all(ctx: Context, prepared: Prepared, results: dict[str, Any]) -> None:
    """Start every contender, then measure: throughput rounds, latency, batch, overload, reloads."""
    for suffix in ("", "-wal", "-shm"):
        (ctx.workdir / f"pred.db{suffix}").unlink(missing_ok=True)
    contenders = build_contenders(ctx, prepared)
    out: dict[str, dict[str, Any]] = {name: {} for name in contenders}
    results["contenders"] = out
    with contextlib.ExitStack() as stack:
        print("starting the contenders (all pinned to CPU 0; only one is loaded at a time)")
        for name, c in contenders.items():
            stack.enter_context(running(c.server))
            out[name]["startup_s"] = round(c.server.startup_s, 1)
            out[name]["prediction"] = sanity(c)
        print("throughput: wrk -t1 -c64, interleaved rounds", flush=True)
        for name, value in measure_throughput(ctx, contenders).items():
            out[name]["throughput"] = value
        print(
            f"kept throughput: {ctx.profile.kept_runs} head-to-head runs, metrics+log on/off",
            flush=True,
        )
        results["kept"] = measure_kept(ctx, contenders)
        print("latency: 1 connection (wrk), 64 connections (latency_client.py)", flush=True)
        p = ctx.profile
        for name, value in measure_unloaded(ctx, contenders).items():
            out[name]["unloaded"] = value
        for name, c in contenders.items():
            server = c.server
            if c.tails:
                out[name]["tails64"] = run_latency_client(
                    server, c.path, c.row, CONNECTIONS, p.tails_s
                )
        print("batch: 10,000 rows per request", flush=True)
        for name, c in contenders.items():
            if c.batch is not None and c.batch_key is not None:
                out[name]["batch10k"] = time_batches(
                    c.server.port, c.path, c.batch.read_bytes(), p.batch_reps, c.batch_key
                )
                wait_idle(c.server)
        champion = contenders["service-champion"].server
        print("1000 connections (service-champion)", flush=True)
        out["service-champion"]["c1000"] = measure_c1000(ctx, champion)
        # The same overload seen by the every-latency client: are the slow ones first requests?
        out["service-champion"]["c1000_client"] = run_latency_client(
            champion, "/predict", ctx.bodies.row, 1000, p.tails_s
        )
        print(f"{p.reloads} reloads under load (service-champion)", flush=True)
        out["service-champion"]["reload"] = measure_reload(ctx, champion)
        time.sleep(1.5)  # the housekeeping thread syncs the log counters every second
        for name, c in contenders.items():
            if name.startswith("service-") and not name.endswith("-off"):
                results["health"][name] = {"metrics": scrape_metrics(c.server.port)}
    for name, c in contenders.items():
        problems = c.server.log_problems()
        out[name]["log_problems"] = problems[:20]
        out[name]["log_problem_count"] = len(problems)
        out[name]["shutdown"] = c.server.shutdown
    results["logged_rows_in_db"] = logged_rows(ctx.workdir)


def parse_args() -> argparse.Namespace:
    description = (serving_bench.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="3 s per measurement (smoke run)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mloop-bench"))
    parser.add_argument("--json-out", type=Path, help="default: <workdir>/serving.json")
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared/data/winequality-red.csv"
    )
    parser.add_argument("--rebuild", action="store_true", help="redo the cached preparation")
    parser.add_argument(
        "--rounds", type=int, help="interleaved throughput rounds (default 5; quick 1)"
    )
    parser.add_argument(
        "--round-seconds", type=int, help="wrk duration of one round (default 5; quick 3)"
    )
    return parser.parse_args()


def check_machine(data: Path) -> None:
    """Exit with a message when the wine file, wrk, taskset or a second CPU is missing."""
    if not data.is_file():
        sys.exit(f"{data} not found: this benchmark needs the UCI wine red file")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (make system-deps installs wrk; taskset is util-linux)")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two CPUs: one for the server, one for the load generator")


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:  # 1000 client + 1000 server sockets; children inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def make_context(
    args: argparse.Namespace, workdir: Path, data: Path, prepared: Prepared
) -> Context:
    """The bodies, a fresh log folder, the wrk scripts, the profile and a new admin token."""
    bodies = write_bodies(workdir, data, prepared.features)
    log_dir = workdir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    lua_dir = workdir / "lua"
    lua = {
        "row": lua_script(lua_dir / "row.lua", bodies.row.read_bytes(), strict=False),
        "row_strict": lua_script(lua_dir / "row_strict.lua", bodies.row.read_bytes(), True),
        "row_mlflow": lua_script(lua_dir / "row_mlflow.lua", bodies.row_mlflow.read_bytes(), False),
    }
    profile = QUICK if args.quick else FULL
    if args.rounds or args.round_seconds:  # --rounds 1 --round-seconds 15: one 15 s wrk run each
        profile = replace(
            profile,
            rounds=args.rounds or profile.rounds,
            round_s=args.round_seconds or profile.round_s,
        )
    return Context(workdir, profile, bodies, lua, secrets.token_urlsafe(24), log_dir)


def main() -> None:
    args = parse_args()
    data = args.data.resolve()
    check_machine(data)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    started = time.perf_counter()

    prepared = None if args.rebuild else load_prepared(workdir, data)
    if prepared is None:
        prepared = prepare(workdir, data)
    else:
        print(f"using the cached preparation in {workdir} (--rebuild to redo it)", flush=True)
    # This script only waits and sends the odd request from now on: keep it off the server core.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})

    ctx = make_context(args, workdir, data, prepared)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "idle_check_pct": idle_check(),
        "quick": args.quick,
        "profile": asdict(ctx.profile),
        "prepared": asdict(prepared),
        "first_row": ctx.bodies.first_row,
        "contenders": {},
        "health": {},
    }
    run_all(ctx, prepared, results)
    contenders: dict[str, Any] = results["contenders"]

    for which in ("champion", HIST_GB):
        ours = contenders[f"service-{which}"]["prediction"]
        theirs = contenders[f"mlflow-{which}"]["prediction"]
        results[f"same_row_{which}"] = {"service": ours, "mlflow": theirs}
    results["targets"] = target_rows(results)
    results["warnings"] = collect_warnings(results)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    print_report(results)
    for which in ("champion", HIST_GB):
        same = results[f"same_row_{which}"]
        print(
            f"first wine row, {which}: service {same['service']:.6f}, "
            f"MLflow {same['mlflow']:.6f}"
        )
    json_out = args.json_out or workdir / "serving.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {json_out}; server logs and wrk outputs: {ctx.log_dir}")
    print(f"total {results['total_seconds']:.0f} s")
