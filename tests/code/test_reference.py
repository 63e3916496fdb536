"""mloop.reference: training histograms, and the PSI drift score computed against them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mloop.config import DatasetSchema
from mloop.reference import compute_reference, feature_reference, psi


@pytest.fixture(scope="module")
def normal_reference() -> dict:
    values = np.random.default_rng(0).normal(0.0, 1.0, size=20_000)
    return feature_reference(values, bins=10)


def test_diabetes_reference_proportions_sum_to_one(
    diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
):
    reference = compute_reference(diabetes_frame, diabetes_schema, bins=10)
    assert reference["rows"] == 442
    assert set(reference["features"]) == set(diabetes_schema.features)
    for name, histogram in [*reference["features"].items(), ("target", reference["target"])]:
        assert sum(histogram["proportions"]) == pytest.approx(1.0), name
        assert all(p >= 0 for p in histogram["proportions"]), name
    # sex takes two values: one bin per value; the others are continuous: quantile bins
    assert reference["features"]["sex"]["kind"] == "categorical"
    assert len(reference["features"]["sex"]["categories"]) == 2
    bmi = reference["features"]["bmi"]
    assert bmi["kind"] == "numeric"
    assert len(bmi["proportions"]) == len(bmi["bin_edges"]) + 1 == 10
    assert bmi["min"] == pytest.approx(diabetes_frame["bmi"].min())
    assert bmi["max"] == pytest.approx(diabetes_frame["bmi"].max())


def test_quantile_bins_hold_similar_shares(normal_reference: dict):
    assert normal_reference["kind"] == "numeric"
    assert normal_reference["proportions"] == pytest.approx([0.1] * 10, abs=0.002)
    assert normal_reference["bin_edges"] == sorted(normal_reference["bin_edges"])


def test_psi_is_zero_on_the_training_data_itself(
    diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
):
    reference = compute_reference(diabetes_frame, diabetes_schema, bins=10)
    for name in diabetes_schema.features:
        values = diabetes_frame[name].to_numpy(dtype=float)
        assert psi(reference["features"][name], values) == pytest.approx(0.0, abs=1e-9), name


def test_psi_is_near_zero_for_a_fresh_sample_of_the_same_distribution(normal_reference: dict):
    fresh = np.random.default_rng(1).normal(0.0, 1.0, size=5_000)
    assert psi(normal_reference, fresh) < 0.02


@pytest.mark.parametrize(("shift", "at_least"), [(0.5, 0.1), (1.0, 0.25), (3.0, 2.0)])
def test_psi_grows_with_the_shift(normal_reference: dict, shift: float, at_least: float):
    shifted = np.random.default_rng(2).normal(shift, 1.0, size=5_000)
    assert psi(normal_reference, shifted) > at_least


def test_values_beyond_the_training_range_fall_in_the_outer_bins(normal_reference: dict):
    far = np.full(1_000, 50.0)
    # every row in the last bin (share 0.1 in training): PSI = (1 - 0.1) * ln(1 / 0.1) + the rest
    assert psi(normal_reference, far) > 2.0


def test_categorical_psi_detects_a_changed_mix():
    reference = feature_reference(np.array([0.0] * 50 + [1.0] * 50), bins=10)
    assert reference == {
        "kind": "categorical", "categories": [0.0, 1.0], "proportions": [0.5, 0.5], "missing": 0.0
    }  # fmt: skip
    assert psi(reference, np.array([0.0] * 500 + [1.0] * 500)) == pytest.approx(0.0)
    assert psi(reference, np.array([0.0] * 900 + [1.0] * 100)) > 0.25


def test_psi_of_no_values_is_zero(normal_reference: dict):
    assert psi(normal_reference, np.array([], dtype=float)) == 0.0


def test_psi_flags_categories_never_seen_in_training():
    reference = feature_reference(np.array([0.0] * 50 + [1.0] * 50), bins=10)
    assert psi(reference, np.full(100, 2.0)) > 0.25


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_missing_values_are_counted_in_the_reference_and_the_drift(kind: str):
    rng = np.random.default_rng(3)
    values = rng.normal(size=1000) if kind == "numeric" else rng.integers(0, 3, 1000).astype(float)
    values[:100] = np.nan  # 10% missing in training
    reference = feature_reference(values, bins=10)
    assert reference["kind"] == kind and reference["missing"] == pytest.approx(0.1)
    assert sum(reference["proportions"]) == pytest.approx(1.0), "shares of the present values"
    json.dumps(reference, allow_nan=False)  # no NaN reaches the JSON file
    same = values.copy()
    assert psi(reference, same) == pytest.approx(0.0, abs=1e-3)
    now_missing = values.copy()
    now_missing[:500] = np.nan  # half the inputs arrive without this feature
    assert psi(reference, now_missing) > 0.25
    reference_without = dict(reference)
    del reference_without["missing"]  # a bundle from before: no missing share recorded
    assert psi(reference_without, values[100:]) == pytest.approx(0.0, abs=1e-3)
