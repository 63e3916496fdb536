"""Where the tests find the repo: its root, params.yaml and the shipped dataset schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"
DATASETS = REPO / "datasets"
SHIPPED_SCHEMAS = sorted(DATASETS.glob("*.yaml"))  # every shipped dataset configuration
DIABETES_SCHEMA = DATASETS / "diabetes.yaml"  # the default dataset of params.yaml
IRIS_SCHEMA = DATASETS / "iris.yaml"
BREAST_CANCER_SCHEMA = DATASETS / "breast_cancer.yaml"
WINE_RED_SCHEMA = DATASETS / "wine_red.yaml"
TIPS_SCHEMA = DATASETS / "tips.yaml"


def read_params(dataset: Path = DIABETES_SCHEMA) -> dict[str, Any]:
    """The repo's params.yaml as a dict, its ``dataset`` an absolute path (valid in any folder)."""
    raw: dict[str, Any] = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    raw["dataset"] = str(dataset)
    return raw
