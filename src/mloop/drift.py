"""Data drift of a frame against a bundle's training histograms, with Evidently.

The service's drift gauges (PSI, ``mloop.reference``) say *that* a feature moved; this report is
what a person opens to see *how*: per-feature distributions, scores and the drift verdict.

The champion bundle carries no training rows, only the histograms of ``reference_stats.json``, so
the reference side is **reconstructed from those histograms**, deterministically: a sample of
:data:`REFERENCE_SAMPLE_SIZE` values in which each bin gets exactly its share of values
(largest-remainder rounding); a categorical feature repeats each category by its share. Inside a
numeric bin the values are spread evenly, with two refinements that follow from how the quantile
bins were built (``mloop.reference``), because spreading evenly alone made the training data
itself score as drifted (normed Wasserstein 0.07-0.2 against a threshold of 0.1):

* the open outer bins, bounded by the training min and max, get a density falling linearly towards
  the extreme (the extreme was seen once; most of the tail lies near the inner edge);
* a bin holding more than its nominal share (1/bins) owes the surplus to tied values at its upper
  edge, so the surplus is placed on that edge (an atom) instead of being smeared across the bin.

The reconstruction is exact at the bin level; within bins it is an assumption, so features with a
few heavy atoms (e.g. diabetes ``s4``) can still score near the threshold on training-like data.

The sample size is deliberately above 1000: Evidently then picks distance measures (normed
Wasserstein for numeric features, Jensen-Shannon for categorical ones) instead of p-value tests,
whose verdict would depend on the size of a sample we made up.

Used by the service's drift report (logged inputs) and the merge-request report (the new data).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

REFERENCE_SAMPLE_SIZE = 2000
# Share of drifted features at which the whole dataset counts as drifted (Evidently's default).
DRIFT_SHARE = 0.5


def _allocate(proportions: list[float], total: int) -> npt.NDArray[np.int64]:
    """Split ``total`` by proportions into integers that sum to it (largest remainder first)."""
    shares = np.asarray(proportions, dtype=float)
    shares = shares / shares.sum() * total
    counts = np.floor(shares).astype(np.int64)
    remainder = total - int(counts.sum())
    order = np.argsort(-(shares - counts), kind="stable")
    counts[order[:remainder]] += 1
    allocated: npt.NDArray[np.int64] = counts
    return allocated


def reference_sample(
    feature: dict[str, Any], size: int = REFERENCE_SAMPLE_SIZE, bins: int | None = None
) -> npt.NDArray[np.float64]:
    """Deterministic sample with the histogram of one feature of ``reference_stats.json``.

    ``bins`` is the number of quantile bins the histogram was built with (its nominal share per
    bin is ``1/bins``); see the module docstring for how values are placed inside each bin.
    """
    counts = _allocate(feature["proportions"], size)
    if feature["kind"] == "categorical":
        return np.repeat(np.asarray(feature["categories"], dtype=float), counts)
    bounds = np.array([feature["min"], *feature["bin_edges"], feature["max"]], dtype=float)
    bounds = np.maximum.accumulate(bounds)  # tolerate rounding: bounds never decrease
    last = len(counts) - 1
    nominal = size / (bins or len(counts))
    parts = []
    for index, (low, high, count) in enumerate(zip(bounds[:-1], bounds[1:], counts.tolist())):
        # A quantile bin holds more than its nominal share only through ties at its upper edge
        # (values equal to an edge count into the bin below it): put the surplus there.
        atom = max(0, round(count - nominal)) if index < last else 0
        spread = count - atom
        u = (np.arange(spread) + 0.5) / max(spread, 1)  # midpoints of equal slices of (0, 1)
        if index == 0 and index < last:
            # Open lower tail: density falling linearly from the inner edge to the minimum.
            values = high - (high - low) * (1 - np.sqrt(u))
        elif index == last and index > 0:
            values = low + (high - low) * (1 - np.sqrt(1 - u))  # the same for the upper tail
        else:
            values = low + (high - low) * u
        parts.extend([values, np.full(atom, high)])
    return np.concatenate(parts).astype(np.float64)


def reference_frame(
    reference: dict[str, Any], features: list[str], size: int = REFERENCE_SAMPLE_SIZE
) -> pd.DataFrame:
    """The reconstructed training sample of ``features`` (``reference``: reference_stats.json)."""
    bins = reference.get("bins")
    return pd.DataFrame(
        {name: reference_sample(reference["features"][name], size, bins) for name in features}
    )


def snap_to_categories(
    values: npt.NDArray[np.float64], categories: list[float]
) -> npt.NDArray[np.float64]:
    """Replace values within float noise of a training category by that category.

    Categories are compared by equality, but the training values went through a CSV on their way
    to ``reference_stats.json`` (0.0506801187398186 there, 0.05068011873981862 from scikit-learn):
    without this, every row of a perfectly stable feature would count as an unseen category.
    """
    snapped = values.copy()
    for category in categories:
        close = np.isclose(values, category, rtol=1e-9, atol=1e-12)
        snapped[close] = category
    return snapped


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def build_drift_report(
    current: pd.DataFrame,
    reference: dict[str, Any],
    features: list[str],
    html_path: Path | None = None,
) -> dict[str, Any]:
    """Run Evidently's DataDriftPreset on ``current`` vs the reconstructed training sample.

    ``reference`` is the content of the bundle's ``reference_stats.json``. Returns a JSON-ready
    summary; with ``html_path`` the full Evidently report is saved there too. Evidently is
    imported here, not at module level: it takes seconds to import and only this function uses it.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if current.empty:
        raise ValueError("no current rows: a drift report needs rows to compare")
    stats = reference.get("features", {})
    missing = [name for name in features if name not in current.columns]
    unknown = [name for name in features if name not in stats]
    if missing or unknown:
        raise ValueError(
            f"features missing from the current rows: {missing or 'none'}; "
            f"from the reference statistics: {unknown or 'none'}"
        )
    kinds = {name: str(stats[name]["kind"]) for name in features}
    definition = DataDefinition(
        numerical_columns=[name for name in features if kinds[name] == "numeric"],
        categorical_columns=[name for name in features if kinds[name] == "categorical"],
    )
    current_frame = current[features].apply(pd.to_numeric, errors="coerce").astype(float)
    for name in features:
        if kinds[name] == "categorical":
            current_frame[name] = snap_to_categories(
                current_frame[name].to_numpy(), list(stats[name]["categories"])
            )
    report = Report(
        [DataDriftPreset(columns=features, drift_share=DRIFT_SHARE)], include_tests=True
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(current_frame, data_definition=definition),
        reference_data=Dataset.from_pandas(
            reference_frame(reference, features), data_definition=definition
        ),
    )
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    return _summarise(snapshot.dict(), features, kinds, len(current_frame), reference)


def _summarise(
    result: dict[str, Any],
    features: list[str],
    kinds: dict[str, str],
    rows: int,
    reference: dict[str, Any],
) -> dict[str, Any]:
    """Per-feature score and verdict from the snapshot: the verdict is Evidently's own test result.

    Reading the test status (rather than comparing score and threshold here) keeps the verdict
    right whichever method Evidently chose: for p-value tests a *low* score means drift.
    """
    per_feature: dict[str, dict[str, Any]] = {}
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith(":ValueDrift") and config.get("column") in kinds:
            per_feature[config["column"]] = {
                "kind": kinds[config["column"]],
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "score": _finite(metric["value"]),
                "drifted": False,
            }
    for test in result.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        column = params.get("column")
        if str(params.get("type", "")).endswith(":ValueDrift") and column in per_feature:
            per_feature[column]["drifted"] = test.get("status") == "FAIL"
    absent = [name for name in features if name not in per_feature]
    if absent:
        raise RuntimeError(f"Evidently returned no drift result for {', '.join(absent)}")
    drifted = [name for name in features if per_feature[name]["drifted"]]
    share = len(drifted) / len(features) if features else 0.0
    return {
        "rows": rows,
        "reference": {
            "source": "reconstructed from the bundle's reference_stats.json histograms",
            "sample_size": REFERENCE_SAMPLE_SIZE,
            "training_rows": reference.get("rows"),
        },
        "features": {name: per_feature[name] for name in features},
        "drifted_features": drifted,
        "share_drifted": share,
        "drift_share_threshold": DRIFT_SHARE,
        "dataset_drift": share >= DRIFT_SHARE,
    }
