"""Serving speed: this prediction service against `mlflow models serve` and a bare ASGI app.

The package behind ``benchmarks/serving.py`` (which documents the method and the command), one
module per concern:

- ``settings``: the cores, the host, the connection counts and the time budgets (``Profile``);
- ``prepare``: the cached pipeline run that gives the bundles and the registered models;
- ``bodies``: the request bodies, from the real data;
- ``servers``: the contender processes (this service, ``mlflow models serve``, bare ASGI);
- ``cpu``: who used the CPUs during a measurement;
- ``load``: the load generators (wrk and its script, benchmarks/latency_client.py, batches);
- ``contenders``: the servers of one comparison and how to talk to each;
- ``scenarios``: the measurements (throughput rounds, kept throughput, latency, overload, reloads);
- ``health``: what the services say about themselves afterwards (metrics, logged rows);
- ``targets`` and ``report``: the figures against the targets, the printed report;
- ``cli``: the command line, the whole run and the JSON results.

``benchmarks/ab_serving.py`` reuses the servers, the load generators and ``head_to_head``.
"""
