"""mloop.prepare.split_indices: seeded random splits, and no input vector on both sides."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mloop.config import DatasetSchema, SplitParams, load_schema
from mloop.prepare import split_indices
from tests.helpers.paths import BREAST_CANCER_SCHEMA


def params(strategy: str, seed: int = 42, test_size: float = 0.25) -> SplitParams:
    return SplitParams(strategy=strategy, test_size=test_size, seed=seed, stratify=True)


@pytest.fixture(scope="module")
def with_duplicates(diabetes_frame: pd.DataFrame) -> pd.DataFrame:
    """60 distinct patients, each recorded 1-4 times with different targets, rows shuffled."""
    rng = np.random.default_rng(0)
    base = diabetes_frame.head(60)
    repeats = rng.integers(1, 5, size=len(base))
    frame = base.loc[base.index.repeat(repeats)].reset_index(drop=True)
    frame["target"] = rng.uniform(25, 346, size=len(frame)).round()
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def feature_keys(frame: pd.DataFrame, schema: DatasetSchema, rows: np.ndarray) -> set[tuple]:
    return set(map(tuple, frame.iloc[rows][schema.features].to_numpy()))


def assert_partition(train: np.ndarray, test: np.ndarray, n_rows: int) -> None:
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert len(np.intersect1d(train, test)) == 0
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(n_rows))


@pytest.mark.parametrize("seed", [0, 1, 42, 1234])
def test_group_duplicates_never_puts_one_input_on_both_sides(
    with_duplicates: pd.DataFrame, diabetes_schema: DatasetSchema, seed: int
):
    train, test = split_indices(with_duplicates, diabetes_schema, params("group_duplicates", seed))
    assert_partition(train, test, len(with_duplicates))
    assert len(test) > 0
    shared = feature_keys(with_duplicates, diabetes_schema, train) & feature_keys(
        with_duplicates, diabetes_schema, test
    )
    assert shared == set()


def test_random_split_does_leak_duplicates_on_this_frame(
    with_duplicates: pd.DataFrame, diabetes_schema: DatasetSchema
):
    """The counterpart that shows the frame above really exercises the grouping."""
    train, test = split_indices(with_duplicates, diabetes_schema, params("random"))
    assert_partition(train, test, len(with_duplicates))
    assert feature_keys(with_duplicates, diabetes_schema, train) & feature_keys(
        with_duplicates, diabetes_schema, test
    )


def test_group_duplicates_only_moves_test_rows_into_train(
    with_duplicates: pd.DataFrame, diabetes_schema: DatasetSchema
):
    random_train, random_test = split_indices(with_duplicates, diabetes_schema, params("random"))
    train, test = split_indices(with_duplicates, diabetes_schema, params("group_duplicates"))
    assert set(test) <= set(random_test)
    assert set(random_train) <= set(train)


def test_random_split_is_seeded_and_reproducible(
    diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
):
    first = split_indices(diabetes_frame, diabetes_schema, params("random", seed=7))
    second = split_indices(diabetes_frame, diabetes_schema, params("random", seed=7))
    other = split_indices(diabetes_frame, diabetes_schema, params("random", seed=8))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert set(first[1]) != set(other[1])
    assert_partition(*first, len(diabetes_frame))
    assert len(first[1]) == int(np.ceil(0.25 * len(diabetes_frame)))


def test_without_duplicates_both_strategies_agree(
    diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
):
    assert not diabetes_frame[diabetes_schema.features].duplicated().any()
    random = split_indices(diabetes_frame, diabetes_schema, params("random"))
    grouped = split_indices(diabetes_frame, diabetes_schema, params("group_duplicates"))
    np.testing.assert_array_equal(random[0], grouped[0])
    np.testing.assert_array_equal(random[1], grouped[1])


def test_classification_split_is_stratified():
    schema = load_schema(BREAST_CANCER_SCHEMA)
    frame = load_breast_cancer(as_frame=True).frame
    train, test = split_indices(frame, schema, params("random", test_size=0.3))
    overall = frame["target"].mean()
    assert frame["target"].iloc[train].mean() == pytest.approx(overall, abs=0.005)
    assert frame["target"].iloc[test].mean() == pytest.approx(overall, abs=0.005)
