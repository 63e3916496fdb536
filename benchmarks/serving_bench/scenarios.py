"""The measurements, each returning its figures as a JSON-ready dict; none of them asserts.

Throughput in interleaved rounds (``measure_throughput``: every contender in turn, ``rounds``
times, so a drift of the machine hits all alike); the kept ratio, metrics and prediction log on
against off, with both servers loaded at once (``measure_kept``, ``head_to_head``); latency with
one connection in rounds too (``measure_unloaded``); 1000 connections (``measure_c1000``); and
forced reloads under load (``measure_reload``).
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import time
from typing import Any

from serving_bench.contenders import Contender, Context
from serving_bench.cpu import CpuMeter, autogroup_enabled
from serving_bench.load import parse_wrk, run_wrk, wrk_argv
from serving_bench.servers import Server, http_request, wait_idle
from serving_bench.settings import CONNECTIONS, HIST_GB, HOST


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def aggregate_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round (by req/s) with the spread of all rounds and Little's law check on it."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    median = dict(ordered[len(ordered) // 2])
    median["rounds_rps"] = [r["rps"] for r in rounds]
    median["spread_pct"] = (
        round(100 * (ordered[-1]["rps"] - ordered[0]["rps"]) / median["rps"], 1)
        if median["rps"]
        else None
    )
    if median["rps"]:
        little_ms = CONNECTIONS / median["rps"] * 1000
        median["little_ms"] = round(little_ms, 3)
        median["little_ratio"] = round(median["mean_us"] / 1000 / little_ms, 3)
    return median


def measure_throughput(ctx: Context, contenders: dict[str, Contender]) -> dict[str, Any]:
    p = ctx.profile
    for name, c in contenders.items():
        run_wrk(c.server, c.path, ctx.lua[c.lua], CONNECTIONS, p.warmup_s, ctx.log_dir, "warmup")
    rounds = interleaved_rounds(ctx, contenders, "throughput", CONNECTIONS, p.round_s)
    return {name: aggregate_rounds(values) for name, values in rounds.items()}


def interleaved_rounds(
    ctx: Context, contenders: dict[str, Contender], what: str, connections: int, seconds: int
) -> dict[str, list[dict[str, Any]]]:
    """``profile.rounds`` passes of wrk over every contender in turn, results per contender."""
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for index in range(ctx.profile.rounds):
        print(f"  {what} round {index + 1}/{ctx.profile.rounds}", flush=True)
        for name, c in contenders.items():
            result = run_wrk(
                c.server, c.path, ctx.lua[c.lua], connections, seconds, ctx.log_dir,
                f"c{connections}-round{index + 1}",
            )  # fmt: skip
            rounds[name].append(result)
    return rounds


def head_to_head(ctx: Context, on: Contender, off: Contender, seconds: int) -> dict[str, Any]:
    """Load both servers at once (one wrk each, both on the client core) and count each one's
    requests and server CPU over the same seconds."""
    meters = {"on": CpuMeter(on.server.pgid), "off": CpuMeter(off.server.pgid)}
    loads = {
        side: subprocess.Popen(
            wrk_argv(
                f"http://{HOST}:{c.server.port}{c.path}", ctx.lua[c.lua], CONNECTIONS, seconds
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for side, c in (("on", on), ("off", off))
    }
    outputs = {side: load.communicate(timeout=seconds + 120)[0] for side, load in loads.items()}
    cpu = {side: meter.stop() for side, meter in meters.items()}
    result: dict[str, Any] = {}
    for side, c in (("on", on), ("off", off)):
        run = parse_wrk(outputs[side])
        # The server's whole process group: event loop, threads and log writer.
        cpu_s = cpu[side]["server_cpu_pct"] / 100 * cpu[side]["wall_s"]
        result[f"{side}_requests"] = run["requests"]
        result[f"{side}_cpu_s"] = round(cpu_s, 2)
        result[f"{side}_cpu_us"] = (
            round(cpu_s / run["requests"] * 1e6, 2) if run["requests"] else None
        )
        result[f"{side}_errors"] = run["socket_errors"] + run["status"]
    for c in (on, off):
        wait_idle(c.server)
    result["ratio"] = ratio(result["on_requests"], result["off_requests"])
    result["cpu_ratio"] = ratio(result["off_cpu_us"], result["on_cpu_us"])
    result["client_core_busy_pct"] = cpu["on"]["client_core_busy_pct"]
    return result


def measure_kept(ctx: Context, contenders: dict[str, Contender]) -> dict[str, Any]:
    """Metrics and prediction log on against off, head to head: both servers share CPU 0 and are
    loaded at the same time, ``kept_runs`` times.

    Why: measured one after the other, even seconds apart, the ratio of two runs swung between
    0.45 and 1.15 on this VM (the machine's speed changes from second to second). Loaded at
    once, both servers see the same machine at every instant. Each runs in its own session (so
    its own scheduler autogroup, which the kernel gives an equal share of the core), its threads
    and the log writer included; the figure is requests per second of server CPU, on over off,
    which stays right even if the share is not equal. Sharing the core switches between the two
    servers every few milliseconds, which costs both the same cache refills.
    """
    p = ctx.profile
    results: dict[str, Any] = {"autogroup": autogroup_enabled()}
    for which in ("champion", HIST_GB):
        on, off = contenders.get(f"service-{which}"), contenders.get(f"service-{which}-off")
        if on is None or off is None:
            continue
        runs = []
        for index in range(p.kept_runs):
            print(f"  kept [{which}] head-to-head run {index + 1}/{p.kept_runs}", flush=True)
            runs.append(head_to_head(ctx, on, off, p.kept_s))
        cpu_ratios = [r["cpu_ratio"] for r in runs if r["cpu_ratio"] is not None]
        ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
        results[which] = {
            "runs": runs,
            "median": statistics.median(cpu_ratios) if cpu_ratios else None,
            "min": min(cpu_ratios, default=None),
            "max": max(cpu_ratios, default=None),
            "requests_median": statistics.median(ratios) if ratios else None,
            "on_cpu_us": statistics.median(r["on_cpu_us"] for r in runs if r["on_cpu_us"]),
            "off_cpu_us": statistics.median(r["off_cpu_us"] for r in runs if r["off_cpu_us"]),
        }
    return results


def measure_unloaded(ctx: Context, contenders: dict[str, Contender]) -> dict[str, Any]:
    """One connection, in interleaved rounds like throughput: a single run's p99 moved between
    1.0 and 3.0 ms within minutes on this VM with nothing changed (measured), so p50 and p99 are
    each the median over the rounds, with every round's figures beside them."""
    rounds = interleaved_rounds(ctx, contenders, "unloaded", 1, ctx.profile.unloaded_s)
    aggregated: dict[str, Any] = {}
    for name, values in rounds.items():
        ordered = sorted(values, key=lambda r: r["p99_us"])
        median = dict(ordered[len(ordered) // 2])
        median["rounds_p50_us"] = [r["p50_us"] for r in values]
        median["rounds_p99_us"] = [r["p99_us"] for r in values]
        # A stall can shift a whole round: each percentile is the median over the rounds of its
        # own (p90 and max stay those of the median-p99 round).
        median["p50_us"] = statistics.median(median["rounds_p50_us"])
        aggregated[name] = median
    return aggregated


def measure_c1000(ctx: Context, server: Server) -> dict[str, Any]:
    p = ctx.profile
    result = run_wrk(
        server, "/predict", ctx.lua["row_strict"], 1000, p.c1000_s, ctx.log_dir, "c1000"
    )
    status, _ = http_request(server.port, "GET", "/ready")
    result["ready_after"] = status
    return result


def measure_reload(ctx: Context, server: Server) -> dict[str, Any]:
    """Forced reloads while 64 connections keep posting; every failed request is counted."""
    p = ctx.profile
    meter = CpuMeter(server.pgid)
    load = subprocess.Popen(
        wrk_argv(
            f"http://{HOST}:{server.port}/predict", ctx.lua["row_strict"], CONNECTIONS, p.reload_s
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)
    interval = max(0.05, (p.reload_s - 2.5) / p.reloads)
    reloads: list[dict[str, Any]] = []
    auth = {"Authorization": f"Bearer {ctx.token}"}
    for _ in range(p.reloads):
        started = time.perf_counter()
        try:
            status, payload = http_request(server.port, "POST", "/admin/reload", b"", auth, 30)
            message = json.loads(payload).get("message", payload.decode()[:120])
        except (OSError, http.client.HTTPException, ValueError) as exc:
            status, message = 0, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        reloads.append({"status": status, "ms": round(elapsed * 1000, 1), "message": message})
        time.sleep(max(0.0, interval - elapsed))
    output, _ = load.communicate(timeout=p.reload_s + 120)
    cpu = meter.stop()
    (ctx.log_dir / f"{server.name}.reload.wrk.txt").write_text(output)
    result = parse_wrk(output)
    result["cpu"] = cpu
    result["drain_s"] = wait_idle(server)
    ok = sum(1 for r in reloads if r["status"] == 200)
    result["reloads"] = {
        "requested": len(reloads),
        "ok": ok,
        "statuses": sorted({r["status"] for r in reloads}),
        "median_ms": round(statistics.median(r["ms"] for r in reloads), 1),
        "max_ms": max(r["ms"] for r in reloads),
        "failures": [r for r in reloads if r["status"] != 200][:5],
    }
    return result
