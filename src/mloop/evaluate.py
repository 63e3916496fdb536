"""Stage 5 - evaluate: score every candidate as it would be served, on the held-out split.

Quality metrics go to ``metrics.json`` and are deterministic; single-row latency goes to its own file
because timings differ from run to run and must not make two identical pipelines look different.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import typer
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_curve

from mloop.config import DEFAULT_PARAMS, Config, load_config
from mloop.console import console, stage
from mloop.encoding import feature_matrix
from mloop.errors import StageError
from mloop.fileio import read_json, write_json
from mloop.metrics import round_metrics, score
from mloop.models.store import MANIFEST, load_native, load_predictor, single_threaded
from mloop.tracking import configure
from mloop.schema_checks import read_typed

IMPORTANCE_SCORING = {"regression": "neg_root_mean_squared_error", "classification": "accuracy"}


def single_row_latency(
    model: Any, row: npt.NDArray[Any], warmup: int, repeats: int
) -> dict[str, float]:
    """Wall time of one in-process ``predict`` on one row, in milliseconds (median and tail)."""
    for _ in range(warmup):
        model.predict(row)
    timings = np.empty(repeats)
    for i in range(repeats):
        started = time.perf_counter()
        model.predict(row)
        timings[i] = time.perf_counter() - started
    timings *= 1000.0
    return {
        "p50_ms": round(float(np.percentile(timings, 50)), 4),
        "p95_ms": round(float(np.percentile(timings, 95)), 4),
        "mean_ms": round(float(timings.mean()), 4),
    }


def batch_latency(model: Any, X: npt.NDArray[Any], rows: int, repeats: int = 3) -> float:
    """Milliseconds per 1,000 rows of one large ``predict`` (the test rows repeated to ``rows``),
    best of ``repeats``. Single-row speed does not predict it: onnxruntime can be several times
    faster than scikit-learn on one row and slower on 10,000 (a deep forest, measured)."""
    from threadpoolctl import threadpool_limits

    batch = np.resize(X, (rows, X.shape[1]))
    best = float("inf")
    with threadpool_limits(1):  # as served: one thread per request (see Runtime)
        model.predict(batch)
        for _ in range(repeats):
            started = time.perf_counter()
            model.predict(batch)
            best = min(best, time.perf_counter() - started)
    return round(best * 1000.0 * 1000.0 / rows, 4)


def batch_serving(latency: dict[str, Any], speedup: float) -> str:
    """What serves large batches: the native model when its batch time beats the served form's
    by ``speedup`` (timings of a near tie swap places from run to run; measured on wine red, a
    HistGB timed 1% faster natively here was 2.3x slower on the benchmark's batches), else the
    served form."""
    native_ms = latency.get("native_batch_ms_per_1k")
    if native_ms is not None and native_ms * speedup <= latency["batch_ms_per_1k"]:
        return "native"
    return str(latency["serving"])


def _write_plots(
    config: Config, name: str, model: Any, X: npt.NDArray[Any], y: npt.NDArray[Any]
) -> None:
    plots, task = config.params.paths.plots_dir, config.schema.task
    predictions = model.predict(X)
    if task == "regression":
        _csv(plots / "predictions" / f"{name}.csv", {"actual": y, "predicted": predictions})
        _csv(
            plots / "residuals" / f"{name}.csv",
            {"predicted": predictions, "residual": y - predictions},
        )
    else:
        _csv(plots / "confusion" / f"{name}.csv", {"actual": y, "predicted": predictions})
        if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
            classes = np.asarray(model.classes_)
            proba = model.predict_proba(X)
            if len(classes) == 2:
                fpr, tpr, _ = roc_curve(y, proba[:, 1], pos_label=classes[1])
                _csv(plots / "roc" / f"{name}.csv", {"fpr": fpr, "tpr": tpr})
            else:  # one curve per class against the rest, a file each (a line each in DVC)
                for column, label in enumerate(classes.tolist()):
                    if not (y == label).any():
                        continue  # no positive row: no curve
                    fpr, tpr, _ = roc_curve(y == label, proba[:, column])
                    _csv(plots / "roc" / f"{name}-class-{label}.csv", {"fpr": fpr, "tpr": tpr})

    evaluate = config.params.evaluate
    importance = permutation_importance(
        model,
        X,
        y,
        scoring=IMPORTANCE_SCORING[task],
        n_repeats=evaluate.importance_repeats,
        random_state=evaluate.importance_seed,
    )
    order = np.argsort(-importance.importances_mean)
    features = np.asarray(config.schema.features)
    _csv(
        plots / "importance" / f"{name}.csv",
        {
            "feature": features[order],
            "importance": np.round(importance.importances_mean[order], 6),
            "std": np.round(importance.importances_std[order], 6),
        },
    )


def _csv(path: Path, columns: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(path, index=False, float_format="%.6g")


def run(config: Config) -> dict[str, Any]:
    import mlflow

    schema, paths, evaluate = config.schema, config.params.paths, config.params.evaluate
    manifest_path = paths.candidates_dir / MANIFEST
    if not manifest_path.is_file():
        raise StageError(f"{manifest_path} not found: run the train stage first")
    manifest = read_json(manifest_path)
    test = read_typed(paths.test_data, schema)
    X, y = feature_matrix(test, schema), test[schema.target].to_numpy()
    if len(test) == 0:
        raise StageError("the test split is empty: lower split.test_size or add data")
    configure(config)

    quality: dict[str, dict[str, float]] = {}
    latency: dict[str, dict[str, Any]] = {}
    for name, entry in manifest["candidates"].items():
        directory = paths.candidates_dir / name
        served = load_predictor(directory)
        quality[name] = round_metrics(score(served, schema.task, X, y))
        row = X[:1]
        latency[name] = {
            "serving": entry["serving"],
            **single_row_latency(served, row, evaluate.latency_warmup, evaluate.latency_repeats),
        }
        latency[name]["batch_ms_per_1k"] = batch_latency(served, X, evaluate.batch_latency_rows)
        if entry["serving"] != "native":
            native = load_native(directory)
            latency[name]["native_p50_ms"] = single_row_latency(
                native, row, evaluate.latency_warmup, evaluate.latency_repeats
            )["p50_ms"]
            latency[name]["native_batch_ms_per_1k"] = batch_latency(
                single_threaded(native), X, evaluate.batch_latency_rows
            )
        latency[name]["batch_serving"] = batch_serving(latency[name], evaluate.native_batch_speedup)
        _write_plots(config, name, served, X, y)
        with mlflow.start_run(run_id=entry["run_id"]):
            mlflow.log_metrics({f"test_{key}": value for key, value in quality[name].items()})
            mlflow.log_metrics(
                {f"latency_{k}": v for k, v in latency[name].items() if k.endswith("_ms")}
            )
        console.print(
            f"{name:<24} "
            + "  ".join(f"{key} {value:.4f}" for key, value in quality[name].items())
            + f"  latency p50 {latency[name]['p50_ms']:.3f} ms ({entry['serving']})"
        )

    write_json(
        paths.metrics,
        {
            "dataset": schema.name,
            "task": schema.task,
            "test_rows": int(len(test)),
            "candidates": quality,
        },
    )
    write_json(paths.latency, {"candidates": latency})
    return {"quality": quality, "latency": latency}


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Score every candidate on the test split; write metrics, latency and plots."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stage("evaluate"):
        run(load_config(params))


if __name__ == "__main__":
    typer.run(main)
