"""Shared fixtures of the unit tests: the repo's diabetes schema and data, and a fitted model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from mloop.config import DatasetSchema
from mloop.models.sklearn_models import build_sklearn


@pytest.fixture(scope="session")
def diabetes_xy(
    diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
) -> tuple[np.ndarray, np.ndarray]:
    X = diabetes_frame[diabetes_schema.features].to_numpy(dtype=float)
    y = diabetes_frame[diabetes_schema.target].to_numpy(dtype=float)
    return X, y


@pytest.fixture(scope="session")
def elasticnet(diabetes_xy: tuple[np.ndarray, np.ndarray]) -> Pipeline:
    """The params.yaml ElasticNet candidate (scaler + ElasticNet), fitted on the diabetes data."""
    X, y = diabetes_xy
    hyperparameters: dict[str, Any] = {"alpha": 0.01, "l1_ratio": 0.5, "max_iter": 10000}
    return build_sklearn("linear", "regression", hyperparameters, seed=0).fit(X, y)
