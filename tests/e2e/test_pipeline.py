"""End to end: `dvc repro` in a fresh copy of the repo, checked through its real outputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mloop.bundle import load_bundle
from tests.e2e.conftest import dvc, dvc_repro, run, use_remote

pytestmark = pytest.mark.slow
CANDIDATES = ["baseline", "elasticnet", "random_forest", "extra_trees", "hist_gb", "keras_mlp"]
DefaultRun = tuple[Path, subprocess.CompletedProcess[str]]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def registry_champion(repo: Path, model_name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(model_name, "champion").version)


def test_default_run_promotes_a_consistent_champion(default_run: DefaultRun) -> None:
    repo, result = default_run
    assert "promoted" in result.stderr
    report = read_json(repo / "reports/promotion.json")
    assert report["decision"] == "promoted" and report["champion_before"] is None

    metrics = read_json(repo / "reports/metrics.json")
    assert sorted(metrics["candidates"]) == sorted(CANDIDATES)
    for values in metrics["candidates"].values():
        assert set(values) == {"rmse", "mae", "r2"}

    bundle = load_bundle(repo / "models/champion")
    assert bundle.meta["candidate"] == report["challenger"]["name"]
    assert bundle.meta["metrics"] == metrics["candidates"][bundle.meta["candidate"]]
    assert bundle.version == registry_champion(repo, "mloop-diabetes")
    # the best eligible candidate by RMSE won
    latency = read_json(repo / "reports/latency.json")["candidates"]
    eligible = [n for n in CANDIDATES if latency[n]["p50_ms"] <= 5.0]
    best = min(eligible, key=lambda n: metrics["candidates"][n]["rmse"])
    assert bundle.meta["candidate"] == best
    # batch speed, measured both ways where there are two, decides what serves large batches
    for name in CANDIDATES:
        assert latency[name]["batch_ms_per_1k"] > 0
        assert ("native_batch_ms_per_1k" in latency[name]) == (latency[name]["serving"] == "onnx")
    champion_latency = bundle.meta["latency"]
    native_faster = 1.25 * champion_latency.get("native_batch_ms_per_1k", float("inf")) <= (
        champion_latency["batch_ms_per_1k"]
    )  # params.yaml: evaluate.native_batch_speedup
    assert champion_latency["batch_serving"] == (
        "native" if native_faster else bundle.meta["serving"]
    )
    native_faster = native_faster and bundle.meta["flavor"] == "sklearn"
    assert bundle.batch_serving == ("native" if native_faster else bundle.meta["serving"])

    # lineage: the bundle names the commit and the DVC hash of the raw data
    head = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert bundle.meta["git_commit"] == head
    # the run rewrote dvc.lock and its git-tracked reports before train looked: still clean
    assert bundle.meta["git_dirty"] is False
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    raw_out = next(
        o for o in lock["stages"]["ingest"]["outs"] if o["path"] == "data/raw/dataset.csv"
    )
    assert bundle.meta["data_md5"] == raw_out["md5"]
    # the bundle's model reproduces the evaluated metric on the test split
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    predictions = bundle.predictor.predict(test[bundle.features].to_numpy())
    rmse = float(np.sqrt(np.mean((predictions - test["target"].to_numpy()) ** 2)))
    assert rmse == pytest.approx(bundle.meta["metrics"]["rmse"], rel=1e-5)


def test_every_candidate_is_an_mlflow_run_with_lineage(default_run: DefaultRun) -> None:
    import mlflow

    repo, _ = default_run
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mloop-diabetes"])
    assert sorted(runs["tags.mloop.candidate"]) == sorted(CANDIDATES)
    head = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert set(runs["tags.mloop.git_commit"]) == {head}
    assert runs["tags.mloop.data_md5"].nunique() == 1
    assert runs["metrics.test_rmse"].notna().all()
    assert runs["params.split.strategy"].eq("group_duplicates").all()
    keras = runs[runs["tags.mloop.candidate"] == "keras_mlp"].iloc[0]
    history = mlflow.tracking.MlflowClient().get_metric_history(keras["run_id"], "val_loss")
    assert len(history) >= 2  # one point per epoch


def test_logged_models_take_named_columns_without_warnings(default_run: DefaultRun) -> None:
    """What `mlflow models serve` runs: the pyfunc of every logged scikit-learn candidate, given
    a DataFrame in signature order, predicts exactly what the candidate predicts on the array,
    without scikit-learn's per-call "fitted without feature names" warning."""
    import warnings

    import mlflow

    from mloop.models.store import load_native

    repo, _ = default_run
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    manifest = read_json(repo / "models/candidates/manifest.json")["candidates"]
    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    features = load_bundle(repo / "models/champion").features
    checked = []
    for name, entry in manifest.items():
        if entry["flavor"] != "sklearn":
            continue
        pyfunc = mlflow.pyfunc.load_model(entry["model_uri"])
        expected = load_native(repo / "models/candidates" / name).predict(
            test[features].to_numpy(dtype=float)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            served = np.asarray(pyfunc.predict(test[features]))
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9, err_msg=name)
        checked.append(name)
    assert sorted(checked) == sorted(n for n in CANDIDATES if n != "keras_mlp")


def test_plots_are_written_and_readable_by_dvc(default_run: DefaultRun) -> None:
    repo, _ = default_run
    for kind in ("predictions", "residuals", "importance"):
        for name in CANDIDATES:
            frame = pd.read_csv(repo / "reports/plots" / kind / f"{name}.csv")
            assert len(frame) > 0, (kind, name)
    curves = pd.read_csv(repo / "reports/training/keras_mlp.csv")
    assert {"epoch", "loss", "val_loss"} <= set(curves.columns)
    shown = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    rendered = {key for key, value in shown["data"].items() if value}
    for name in CANDIDATES:
        assert f"reports/plots/predictions/{name}.csv" in rendered
        assert f"reports/plots/importance/{name}.csv" in rendered
    assert "reports/training/keras_mlp.csv" in rendered
    # only the classification plots are missing on a regression task
    assert {e["source"] for e in shown.get("errors", [])} <= {
        "reports/plots/confusion",
        "reports/plots/roc",
    }
    # `make plots` asks only for the plots this run wrote: no warning, a page
    made = run(repo, "make", "plots", "STAMP=")
    assert "failed to load" not in (made.stdout + made.stderr).lower(), made.stderr
    assert (repo / "reports/plots-html/index.html").is_file()


def test_second_repro_does_no_work(default_run: DefaultRun) -> None:
    """Only the source is read again (the fingerprint stage); nothing else runs."""
    repo, _ = default_run
    again = dvc_repro(repo)
    ran = [line for line in again.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'fingerprint':"], ran
    status = dvc(repo, "status").stdout
    assert "changed outs" not in status and "changed deps" not in status, status


def test_pipeline_is_deterministic(
    default_run: DefaultRun, make_repo: Callable[[str], Path]
) -> None:
    first, _ = default_run
    second = make_repo("second")
    dvc_repro(second)
    assert read_json(second / "reports/metrics.json") == read_json(first / "reports/metrics.json")
    assert (second / "data/prepared/reference_stats.json").read_text() == (
        first / "data/prepared/reference_stats.json"
    ).read_text()


def test_dvc_push_pull_round_trip(default_run: DefaultRun, tmp_path: Path) -> None:
    repo, _ = default_run
    clone = tmp_path / "clone"
    remote = repo.parent / f"{repo.name}-remote"
    dvc(repo, "push")
    assert any(remote.rglob("*")), "nothing reached the remote"
    # a new clone: git-tracked files only, an empty DVC cache, the same remote
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("cache", "tmp"))
    for generated in ("data/raw/dataset.csv", "data/prepared", "models", "mlflow.db", "mlruns"):
        target = clone / generated
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    use_remote(clone, remote)
    dvc(clone, "pull")
    for path in (
        "data/raw/dataset.csv",
        "data/prepared/train.parquet",
        "models/champion/bundle.json",
    ):
        original, pulled = (repo / path).read_bytes(), (clone / path).read_bytes()
        assert hashlib.sha256(original).digest() == hashlib.sha256(pulled).digest(), path
    assert (
        load_bundle(clone / "models/champion").version
        == load_bundle(repo / "models/champion").version
    )


def test_worse_candidate_is_never_promoted(default_run: DefaultRun, tmp_path: Path) -> None:
    """Labels shuffled, so every candidate is worse than the champion.

    Works on a copy: the default run is shared, and later modules (the report) read its promotion.
    """
    repo = tmp_path / "worse"
    shutil.copytree(default_run[0], repo, symlinks=True)
    champion_before = (repo / "models/champion/bundle.json").read_bytes()
    version_before = registry_champion(repo, "mloop-diabetes")
    train_path = repo / "data/prepared/train.parquet"
    train = pd.read_parquet(train_path)
    train["target"] = np.random.default_rng(0).permutation(train["target"].to_numpy())
    train_path.unlink()  # DVC hard/sym-links cached files: never write through the link
    train.to_parquet(train_path, index=False)

    for module in ("mloop.train", "mloop.evaluate"):
        run(repo, sys.executable, "-m", module)
    kept = run(repo, sys.executable, "-m", "mloop.promote")
    assert "champion kept" in kept.stderr
    report = read_json(repo / "reports/promotion.json")
    assert report["decision"] == "kept_champion"
    compared = report["comparison"]
    assert compared["challenger"]["rmse"] > compared["champion"]["rmse"]
    assert compared["rows"] == compared["test_rows"], "the champion saw no test row: all compared"
    assert not report["challenger"]["newly_registered"] or report["challenger"]["version"]
    assert (repo / "models/champion/bundle.json").read_bytes() == champion_before
    assert registry_champion(repo, "mloop-diabetes") == version_before

    gate = run(repo, sys.executable, "-m", "mloop.promote", "--fail-if-not-promoted", check=False)
    assert gate.returncode == 1 and "champion kept" in gate.stderr
    assert registry_champion(repo, "mloop-diabetes") == version_before
    again = read_json(repo / "reports/promotion.json")["challenger"]
    assert again["version"] == report["challenger"]["version"] and not again["newly_registered"]
