"""Reference statistics of the training data, and the drift score computed against them.

The pipeline writes them (prepare) and the service reads them (drift gauges), so the binning and the
score live in one place. Bins are quantiles of the training data: each holds a similar share of rows,
which keeps the population stability index (PSI) well-behaved for skewed features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mloop.config import DatasetSchema
from mloop.encoding import encoded_frame

# A bin the reference never saw would make PSI infinite; floor proportions at this share instead.
PSI_EPSILON = 1e-4
# Features with at most this many distinct values are treated as categorical (one bin per value).
MAX_CATEGORIES = 10
# Category codes are floats that pass through CSV and JSON text, which may drop the last digit
# (0.05068011873981862 -> 0.0506801187398186): match them with this relative tolerance.
CATEGORY_RTOL = 1e-9


def feature_reference(
    values: npt.NDArray[np.float64], bins: int, categories: list[str] | None = None
) -> dict[str, Any]:
    """Histogram of one feature: interior bin edges (open-ended outer bins) and the proportions of
    the present values, plus the share of missing ones (``missing``, NaN).

    ``categories``: the feature is a category column whose values are codes (positions in this
    list, see :mod:`mloop.encoding`): one bin per category, named in ``labels``, seen or not.
    """
    absent = np.isnan(values)
    missing = float(absent.mean()) if len(values) else 0.0
    values = values[~absent]
    distinct = np.unique(values)
    if categories is not None or len(distinct) <= MAX_CATEGORIES:
        if categories is not None:
            distinct = np.arange(len(categories), dtype=float)
        counts = np.array([(values == v).sum() for v in distinct], dtype=float)
        histogram: dict[str, Any] = {
            "kind": "categorical",
            "categories": distinct.tolist(),
            "proportions": (counts / max(counts.sum(), 1.0)).tolist(),
            "missing": missing,
        }
        if categories is not None:
            histogram["labels"] = list(categories)
        return histogram
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {
        "kind": "numeric",
        "bin_edges": edges.tolist(),
        "proportions": (counts / counts.sum()).tolist(),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "missing": missing,
    }


def compute_reference(frame: pd.DataFrame, schema: DatasetSchema, bins: int) -> dict[str, Any]:
    """The reference of every feature (on the model's input: category features as codes) and of
    the target."""
    encoded = encoded_frame(frame, schema)
    return {
        "rows": int(len(frame)),
        "bins": bins,
        "features": {
            name: feature_reference(
                encoded[name].to_numpy(dtype=float),
                bins,
                schema.columns[name].categories or None,
            )
            for name in schema.features
        },
        "target": feature_reference(frame[schema.target].to_numpy(dtype=float), bins),
    }


def bin_counts(reference: dict[str, Any], values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Count recent values into the reference's bins, missing values (NaN) in a last bin of their
    own.

    Categorical features get one more bin, before that, for values the training data never had:
    unseen categories are the strongest drift signal there is and must not vanish from the count.
    """
    absent = np.isnan(values)
    missing = int(absent.sum())
    values = values[~absent] if missing else values
    if reference["kind"] == "categorical":
        categories = np.asarray(reference["categories"], dtype=float)
        known = [np.isclose(values, c, rtol=CATEGORY_RTOL, atol=0.0).sum() for c in categories]
        unseen = len(values) - sum(known)
        return np.array([*known, unseen, missing], dtype=np.int64)
    edges = np.asarray(reference["bin_edges"], dtype=float)
    indices = np.searchsorted(edges, values, side="left")
    counts = np.bincount(indices, minlength=len(edges) + 1).astype(np.int64)
    return np.append(counts, missing)


def expected_shares(reference: dict[str, Any]) -> npt.NDArray[np.float64]:
    """The reference's share of every bin of :func:`bin_counts`, the missing-value bin included."""
    missing = float(reference.get("missing", 0.0))  # references from before it was recorded: 0
    present = np.asarray(reference["proportions"], dtype=float) * (1.0 - missing)
    if reference["kind"] == "categorical":
        present = np.append(present, 0.0)  # the unseen-category bin: never seen in training
    return np.append(present, missing)


def psi(reference: dict[str, Any], values: npt.NDArray[np.float64]) -> float:
    """Population stability index of recent values against the reference (0 = same distribution);
    a change in the share of missing values counts like a change in any bin.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
    """
    counts = bin_counts(reference, values).astype(float)
    if counts.sum() == 0:
        return 0.0
    actual = np.maximum(counts / counts.sum(), PSI_EPSILON)
    expected = np.maximum(expected_shares(reference), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
