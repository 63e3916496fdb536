"""Any subset of the candidates runs through the pipeline: each candidate alone, here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import dvc_repro
from tests.helpers.paths import PARAMS

pytestmark = pytest.mark.slow
CANDIDATES = list(yaml.safe_load(PARAMS.read_text())["train"]["candidates"])


@pytest.fixture(scope="module")
def repo(make_repo: Callable[[str], Path]) -> Path:
    return make_repo("subsets")


@pytest.mark.parametrize("alone", CANDIDATES)
def test_each_candidate_alone_runs_every_stage(repo: Path, alone: str) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for name, spec in params["train"]["candidates"].items():
        spec["enabled"] = name == alone
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_repro(repo)
    metrics = json.loads((repo / "reports/metrics.json").read_text())["candidates"]
    assert list(metrics) == [alone]
    report = json.loads((repo / "reports/promotion.json").read_text())
    assert report["challenger"]["name"] == alone
    assert (repo / "reports/training").is_dir()
