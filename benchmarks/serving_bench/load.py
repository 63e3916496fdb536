"""Load generators on the client core: wrk and its script, latency_client.py, batch round trips.

``run_wrk`` and ``run_latency_client`` return the client's figures with the CPU accounting of the
run (``cpu``) and the seconds the server took to go idle afterwards (``drain_s``); ``wrk_argv``
and ``parse_wrk`` are the pieces for a wrk run in the background; ``time_batches`` times large
requests over one keep-alive connection.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serving_bench.cpu import CpuMeter
from serving_bench.servers import Server, wait_idle
from serving_bench.settings import CLIENT_CPU, HOST, REPO, SLOW_US


def lua_script(path: Path, body: bytes, strict: bool) -> Path:
    """A wrk script posting ``body`` whose done() prints one JSON line (WRK_JSON ...).

    ``strict`` adds a response() hook counting every non-2xx (wrk's own "status" error counts
    only >= 400) summed over threads; it costs wrk some speed, so plain runs leave it out. The
    "over 2 s" count walks wrk's per-microsecond latency buckets (``latency(i)``: value, count).
    """
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f"wrk.body = [==[{body.decode()}]==]",
        "local threads = {}",
        "function setup(thread) table.insert(threads, thread) end",
    ]
    if strict:
        lines += [
            "non2xx = 0",
            "function response(status, headers, body)",
            "  if status < 200 or status > 299 then non2xx = non2xx + 1 end",
            "end",
        ]
    lines += [
        "function done(summary, latency, requests)",
        "  local over = 0",
        "  for i = 1, #latency do",
        "    local value, count = latency(i)",
        f"    if value > {SLOW_US} then over = over + count end",
        "  end",
        "  local non2xx = -1",
        "  if response then",
        "    non2xx = 0",
        '    for _, t in ipairs(threads) do non2xx = non2xx + t:get("non2xx") end',
        "  end",
        "  local e = summary.errors",
        '  io.write(string.format(\'WRK_JSON {"requests":%.0f,"duration_us":%.0f,\'',
        '    .. \'"bytes":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,\'',
        '    .. \'"timeout":%.0f,"non2xx":%.0f,"over_2s":%.0f,"mean_us":%.2f,\'',
        '    .. \'"stdev_us":%.2f,"min_us":%.0f,"max_us":%.0f,"p50_us":%.0f,\'',
        '    .. \'"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f}\\n\',',
        "    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,",
        "    e.status, e.timeout, non2xx, over, latency.mean, latency.stdev, latency.min,",
        "    latency.max, latency:percentile(50), latency:percentile(90),",
        "    latency:percentile(99), latency:percentile(99.9)))",
        "end",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_wrk(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            text = re.sub(r"-?\b(nan|inf)\b", "null", line[len("WRK_JSON ") :])
            result: dict[str, Any] = json.loads(text)
            seconds = result["duration_us"] / 1e6
            result["rps"] = round(result["requests"] / seconds, 1) if seconds else 0.0
            result["socket_errors"] = sum(
                result[k] for k in ("connect", "read", "write", "timeout")
            )
            return result
    raise RuntimeError(f"wrk printed no WRK_JSON line:\n{output[-2000:]}")


def wrk_argv(url: str, lua: Path, connections: int, seconds: int, timeout_s: int = 10) -> list[str]:
    return [
        "taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--timeout", f"{timeout_s}s", "--latency", "-s", str(lua), url,
    ]  # fmt: skip


def run_wrk(
    server: Server,
    path: str,
    lua: Path,
    connections: int,
    seconds: int,
    log_dir: Path,
    label: str,
) -> dict[str, Any]:
    meter = CpuMeter(server.pgid)
    completed = subprocess.run(
        wrk_argv(f"http://{HOST}:{server.port}{path}", lua, connections, seconds),
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    cpu = meter.stop()
    (log_dir / f"{server.name}.{label}.wrk.txt").write_text(completed.stdout + completed.stderr)
    result = parse_wrk(completed.stdout)
    result["cpu"] = cpu
    result["drain_s"] = wait_idle(server)
    return result


def run_latency_client(
    server: Server, path: str, body: Path, connections: int, seconds: int
) -> dict[str, Any]:
    meter = CpuMeter(server.pgid)
    argv = [
        "taskset", "-c", CLIENT_CPU, sys.executable, str(REPO / "benchmarks/latency_client.py"),
        "--port", str(server.port), "--path", path, "--body-file", str(body),
        "--connections", str(connections), "--duration", str(seconds),
    ]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    cpu = meter.stop()
    if completed.returncode != 0:
        raise RuntimeError(f"latency client failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    result["cpu"] = cpu
    result["drain_s"] = wait_idle(server)
    return result


def time_batches(port: int, path: str, body: bytes, reps: int, key: str) -> dict[str, Any]:
    """Round trips of one large request over one keep-alive connection (plain http.client)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    timings: list[float] = []
    statuses: dict[int, int] = {}
    rows = None
    try:
        for index in range(reps + 2):  # two untimed warm-up round trips
            started = time.perf_counter()
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status == 200 and rows is None:
                rows = len(json.loads(payload)[key])
            if index >= 2:
                timings.append(elapsed)
    finally:
        connection.close()
    return {
        "reps": reps,
        "rows_returned": rows,
        "statuses": {str(k): v for k, v in statuses.items()},
        "median_ms": round(statistics.median(timings), 2),
        "min_ms": round(min(timings), 2),
        "max_ms": round(max(timings), 2),
        "request_bytes": len(body),
    }
