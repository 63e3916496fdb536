"""Stage 4 - train: fit every enabled candidate, one MLflow run each, and save them for evaluation."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mloop.config import DEFAULT_PARAMS, Config, DatasetSchema, load_config
from mloop.console import console, stage
from mloop.encoding import categorical_features, feature_matrix
from mloop.fileio import write_json
from mloop.models import build_candidate
from mloop.models.store import MANIFEST, export_onnx, flavor_of, save_native
from mloop.rows import row_ids, save_training_rows
from mloop.tracking import configure, lineage, lineage_tags, run_name
from mloop.schema_checks import read_typed


def _pip_requirements(flavor: str) -> list[str]:
    """Pinned explicitly: MLflow's requirement inference imports the model in a subprocess (slow)."""
    from importlib.metadata import version

    packages = ["scikit-learn", "numpy", "scipy", "joblib"]
    if flavor == "keras":
        packages = ["tensorflow-cpu", "keras", "numpy"]
    return [f"{name}=={version(name)}" for name in packages]


def _accepting_named_columns(estimator: Any, frame: pd.DataFrame, schema: DatasetSchema) -> Any:
    """The pipeline MLflow logs: a name check and conversion to a float array, then the fitted steps.

    Candidates are fitted on float arrays (the served paths never build DataFrames), but MLflow's
    pyfunc feeds a DataFrame in signature order. Given that DataFrame directly, scikit-learn would
    warn "X has feature names, but ... was fitted without feature names" on every request of
    ``mlflow models serve``. The leading step (identity, ``validate=True``) is fitted on the
    training columns, so it checks their names and order, refuses NaN and infinity as the service
    does, and hands the array on; the fitted steps are shared, not refitted, and the served
    candidate stays as it was fitted. Category features arrive as text and become their codes
    (an ``OrdinalEncoder`` on the schema's list, NaN last so that it stays missing; any other
    value is refused).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    coded = categorical_features(schema)
    if coded or any(schema.columns[name].nullable for name in frame.columns):
        # NaN must pass: select the columns by name instead (no finiteness check), in order.
        named_columns: Any = ColumnTransformer(
            [
                (
                    name,
                    (
                        OrdinalEncoder(categories=[[*coded[i], np.nan]], dtype=np.float64)
                        if i in coded
                        else "passthrough"
                    ),
                    [name],
                )
                for i, name in enumerate(frame.columns)
            ],
            remainder="drop",
        ).fit(frame)
    else:
        named_columns = FunctionTransformer(validate=True).fit(frame)
    return Pipeline([("named_columns", named_columns), *estimator.steps])


def _log_model(
    estimator: Any, frame: pd.DataFrame, X: Any, predictions: Any, schema: DatasetSchema
) -> str:
    import mlflow
    from mlflow.models import infer_signature

    example = frame.head(5)
    signature = infer_signature(example, predictions[:5])
    flavor = flavor_of(estimator)
    requirements = _pip_requirements(flavor)
    if flavor == "keras":
        # The TensorFlow flavor takes the network's tensor (columns in schema order, categories
        # one-hot), not named columns.
        tensor = estimator.network_input(X[:5])
        info = mlflow.tensorflow.log_model(
            estimator.model_,
            name="model",
            signature=infer_signature(tensor, predictions[:5]),
            input_example=tensor,
            pip_requirements=requirements,
        )
    else:
        import skops.io

        logged = _accepting_named_columns(estimator, frame, schema)
        # MLflow stores scikit-learn models with skops, which refuses types it cannot vouch for
        # (tree node arrays). This model was fitted in this very process, so its types are trusted.
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(logged))
        info = mlflow.sklearn.log_model(
            logged,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            skops_trusted_types=trusted,
        )
    return str(info.model_uri)


def _write_history(history: dict[str, list[float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    frame.to_csv(path, index=False)


def run(config: Config) -> dict[str, Any]:
    import mlflow

    schema, params, paths = config.schema, config.params, config.params.paths
    train = read_typed(paths.train_data, schema)
    features = schema.features
    X, y = feature_matrix(train, schema), train[schema.target].to_numpy()
    # Named columns as MLflow's pyfunc takes them; a missing category is NaN (pandas' None is
    # another category to scikit-learn's encoders).
    frame = train[features].astype({features[i]: object for i in categorical_features(schema)})
    frame = frame.where(frame.notna(), np.nan)

    training_rows = row_ids(train, schema)  # what every candidate saw (see mloop.rows)
    missing_values = any(schema.columns[name].nullable for name in features)
    coded = categorical_features(schema)
    categories = [len(coded.get(index, ())) for index in range(len(features))]

    configure(config)
    info = lineage(config)
    if paths.candidates_dir.exists():
        shutil.rmtree(paths.candidates_dir)
    # A DVC output even when no enabled candidate writes training curves (only Keras does).
    paths.training_plots_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"dataset": schema.name, "task": schema.task, "candidates": {}}
    serving = params.train.serving

    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        for name, spec in params.train.enabled.items():
            task_id = progress.add_task(f"{name} ({spec.kind})", total=None, status="fitting")
            estimator = build_candidate(
                spec, schema.task, params.train.seed, missing_values, categories
            )
            started = time.perf_counter()
            if spec.kind == "keras_mlp":
                max_epochs = estimator.epochs
                progress.update(task_id, total=max_epochs)

                def on_epoch_end(epoch: int, logs: dict[str, float], tid: Any = task_id) -> None:
                    progress.update(
                        tid, completed=epoch + 1, status=f"val_loss {logs.get('val_loss', 0):.4f}"
                    )

                estimator.fit(X, y, on_epoch_end=on_epoch_end)
            else:
                estimator.fit(X, y)
            fit_seconds = time.perf_counter() - started

            directory = paths.candidates_dir / name
            save_native(estimator, directory, schema.task, features)
            save_training_rows(directory, training_rows)
            onnx_used, serving_note = (False, "ONNX export disabled")
            if serving.onnx:
                onnx_used, serving_note = export_onnx(
                    estimator, X, directory, atol=serving.parity_atol, rtol=serving.parity_rtol
                )
            train_predictions = estimator.predict(X)

            with mlflow.start_run(run_name=run_name(name, info)) as run:
                mlflow.set_tags(
                    {**lineage_tags(info), "mloop.candidate": name, "mloop.kind": spec.kind}
                )
                mlflow.log_params(
                    {
                        "kind": spec.kind,
                        **{f"hp.{k}": v for k, v in spec.hyperparameters(schema.task).items()},
                        "split.strategy": params.split.strategy,
                        "split.test_size": params.split.test_size,
                        "split.seed": params.split.seed,
                        "train.seed": params.train.seed,
                        "train_rows": len(train),
                        "train_distinct_inputs": len(np.unique(training_rows)),
                        "serving": "onnx" if onnx_used else "native",
                    }
                )
                mlflow.log_metric("fit_seconds", fit_seconds)
                if spec.kind == "keras_mlp":
                    history = estimator.history_
                    for epoch in range(len(history["loss"])):
                        mlflow.log_metrics(
                            {key: values[epoch] for key, values in history.items()}, step=epoch + 1
                        )
                    mlflow.log_metric("best_epoch", estimator.best_epoch_)
                    _write_history(history, paths.training_plots_dir / f"{name}.csv")
                model_uri = _log_model(estimator, frame, X, train_predictions, schema)
                mlflow.log_artifacts(str(directory), artifact_path="candidate")

            manifest["candidates"][name] = {
                "kind": spec.kind,
                "flavor": flavor_of(estimator),
                "run_id": run.info.run_id,
                "model_uri": model_uri,
                "serving": "onnx" if onnx_used else "native",
                "serving_note": serving_note,
                "fit_seconds": round(fit_seconds, 3),
            }
            progress.update(task_id, total=1, completed=1, status=f"done, {serving_note}")

    manifest["lineage"] = info
    write_json(paths.candidates_dir / MANIFEST, manifest)
    console.print(f"trained {len(manifest['candidates'])} candidates into {paths.candidates_dir}")
    return manifest


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Fit every enabled candidate and log each as an MLflow run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stage("train"):
        run(load_config(params))


if __name__ == "__main__":
    typer.run(main)
