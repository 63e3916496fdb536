"""The hot path's buffered samples reach the same series as one prometheus-client call each."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from service.telemetry import metrics
from service.prediction_log.buffer import CallBuffer, Columns
from service.telemetry.folding import HotPathSamples
from tests.helpers.paths import REPO

Values = dict[tuple[str, str], float]


def read(registry: CollectorRegistry, name: str, **labels: str) -> Values:
    """{(suffix, le): value} of one child of ``name``: a counter's ``_total``, or a histogram's
    ``_bucket`` per bound, ``_count`` and ``_sum``."""
    found: Values = {}
    for family in registry.collect():
        for sample in family.samples:
            if (
                sample.name.startswith(name)
                and labels.items() <= sample.labels.items()
                and not sample.name.endswith("_created")
            ):
                found[(sample.name[len(name) :], sample.labels.get("le", ""))] = sample.value
    return found


def grown(before: Values, after: Values) -> Values:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def one_observe_each(buckets: Iterable[float], values: Iterable[float]) -> Any:
    """What prometheus-client itself makes of the values, one ``observe`` per value (the sums may
    differ in the last bit: they add in another order)."""
    registry = CollectorRegistry()
    histogram = Histogram("reference", "reference", buckets=list(buckets), registry=registry)
    for value in values:
        histogram.observe(value)
    return pytest.approx(read(registry, "reference"), rel=1e-12)


def buffered(calls: list[tuple[str, float, list[Any]]]) -> list[Columns]:
    """Calls (version, model seconds, outputs) through a real CallBuffer, as the service takes them."""
    buffer = CallBuffer(max_rows=1000, id_prefix="test-")
    for index, (version, seconds, outputs) in enumerate(calls):
        rows = len(outputs)
        features = np.full((rows, 2), float(index))
        buffer.add(
            version, index, 0, False, features, ["a", "b"], np.asarray(outputs), seconds, 1.0
        )
    return buffer.take()


def test_flush_and_fold_give_what_single_observes_give() -> None:
    samples = HotPathSamples()
    route = {"method": "POST", "route": "/predict"}
    version, other = "fold-test", "fold-test-next"
    # On and between bucket bounds (0.0001 is one), in several status classes.
    http = [(200, 0.00004), (200, 0.0001), (422, 0.0003), (200, 0.004), (500, 2.0), (200, 7.0)]
    # A reload in the middle of a second: calls of two versions in one segment.
    calls = [(version, 1e-05, [5.25]), (version, 0.002, [1.0, 7.5, 5.25]),
             (other, 0.0001, [3.0]), (version, 0.0003, [2.0])]  # fmt: skip
    watched = {
        "requests": ("mloop_http_requests", route),
        "http": ("mloop_http_request_duration_seconds", route),
        "rows": ("mloop_predictions", {"model_version": version}),
        "model": ("mloop_prediction_duration_seconds", {"model_version": version}),
        "other": ("mloop_prediction_duration_seconds", {"model_version": other}),
        "batch": ("mloop_prediction_batch_rows", {}),
        "values": ("mloop_predicted_value", {"model_version": version}),
    }
    before = {key: read(REGISTRY, name, **labels) for key, (name, labels) in watched.items()}
    for status, seconds in http:
        samples.http(status, seconds)
    segments = buffered(calls)
    assert len(segments) == 1

    samples.fold_http(samples.take_http())
    for segment in segments:
        samples.fold(segment, "regression")

    after = {
        key: grown(before[key], read(REGISTRY, name, **labels))
        for key, (name, labels) in watched.items()
    }
    statuses = {
        status: read(REGISTRY, "mloop_http_requests", **route, status=status)
        for status in ("2xx", "4xx", "5xx")
    }
    totals = {s: grown(before["requests"], v).get(("_total", ""), 0) for s, v in statuses.items()}
    assert totals == {"2xx": 4, "4xx": 1, "5xx": 1}
    assert after["http"] == one_observe_each(metrics.LATENCY_BUCKETS, [s for _, s in http])
    assert after["rows"] == {("_total", ""): 5}
    mine = [seconds for v, seconds, _ in calls if v == version]
    assert after["model"] == one_observe_each(metrics.LATENCY_BUCKETS, mine)
    assert after["other"] == one_observe_each(metrics.LATENCY_BUCKETS, [0.0001])
    assert after["batch"] == one_observe_each(metrics.BATCH_BUCKETS, [1, 3, 1, 1])
    buckets = metrics._predicted_value_edges
    assert after["values"] == one_observe_each(buckets, [5.25, 1.0, 7.5, 5.25, 2.0])


def test_fold_counts_predicted_classes() -> None:
    version = "fold-classes"
    calls = [(version, 0.0001, ["yes"]), (version, 0.0002, ["no", "yes", "yes"]),
             (version, 0.0001, ["no"])]  # fmt: skip
    for segment in buffered(calls):
        HotPathSamples.fold(segment, "classification")
    counts = {
        label: read(REGISTRY, "mloop_predicted_class", model_version=version, predicted_class=label)
        for label in ("no", "yes")
    }
    assert counts == {"no": {("_total", ""): 2}, "yes": {("_total", ""): 3}}


def test_a_take_takes_each_http_sample_once() -> None:
    samples = HotPathSamples()
    route = {"method": "POST", "route": "/predict", "status": "3xx"}  # a class no other test uses
    samples.http(304, 0.001)
    samples.fold_http(samples.take_http())
    samples.fold_http(samples.take_http())
    assert read(REGISTRY, "mloop_http_requests", **route) == {("_total", ""): 1}
    samples.http(301, 0.001)
    samples.fold_http(samples.take_http())
    assert read(REGISTRY, "mloop_http_requests", **route) == {("_total", ""): 2}


MULTIPROCESS_CHECK = """
import sys
import numpy as np
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from service.telemetry.folding import observe_many

values = [0.1, 0.5, 0.5, 2.0, 7.0, 100.0]
bulk = Histogram("bulk", "bulk", buckets=[0.5, 1.0, 5.0])
single = Histogram("single", "single", buckets=[0.5, 1.0, 5.0])
observe_many(bulk, np.asarray(values))
for value in values:
    single.observe(value)
registry = CollectorRegistry()
MultiProcessCollector(registry)
samples = {(s.name, s.labels.get("le", "")): s.value for f in registry.collect() for s in f.samples}
got = {(n[len("bulk"):], le): v for (n, le), v in samples.items() if n.startswith("bulk")}
want = {(n[len("single"):], le): v for (n, le), v in samples.items() if n.startswith("single")}
print(got == want and len(got) > 0)
"""


def test_observe_many_relies_on_internals_that_still_exist(tmp_path: Path) -> None:
    # observe_many writes through a histogram child's private value holders (_upper_bounds,
    # _buckets, _sum): pyproject pins prometheus-client's range; this fails if they change, in
    # single-process mode and in multiprocess mode (mmapped files, the service's --workers).
    child = Histogram("internals", "internals", buckets=[1.0, 2.0], registry=CollectorRegistry())
    assert list(child._upper_bounds) == [1.0, 2.0, float("inf")]
    assert len(child._buckets) == 3 and all(hasattr(b, "inc") for b in child._buckets)
    assert hasattr(child._sum, "inc") and hasattr(child._sum, "get")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_CHECK], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
