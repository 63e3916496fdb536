"""Serving speed: this prediction service against `mlflow models serve` and a bare ASGI app.

Every contender is a real server process pinned to CPU 0 (``taskset -c 0``); every load generator
(wrk, benchmarks/latency_client.py, this script's own batch and reload clients) runs on CPU 1, so
the server has one whole core and the client never steals from it. All traffic is on 127.0.0.1.

Prepared once and cached in ``--workdir`` (default /tmp/mloop-bench): the pipeline run on UCI wine
red (random split) in a fresh copy of this repo, giving the champion bundle (extra trees: ONNX for
single rows, native scikit-learn for large batches) and an MLflow registry with alias
``champion``; plus a second bundle and registered model for the hist_gb candidate (ONNX
throughout), the model of the issue's reference figures.

Contenders: this service (``python -m service``, 1 worker) with metrics and prediction log on, and
off (for the "kept throughput" ratio); ``mlflow models serve --env-manager local``; a bare ASGI app
(benchmarks/bare_asgi.py) on uvicorn/httptools/uvloop, the HTTP ceiling, and the same on asyncio
(the ceiling of the service's default loop, shown for information). All of them
run at once (idle ones cost ~0.2% of a core) so that throughput can be measured in interleaved
rounds: a VM's throughput drifts by tens of percent within minutes, and a ratio of two runs taken
seconds apart is far more trustworthy than one of two runs taken minutes apart.

The "kept" ratio (metrics and prediction log on against off) is measured head to head: both
servers loaded at once on CPU 0, each in its own session and so its own scheduler autogroup, the
figure being requests per second of server CPU (see measure_kept in serving_bench/scenarios.py).

Measured: single-row throughput (wrk -c64, Little's law check), latency with 1 connection (wrk,
interleaved rounds too, p50 and p99 each the median over the rounds) and 64
(benchmarks/latency_client.py, every latency kept), 10,000-row batches, 1000 connections,
and forced reloads under load. Prints figures and ratios against the targets; never asserts
(timings depend on the machine). Needs wrk and taskset, and the wine file (../shared/data)::

    python benchmarks/serving.py [--quick] [--workdir DIR] [--json-out FILE] [--rebuild]
        [--rounds N --round-seconds S]        # e.g. --rounds 1 --round-seconds 15: one wrk -d15s

About 15 minutes in full, about 3 with --quick (plus ~2 minutes of pipeline the first time).

The code is the package serving_bench/ beside this file, one module per concern (its docstring
lists them); this script is its entry point.
"""

from __future__ import annotations

from serving_bench.cli import main

if __name__ == "__main__":
    main()
