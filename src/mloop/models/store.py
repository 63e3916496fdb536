"""How a trained model sits on disk, and how it is loaded back for scoring or serving.

A model directory holds the native model (``model.joblib`` or ``model.keras``), optionally an ONNX
export (``model.onnx``, kept only if it reproduces the native predictions) and ``model.json``, which
says which of the two is served. Evaluation, promotion and the service all load through
:func:`load_predictor`, so the metrics a model is promoted on are the metrics of what is served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator

Flavor = Literal["sklearn", "keras"]
# The candidates folder's index, written by train: each candidate's model dir and metrics.
MANIFEST = "manifest.json"
MODEL_META = "model.json"
ONNX_FILE = "model.onnx"
NATIVE_FILES: dict[str, str] = {"sklearn": "model.joblib", "keras": "model.keras"}


class ModelLoadError(RuntimeError):
    """A model directory is incomplete, corrupted or made for another task."""


def flavor_of(estimator: Any) -> Flavor:
    from mloop.models.keras_mlp import KerasMLP

    return "keras" if isinstance(estimator, KerasMLP) else "sklearn"


def save_native(estimator: Any, directory: Path, task: str, features: list[str]) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    flavor = flavor_of(estimator)
    if flavor == "keras":
        estimator.model_.save(directory / NATIVE_FILES["keras"])
    else:
        joblib.dump(estimator, directory / NATIVE_FILES["sklearn"])
    classes = getattr(estimator, "classes_", None)
    meta: dict[str, Any] = {
        "flavor": flavor,
        "task": task,
        "features": features,
        "classes": None if classes is None else np.asarray(classes).tolist(),
        "serving": "native",
    }
    if flavor == "keras":  # what a missing value becomes (the network itself takes no NaN)
        meta["fill_values"] = np.asarray(estimator.fill_values_).tolist()
        if estimator.categories and any(estimator.categories):  # one-hot before the network
            meta["categories"] = list(estimator.categories)
    write_meta(directory, meta)
    return meta


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    (directory / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((directory / MODEL_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: unreadable {MODEL_META}: {exc}") from None
    if meta.get("flavor") not in NATIVE_FILES or meta.get("serving") not in ("native", "onnx"):
        raise ModelLoadError(f"{directory}: {MODEL_META} names an unknown flavor or serving form")
    return meta


class OnnxPredictor(BaseEstimator):  # type: ignore[misc]
    """An ONNX model behind ``predict``/``predict_proba``.

    It subclasses ``BaseEstimator`` (and has a ``fit`` that refuses) only so that scikit-learn's
    model-agnostic tools, such as ``permutation_importance``, accept it.
    """

    def __init__(self, path: Path, task: str, classes: list[Any] | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: requests are already concurrent, and thread hand-off costs more than a tree walk.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.path = path
        self.task = task
        self.classes = classes
        self.session_ = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name_ = self.session_.get_inputs()[0].name
        if classes is not None:
            self.classes_ = np.asarray(classes)

    def fit(self, X: Any, y: Any) -> OnnxPredictor:
        raise NotImplementedError("an exported ONNX model is not trainable; retrain the candidate")

    def _run(self, X: npt.NDArray[Any]) -> list[Any]:
        outputs: list[Any] = self.session_.run(
            None, {self.input_name_: np.asarray(X, dtype=np.float32)}
        )
        return outputs

    def predict(self, X: npt.NDArray[Any]) -> npt.NDArray[Any]:
        outputs = self._run(X)
        if self.task == "classification":
            return np.asarray(outputs[0]).ravel()
        return np.asarray(outputs[0], dtype=np.float64).ravel()

    def predict_proba(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.asarray(self._run(X)[1], dtype=np.float64)

    def predict_with_proba(self, X: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Class labels and probabilities from one session run (the probabilities as the model
        computes them, float32)."""
        labels, proba = self._run(X)[:2]
        return np.asarray(labels).ravel(), np.asarray(proba)


def predict_with_proba(
    model: Any, X: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """A classifier's labels and class probabilities (columns in ``classes_`` order).

    One model call where the model offers it (ONNX, Keras); otherwise ``predict`` and
    ``predict_proba``, so the labels are exactly what ``predict`` answers.
    """
    both = getattr(model, "predict_with_proba", None)
    if both is not None:
        labels, proba = both(X)
        return labels, proba
    return np.asarray(model.predict(X)), np.asarray(model.predict_proba(X))


@contextmanager
def _integer_missing_value_flags() -> Iterator[None]:
    """Work around skl2onnx 1.20 failing on every HistGradientBoosting model with protobuf >= 6.

    Its tree walker passes ``missing_go_to_left`` as a Python bool into an ONNX ``ints``
    attribute, which protobuf now rejects ("Field onnx.AttributeProto.ints: Expected an int, got
    a boolean"); without this the boosting candidate is served natively, ~100x slower per row.
    The flag is cast to the int the ONNX spec asks for. tests/code/test_store_onnx.py fails
    once skl2onnx no longer has the function, so the shim is removed when it is fixed upstream.
    """
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(
            *args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs
        )

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def export_onnx(
    estimator: Any, X_sample: npt.NDArray[np.float64], directory: Path, atol: float, rtol: float
) -> tuple[bool, str]:
    """Export a scikit-learn model to ONNX and keep it only if it matches the native predictions.

    Returns whether the export is served and why. Conversion gaps (an estimator skl2onnx cannot
    convert, or float32 thresholds flipping a tree branch) fall back to the native model. Parity is
    ``|onnx - native| <= atol + rtol * |native|`` for every sample row: onnxruntime's tree ensembles
    sum leaves in float32, so an absolute bound alone would reject every forest on a large-valued target.
    """
    if flavor_of(estimator) != "sklearn":
        return False, "no ONNX export for this flavor"
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if type(final).__name__ in ("DummyRegressor", "DummyClassifier"):
        # An expected case, not a failure: skl2onnx has no converter for the constant baseline,
        # and a constant needs no fast path.
        return False, "a constant baseline: served natively"
    try:
        from skl2onnx import to_onnx

        with _integer_missing_value_flags():
            onnx_model = to_onnx(
                estimator,
                X_sample[:1].astype(np.float32),
                options={"zipmap": False} if hasattr(estimator, "classes_") else None,
                target_opset={"": 17, "ai.onnx.ml": 3},
            )
    except Exception as exc:  # noqa: BLE001 - any converter failure means "serve native"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"no ONNX export ({type(exc).__name__}: {first_line})"[:160] + ": native"
    path = directory / ONNX_FILE
    path.write_bytes(onnx_model.SerializeToString())
    meta = read_meta(directory)
    exported = OnnxPredictor(path, meta["task"], meta["classes"])
    if meta["task"] == "classification":
        native, served = estimator.predict_proba(X_sample), exported.predict_proba(X_sample)
        same_labels = bool(np.array_equal(exported.predict(X_sample), estimator.predict(X_sample)))
    else:
        native, served = estimator.predict(X_sample), exported.predict(X_sample)
        same_labels = True
    diff = float(np.max(np.abs(served - native)))
    within = bool(np.all(np.abs(served - native) <= atol + rtol * np.abs(native)))
    if not within or not same_labels:
        path.unlink()
        return False, f"ONNX export differs from the native model (max abs diff {diff:.3g})"
    meta.update(serving="onnx", onnx_max_abs_diff=diff)
    write_meta(directory, meta)
    return True, f"served with onnxruntime (max abs diff {diff:.3g})"


def single_threaded(estimator: Any) -> Any:
    """Set every ``n_jobs`` of a scikit-learn estimator (or pipeline) to 1, in place.

    A service runs one model call per request and requests are its parallelism (onnxruntime is
    configured the same way); a forest's own thread pool would only contend for the same cores.
    """
    if hasattr(estimator, "get_params") and hasattr(estimator, "set_params"):
        jobs = [key for key in estimator.get_params(deep=True) if key.split("__")[-1] == "n_jobs"]
        if jobs:
            estimator.set_params(**{key: 1 for key in jobs})
    return estimator


def load_native(directory: Path) -> Any:
    meta = read_meta(directory)
    path = directory / NATIVE_FILES[meta["flavor"]]
    if not path.is_file():
        raise ModelLoadError(f"{directory}: {path.name} is missing")
    try:
        if meta["flavor"] == "sklearn":
            return joblib.load(path)
        from mloop.models.keras_mlp import KerasMLP, import_keras

        keras, _ = import_keras()
        wrapper = KerasMLP(task=meta["task"], categories=meta.get("categories"))
        wrapper.model_ = keras.saving.load_model(path)
        if meta["classes"] is not None:
            wrapper.classes_ = np.asarray(meta["classes"])
        if meta.get("fill_values") is not None:
            wrapper.fill_values_ = np.asarray(meta["fill_values"], dtype="float32")
        return wrapper
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail in many library-specific ways
        raise ModelLoadError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None


def load_predictor(directory: Path) -> Any:
    """The model as it is served: the ONNX export when it was validated, else the native model."""
    meta = read_meta(directory)
    if meta["serving"] == "onnx":
        try:
            return OnnxPredictor(directory / ONNX_FILE, meta["task"], meta["classes"])
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{directory / ONNX_FILE}: cannot load: {exc}") from None
    return load_native(directory)
