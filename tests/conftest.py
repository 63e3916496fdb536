"""Fixtures shared by every test folder: the bundled diabetes data and its schema.

Helpers (paths, bundles, ports, servers) are in ``tests/helpers``."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from mloop.config import DatasetSchema, load_schema
from tests.helpers.paths import DIABETES_SCHEMA


@pytest.fixture(scope="session")
def diabetes_schema() -> DatasetSchema:
    return load_schema(DIABETES_SCHEMA)


@pytest.fixture(scope="session")
def diabetes_frame() -> pd.DataFrame:
    frame: pd.DataFrame = load_diabetes(as_frame=True).frame
    return frame
