"""The promotion gate through the real pipeline (DVC, MLflow): no leaked rows, the right champion on
disk after a dataset switch, one registry version per run, the rule for too few rows."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mloop.bundle import load_bundle
from tests.e2e.conftest import dvc_repro, run, set_params

pytestmark = pytest.mark.slow
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def configure(repo: Path, enabled: list[str], **split: Any) -> None:
    """Fast candidates only: a memorising 3-tree forest, a 200-tree forest, a linear model."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train"]["candidates"] = {
        "memorizer": {"kind": "extra_trees", "regression": {"n_estimators": 3, "max_features": 1.0},
                      "classification": {"n_estimators": 3}},
        "forest": {"kind": "extra_trees", "regression": {"n_estimators": 200, "max_features": 0.5},
                   "classification": {"n_estimators": 50}},
        "linear": {"kind": "linear", "regression": {"alpha": 0.01}, "classification": {}},
    }  # fmt: skip
    for name, spec in params["train"]["candidates"].items():
        spec["enabled"] = name in enabled
    params["split"].update(split)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def report(repo: Path) -> dict[str, Any]:
    return dict(json.loads((repo / "reports/promotion.json").read_text()))


def registry_versions(repo: Path, name: str) -> list[tuple[str, str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    found = client.search_model_versions(f"name='{name}'")
    return sorted((str(v.version), str(v.run_id)) for v in found)


def alias(repo: Path, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(name, "champion").version)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def test_a_split_change_is_judged_on_rows_neither_model_trained_on(
    make_repo: Callable[[str], Path], tmp_path: Path
) -> None:
    repo = make_repo("gate-leak")
    # v1: a 3-tree forest that memorises its training rows, on one random half of the data
    configure(repo, ["memorizer"], strategy="random", seed=1, test_size=0.5)
    dvc_repro(repo)
    first_train = pd.read_parquet(repo / "data/prepared/train.parquet")
    shutil.copytree(repo / "models/champion", tmp_path / "v1")
    # the split changes: half of today's test rows are rows the champion trained on
    configure(repo, ["forest"], strategy="random", seed=2, test_size=0.5)
    dvc_repro(repo)

    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    train = pd.read_parquet(repo / "data/prepared/train.parquet")
    seen = pd.concat([first_train, train])[FEATURES].drop_duplicates()
    flags = test[FEATURES].merge(seen.assign(seen=True), on=FEATURES, how="left")["seen"]
    unseen = test[flags.isna().to_numpy()]
    champion = load_bundle(tmp_path / "v1").predictor
    challenger = load_bundle(repo / "models/champion").predictor

    done = report(repo)
    assert done["decision"] == "promoted", done["reason"]
    compared = done["comparison"]
    assert compared["rows"] == len(unseen) and 30 <= len(unseen) < len(test)
    assert compared["seen_by_champion"] == len(test) - len(unseen)
    assert compared["champion"]["rmse"] == pytest.approx(
        rmse(champion.predict(unseen[FEATURES].to_numpy()), unseen["target"].to_numpy()), abs=1e-5
    )
    # On every test row the memorising champion looks better (it knows half the answers): a
    # gate scoring both on the whole split would have kept it. On the rows neither saw, it loses.
    everything = test[FEATURES].to_numpy(), test["target"].to_numpy()
    assert rmse(champion.predict(everything[0]), everything[1]) < rmse(
        challenger.predict(everything[0]), everything[1]
    )
    assert compared["challenger"]["rmse"] < compared["champion"]["rmse"]
    assert done["decision"] == "promoted" and "test rows neither model trained on" in done["reason"]
    assert load_bundle(repo / "models/champion").version == alias(repo, "mloop-diabetes") == "2"

    # Too few unseen rows (another split, a challenger that would win): the documented rule,
    # never the leaked rows
    configure(repo, ["forest"], strategy="random", seed=4, test_size=0.5)
    set_params(repo, promote__min_compared_rows=len(test) + 1)
    kept = dvc_repro(repo)
    assert "champion kept" in kept.stderr and report(repo)["decision"] == "kept_champion"
    assert "promote.too_few_rows: keep" in report(repo)["reason"]
    assert load_bundle(repo / "models/champion").version == alias(repo, "mloop-diabetes") == "2"
    versions = registry_versions(repo, "mloop-diabetes")
    set_params(repo, promote__too_few_rows="fail")
    failed = run(repo, sys.executable, "-m", "mloop.promote", check=False)
    assert failed.returncode != 0 and "no fair comparison" in failed.stderr
    assert registry_versions(repo, "mloop-diabetes") == versions, "one version per training run"


def test_the_champion_on_disk_follows_the_registry_across_dataset_switches(
    make_repo: Callable[[str], Path],
) -> None:
    repo = make_repo("gate-switch")
    configure(repo, ["forest", "linear"], strategy="random", seed=3, test_size=0.25)
    dvc_repro(repo)
    diabetes = alias(repo, "mloop-diabetes")
    set_params(repo, dataset="datasets/iris.yaml")
    dvc_repro(repo)
    assert load_bundle(repo / "models/champion").meta["registered_model"] == "mloop-iris"
    # back to diabetes with a weaker candidate only: the diabetes champion is kept, and its
    # bundle, not the iris one, is what models/champion holds afterwards
    set_params(repo, dataset="datasets/diabetes.yaml")
    configure(repo, ["memorizer"], strategy="random", seed=3, test_size=0.25)
    dvc_repro(repo)
    done = report(repo)
    assert done["decision"] == "kept_champion", done["reason"]
    bundle = load_bundle(repo / "models/champion")
    assert (bundle.meta["registered_model"], bundle.version) == ("mloop-diabetes", diabetes)
    assert bundle.meta["task"] == "regression" and bundle.features == FEATURES
    assert done["champion_dir"] == "restored from the registry"

    # promote again with nothing changed: no new version, the same decision
    versions = registry_versions(repo, "mloop-diabetes")
    run(repo, sys.executable, "-m", "mloop.promote")
    assert registry_versions(repo, "mloop-diabetes") == versions
    assert report(repo)["challenger"]["newly_registered"] is False
