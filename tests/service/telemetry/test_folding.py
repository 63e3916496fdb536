"""The hot path's buffered samples reach the same series as one prometheus-client call each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from service import metrics
from service.call_buffer import CallBuffer, Columns
from service.metrics import HotPathSamples

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
    buckets = metrics.predicted_value._upper_bounds[:-1]
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
