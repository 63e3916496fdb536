"""Fixtures of the data-validation suite: the repo's real params and schema, aimed at temp files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mloop.config import Config, load_config
from tests.helpers.paths import read_params


@pytest.fixture
def diabetes_rows(diabetes_frame: pd.DataFrame) -> pd.DataFrame:
    """A small valid frame (a fresh copy per test, so tests may corrupt it freely)."""
    return diabetes_frame.head(40).copy()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The repo's params.yaml, with the diabetes schema and every stage path under tmp_path."""
    raw = read_params()
    raw["paths"] = {key: str(tmp_path / value) for key, value in raw["paths"].items()}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    loaded = load_config(params_file)
    assert loaded.params.paths.raw_data == tmp_path / "data/raw/dataset.csv"
    assert loaded.params.paths.validation_report == tmp_path / "reports/validation.json"
    return loaded
