"""Other datasets through the same pipeline, by configuration only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes

from mloop.bundle import load_bundle
from tests.e2e.conftest import dvc_repro, run, set_params
from tests.helpers.paths import WINE_RED_SCHEMA
from tests.helpers.servers import start_server, stop_server

pytestmark = pytest.mark.slow


def test_classification_dataset_runs_by_configuration_only(
    make_repo: Callable[[str], Path],
) -> None:
    repo = make_repo("breast_cancer")
    set_params(repo, dataset="datasets/breast_cancer.yaml")
    dvc_repro(repo)
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["task"] == "classification"
    for values in metrics["candidates"].values():
        assert set(values) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    report = json.loads((repo / "reports/promotion.json").read_text())
    assert report["metric"] == "roc_auc" and report["decision"] == "promoted"
    for name in metrics["candidates"]:
        assert (repo / "reports/plots/confusion" / f"{name}.csv").is_file()
    bundle = load_bundle(repo / "models/champion")
    assert bundle.meta["task"] == "classification"
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    labels = bundle.predictor.predict(test[bundle.features].to_numpy())
    assert set(np.unique(labels)) <= {0, 1}
    assert report["challenger"]["metrics"]["roc_auc"] > 0.95


def test_a_three_class_dataset_gets_macro_metrics_and_one_roc_curve_per_class(
    make_repo: Callable[[str], Path],
) -> None:
    repo = make_repo("iris")
    set_params(repo, dataset="datasets/iris.yaml")
    dvc_repro(repo)
    metrics = json.loads((repo / "reports/metrics.json").read_text())["candidates"]
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    for name, values in metrics.items():
        assert 0 <= values["f1"] <= 1 and 0 <= values["roc_auc"] <= 1
        curves = sorted(p.name for p in (repo / "reports/plots/roc").glob(f"{name}-class-*.csv"))
        present = sorted(set(test["target"]))
        assert curves == [f"{name}-class-{label}.csv" for label in present], name
    made = run(repo, "make", "plots", "STAMP=")
    assert "failed to load" not in (made.stdout + made.stderr).lower(), made.stderr
    bundle = load_bundle(repo / "models/champion")
    assert bundle.classes == [0, 1, 2]


def wine_like_csv(path: Path, rows: int = 360, seed: int = 7) -> None:
    """A CSV in the UCI wine format (semicolon, quoted header) with plausible values and duplicates."""
    rng = np.random.default_rng(seed)
    schema = yaml.safe_load(WINE_RED_SCHEMA.read_text())
    columns = {}
    for name, spec in schema["columns"].items():
        low, high = spec["min"], spec["max"]
        span = high - low
        columns[name] = rng.uniform(low + 0.2 * span, low + 0.5 * span, rows).round(4)
    frame = pd.DataFrame(columns)
    frame["quality"] = np.clip(
        np.round(3 + 4 * (frame["alcohol"] - 8.8) / 4 - frame["volatile acidity"]), 0, 10
    ).astype(int)
    frame = pd.concat(
        [frame, frame.iloc[:40]], ignore_index=True
    )  # exact duplicates, as in UCI data
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=";", index=False, quoting=1 if False else 0)


def test_a_source_edited_in_place_is_ingested_again(make_repo: Callable[[str], Path]) -> None:
    """A path source, unpinned, inside the repo: DVC cannot name it, the fingerprint stage sees it."""
    repo = make_repo("edited")
    source = repo / "data/external/diabetes.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    frame = load_diabetes(as_frame=True).frame
    frame.to_csv(source, index=False)
    schema_path = repo / "datasets/diabetes.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["source"] = {"kind": "path", "path": "data/external/diabetes.csv"}
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    set_params(repo, train__candidates__keras_mlp__enabled=False)
    dvc_repro(repo)
    rows = len(pd.read_csv(repo / "data/raw/dataset.csv"))

    frame.head(400).to_csv(source, index=False)  # edited in place: 42 rows fewer
    again = dvc_repro(repo)
    assert "Running stage 'ingest'" in again.stdout
    assert "source changed since the last ingest" in again.stderr
    assert len(pd.read_csv(repo / "data/raw/dataset.csv")) == rows - 42 == 400
    unchanged = dvc_repro(repo)
    assert "Running stage 'ingest'" not in unchanged.stdout


def test_wine_configuration_on_a_generated_csv(make_repo: Callable[[str], Path]) -> None:
    repo = make_repo("wine")
    sample = repo / "data/external/winequality-red-sample.csv"
    wine_like_csv(sample)
    schema_path = repo / "datasets/wine_red.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    # only the source moves: columns, dtypes, ranges and target are the shipped wine configuration
    schema["source"]["path"] = str(sample)
    schema["source"]["sha256"] = hashlib.sha256(sample.read_bytes()).hexdigest()
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    set_params(repo, dataset="datasets/wine_red.yaml")
    dvc_repro(repo)

    bundle = load_bundle(repo / "models/champion")
    assert bundle.meta["registered_model"] == "mloop-wine-red"
    assert bundle.features == [c for c in schema["columns"] if c != "quality"]
    reference = json.loads((repo / "data/prepared/reference_stats.json").read_text())
    assert reference["split"]["strategy"] == "group_duplicates"
    train = pd.read_parquet(repo / "data/prepared/train.parquet")
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    key = list(bundle.features)
    shared = train[key].merge(test[key].drop_duplicates(), how="inner")
    assert shared.empty, "an identical input sits on both sides of the split"

    # The retrain loop: labelled production rows dropped in data/feedback/ are learnt on next repro.
    source_rows = json.loads((repo / "data/raw/manifest.json").read_text())["rows"]
    feedback = pd.read_csv(sample, sep=";").sample(25, random_state=1)
    feedback["prediction_id"] = range(len(feedback))  # export columns beyond the schema are dropped
    feedback.to_parquet(repo / "data/feedback/export-0001.parquet", index=False)
    again = dvc_repro(repo)
    assert "Running stage 'ingest'" in again.stdout
    manifest = json.loads((repo / "data/raw/manifest.json").read_text())
    assert manifest["extra_rows"] == 25 and manifest["rows"] == source_rows + 25
    assert len(pd.read_csv(repo / "data/raw/dataset.csv")) == source_rows + 25


def test_missing_values_are_learnt_served_and_counted(
    make_repo: Callable[[str], Path], tmp_path: Path
) -> None:
    """Nullable features: every candidate takes NaN, the reference counts it, the service takes null."""
    repo = make_repo("missing")
    frame = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(11)
    for column in ("bmi", "bp"):
        frame.loc[rng.random(len(frame)) < 0.12, column] = np.nan
    source = repo / "data/external/diabetes-missing.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(source, index=False)
    schema_path = repo / "datasets/diabetes.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["source"] = {"kind": "path", "path": "data/external/diabetes-missing.csv"}
    for column in ("bmi", "bp"):
        schema["columns"][column]["nullable"] = True
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    dvc_repro(repo)

    metrics = json.loads((repo / "reports/metrics.json").read_text())["candidates"]
    assert len(metrics) == 6 and all(np.isfinite(m["rmse"]) for m in metrics.values())
    reference = json.loads((repo / "data/prepared/reference_stats.json").read_text())
    assert 0.05 < reference["features"]["bmi"]["missing"] < 0.2
    assert reference["features"]["age"]["missing"] == 0.0
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    assert test["bmi"].isna().any()
    for name in metrics:  # every candidate, as served, predicts rows with missing values
        from mloop.models.store import load_predictor

        served = load_predictor(repo / "models/candidates" / name)
        assert np.isfinite(served.predict(test[FEATURES].to_numpy())).all(), name

    server = start_server(tmp_path, repo / "models/champion")
    try:
        with server.client() as client:
            row = {name: float(test[name].iloc[0]) for name in FEATURES}
            row["bmi"] = None
            answered = client.post("/predict", json=row)
            row["age"] = None
            refused = client.post("/predict", json=row)
    finally:
        stop_server(server)
    assert answered.status_code == 200 and np.isfinite(answered.json()["prediction"])
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "age"]


FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
