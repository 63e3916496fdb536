"""The results against the targets, one row each (value, target, met or not), never asserted.

``target_rows`` gives, per model served (champion, hist_gb), in this order: req/s against MLflow
serve and against bare ASGI (medians of per-round ratios), the kept throughput (metrics and
prediction log on over off), p99/p50 at 64 connections, unloaded p50 and p99, the 10,000-row
batch, the failures at 1000 connections and during reloads. ``collect_warnings`` lists the
measurements that another process disturbed or whose rounds disagree.
"""

from __future__ import annotations

import statistics
from typing import Any

from serving_bench.scenarios import ratio
from serving_bench.settings import HIST_GB

Row = dict[str, Any]


def target_row(
    label: str, value: float | None, target: str, ok: bool | None, note: str = ""
) -> Row:
    return {"metric": label, "value": value, "target": target, "meets": ok, "note": note}


def paired(contenders: dict[str, Any], a: str, b: str) -> tuple[float | None, str]:
    """Median of per-round ratios: the two runs of a round are minutes closer in time than
    the medians of two contenders, so machine drift cancels out better."""
    ra = contenders.get(a, {}).get("throughput", {}).get("rounds_rps", [])
    rb = contenders.get(b, {}).get("throughput", {}).get("rounds_rps", [])
    values = [x / y for x, y in zip(ra, rb) if y]
    if not values:
        return None, ""
    shown = ", ".join(f"{v:.3g}" for v in values)
    return statistics.median(values), f"per round: {shown}" if len(values) > 1 else ""


def throughput_rows(results: dict[str, Any], which: str) -> list[Row]:
    """req/s against MLflow serve, bare ASGI (and on asyncio, for information), the kept ratio."""
    c = results["contenders"]
    service = f"service-{which}"
    rows: list[Row] = []
    value, note = paired(c, service, f"mlflow-{which}")
    ok = None if value is None else value >= 20
    rows.append(target_row(f"req/s vs MLflow serve [{which}]", value, ">= 20x", ok, note))
    value, note = paired(c, service, "bare-asgi")
    ok = None if value is None else value >= 0.35
    rows.append(target_row(f"req/s vs bare ASGI [{which}]", value, ">= 35%", ok, note))
    value, note = paired(c, service, "bare-asgi-asyncio")
    if value is not None:
        label = f"  req/s vs bare ASGI on asyncio [{which}]"
        rows.append(target_row(label, value, "info", None, note))
    kept = results.get("kept", {}).get(which)
    if kept and kept.get("median") is not None:
        value = kept["median"]
        note = (
            f"{len(kept['runs'])} head-to-head runs, {kept['min']:.3g}-{kept['max']:.3g}; "
            f"server CPU per request {kept['on_cpu_us']:.1f} us on, "
            f"{kept['off_cpu_us']:.1f} us off; requests {kept['requests_median']:.3g}; "
            f"errors {sum(r['on_errors'] + r['off_errors'] for r in kept['runs'])}"
        )
        rounds_value, _ = paired(c, service, f"{service}-off")
        if rounds_value is not None:
            note += f"; one after the other (throughput rounds) {rounds_value:.3g}"
    else:  # an older results file: the throughput rounds' pairs
        value, note = paired(c, service, f"{service}-off")
    ok = None if value is None else value >= 0.85
    label = f"kept throughput, metrics+log on/off [{which}]"
    rows.append(target_row(label, value, ">= 85%", ok, note))
    return rows


def per_round(entry: dict[str, Any], key: str) -> str:
    return "/".join(f"{v / 1000:.2f}" for v in entry.get(f"rounds_{key}", []))


def latency_rows(c: dict[str, Any], which: str) -> list[Row]:
    """p99/p50 at 64 connections, then unloaded p50 and p99 (the -off and bare ASGI ones beside)."""
    service = f"service-{which}"
    rows: list[Row] = []
    tails = c[service].get("tails64")
    if tails:
        value = ratio(tails["p99_ms"], tails["p50_ms"])
        rows.append(target_row(
            f"p99/p50 at 64 connections [{which}]", value, "<= 3",
            None if value is None else value <= 3,
            f"p50 {tails['p50_ms']:.2f} ms, p99 {tails['p99_ms']:.2f} ms; p99 without each "
            f"connection's first request {tails['steady_p99_ms']:.2f} ms",
        ))  # fmt: skip
    unloaded = c[service].get("unloaded")
    if unloaded:
        p50, p99 = unloaded["p50_us"] / 1000, unloaded["p99_us"] / 1000
        off_unloaded = c.get(f"{service}-off", {}).get("unloaded")
        note50 = f"rounds {per_round(unloaded, 'p50_us')}"
        note99 = f"rounds {per_round(unloaded, 'p99_us')}"
        if off_unloaded:
            note50 += f"; metrics+log off {off_unloaded['p50_us'] / 1000:.3f} ms"
            note99 += (
                f"; metrics+log off {off_unloaded['p99_us'] / 1000:.3f} ms "
                f"(rounds {per_round(off_unloaded, 'p99_us')})"
            )
        bare_unloaded = c.get("bare-asgi", {}).get("unloaded")
        if bare_unloaded:  # the machine's own floor: a fixed answer, no model, no work
            note99 += f"; bare ASGI {bare_unloaded['p99_us'] / 1000:.3f} ms"
        rows.append(target_row(f"unloaded p50 [{which}]", p50, "<= 1 ms", p50 <= 1, note50))
        rows.append(target_row(f"unloaded p99 [{which}]", p99, "<= 2 ms", p99 <= 2, note99))
    return rows


def robustness_rows(c: dict[str, Any], which: str) -> list[Row]:
    """The 10,000-row batch, then the failed requests at 1000 connections and during reloads."""
    service = f"service-{which}"
    rows: list[Row] = []
    batch = c[service].get("batch10k")
    if batch:
        notes = []
        for other, label in (
            (f"{service}-off", "metrics+log off"),
            (f"mlflow-{which}", "MLflow"),
        ):
            other_batch = c.get(other, {}).get("batch10k")
            if other_batch:
                notes.append(f"{label} {other_batch['median_ms']:.0f} ms")
        note = ", ".join(notes)
        rows.append(target_row(
            f"batch 10k rows round trip [{which}]", batch["median_ms"], "<= 40 ms",
            batch["median_ms"] <= 40, note,
        ))  # fmt: skip
    c1000 = c[service].get("c1000")
    if c1000:
        failed = c1000["socket_errors"] + max(c1000["non2xx"], c1000["status"])
        failed += c1000["over_2s"]
        rows.append(target_row(
            f"1000 connections: errors + non-2xx + over 2 s [{which}]", failed, "0",
            failed == 0,
            f"socket {c1000['socket_errors']}, non-2xx {c1000['non2xx']}, "
            f">2 s {c1000['over_2s']}, {c1000['requests']} requests",
        ))  # fmt: skip
    reload = c[service].get("reload")
    if reload:
        failed = reload["socket_errors"] + max(reload["non2xx"], reload["status"])
        rows.append(target_row(
            f"failed requests during {reload['reloads']['requested']} reloads [{which}]",
            failed, "0", failed == 0,
            f"{reload['reloads']['ok']}/{reload['reloads']['requested']} reloads 200, "
            f"{reload['requests']} requests",
        ))  # fmt: skip
    return rows


def target_rows(results: dict[str, Any]) -> list[Row]:
    """The summary lines: value, target and whether it is met (printed, never asserted)."""
    c = results["contenders"]
    rows: list[Row] = []
    for which in ("champion", HIST_GB):
        if f"service-{which}" not in c:
            continue
        rows += throughput_rows(results, which)
        rows += latency_rows(c, which)
        rows += robustness_rows(c, which)
    return rows


def collect_warnings(results: dict[str, Any]) -> list[str]:
    """Measurements another process disturbed (foreign CPU), for the reader to discount."""
    warnings = []
    for name, entry in results["contenders"].items():
        for key, value in entry.items():
            if isinstance(value, dict) and "cpu" in value:
                foreign = value["cpu"]["foreign_cpu_pct"]
                if foreign > 10:
                    warnings.append(
                        f"{name} {key}: other processes used {foreign}% of a core during it"
                    )
    for name, entry in results["contenders"].items():
        spread = entry.get("throughput", {}).get("spread_pct")
        if spread is not None and spread > 15:
            warnings.append(
                f"{name}: throughput rounds differ by {spread}% (a noisy machine: read the "
                f"ratios, measured round by round, rather than absolute req/s)"
            )
    if results["idle_check_pct"] > 10:
        warnings.append(f"the machine was {results['idle_check_pct']}% busy before the run started")
    return warnings
