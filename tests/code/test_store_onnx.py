"""mloop.models.store: native save/load and the ONNX export kept only when it matches native."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import Pipeline

from mloop.config import DatasetSchema
from mloop.models.sklearn_models import build_sklearn
from mloop.models.store import (
    MODEL_META,
    ONNX_FILE,
    ModelLoadError,
    OnnxPredictor,
    export_onnx,
    load_native,
    load_predictor,
    read_meta,
    save_native,
)

ATOL = RTOL = 1e-5  # params.yaml train.serving parity bounds


@pytest.fixture
def saved_elasticnet(tmp_path: Path, elasticnet: Pipeline, diabetes_schema: DatasetSchema) -> Path:
    directory = tmp_path / "elasticnet"
    save_native(elasticnet, directory, "regression", diabetes_schema.features)
    return directory


def test_native_save_and_load_round_trip(
    saved_elasticnet: Path,
    elasticnet: Pipeline,
    diabetes_schema: DatasetSchema,
    diabetes_xy: tuple[np.ndarray, np.ndarray],
):
    meta = read_meta(saved_elasticnet)
    assert meta == {
        "flavor": "sklearn",
        "task": "regression",
        "features": diabetes_schema.features,
        "classes": None,
        "serving": "native",
    }
    X, _ = diabetes_xy
    for model in (load_native(saved_elasticnet), load_predictor(saved_elasticnet)):
        np.testing.assert_array_equal(model.predict(X), elasticnet.predict(X))


def test_elasticnet_onnx_matches_native_and_is_served(
    saved_elasticnet: Path, elasticnet: Pipeline, diabetes_xy: tuple[np.ndarray, np.ndarray]
):
    X, _ = diabetes_xy
    served, reason = export_onnx(elasticnet, X, saved_elasticnet, atol=ATOL, rtol=RTOL)
    assert served, reason
    assert (saved_elasticnet / ONNX_FILE).is_file()
    meta = read_meta(saved_elasticnet)
    assert meta["serving"] == "onnx"
    assert 0 <= meta["onnx_max_abs_diff"] <= ATOL + RTOL * np.abs(elasticnet.predict(X)).max()

    predictor = load_predictor(saved_elasticnet)
    assert isinstance(predictor, OnnxPredictor)
    native = elasticnet.predict(X)
    onnx = predictor.predict(X)
    assert onnx.shape == native.shape == (len(X),)
    assert onnx.dtype == np.float64
    np.testing.assert_allclose(onnx, native, atol=ATOL, rtol=RTOL)
    # one row at a time, as the service predicts
    np.testing.assert_allclose(predictor.predict(X[:1]), native[:1], atol=ATOL, rtol=RTOL)
    # the native model stays beside the export
    np.testing.assert_array_equal(load_native(saved_elasticnet).predict(X), native)


def test_export_outside_the_parity_bounds_is_dropped(
    saved_elasticnet: Path, elasticnet: Pipeline, diabetes_xy: tuple[np.ndarray, np.ndarray]
):
    X, _ = diabetes_xy
    # onnxruntime computes in float32: exact equality with float64 scikit-learn is not reached
    served, reason = export_onnx(elasticnet, X, saved_elasticnet, atol=0.0, rtol=0.0)
    assert not served
    assert "differs from the native model" in reason
    assert not (saved_elasticnet / ONNX_FILE).exists()
    assert read_meta(saved_elasticnet)["serving"] == "native"
    assert not isinstance(load_predictor(saved_elasticnet), OnnxPredictor)


def test_classifier_onnx_keeps_labels_and_probabilities(tmp_path: Path):
    frame = load_breast_cancer(as_frame=True).frame
    X = frame.drop(columns="target").to_numpy(dtype=float)
    y = frame["target"].to_numpy()
    model = build_sklearn("linear", "classification", {"C": 1.0, "max_iter": 5000}, seed=0)
    model.fit(X, y)
    directory = tmp_path / "logreg"
    features = [str(c) for c in frame.columns if c != "target"]
    save_native(model, directory, "classification", features)
    served, reason = export_onnx(model, X, directory, atol=1e-4, rtol=1e-4)
    assert served, reason
    predictor = load_predictor(directory)
    assert isinstance(predictor, OnnxPredictor)
    assert predictor.classes_.tolist() == [0, 1]
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
    np.testing.assert_allclose(predictor.predict_proba(X), model.predict_proba(X), atol=1e-4)


def test_corrupted_onnx_file_fails_to_load(
    saved_elasticnet: Path, elasticnet: Pipeline, diabetes_xy: tuple[np.ndarray, np.ndarray]
):
    X, _ = diabetes_xy
    assert export_onnx(elasticnet, X, saved_elasticnet, atol=ATOL, rtol=RTOL)[0]
    (saved_elasticnet / ONNX_FILE).write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match="model.onnx: cannot load"):
        load_predictor(saved_elasticnet)


def test_unknown_serving_form_in_model_json_is_refused(saved_elasticnet: Path):
    meta = json.loads((saved_elasticnet / MODEL_META).read_text(encoding="utf-8"))
    (saved_elasticnet / MODEL_META).write_text(
        json.dumps({**meta, "serving": "tensorrt"}), encoding="utf-8"
    )
    with pytest.raises(ModelLoadError, match="unknown flavor or serving form"):
        load_predictor(saved_elasticnet)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_hist_gradient_boosting_is_served_through_onnx(
    tmp_path: Path, diabetes_xy: tuple[np.ndarray, np.ndarray], task: str
):
    # skl2onnx 1.20 + protobuf >= 6 fail on HistGradientBoosting without the shim in
    # export_onnx; this fails when the shim stops working (or is no longer needed and removed).
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task == "regression":
        X, y = diabetes_xy
        model = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(X, y)
        classes = None
    else:
        data = load_breast_cancer()
        X, y = data.data, data.target
        model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(X, y)
        classes = [int(c) for c in model.classes_]
    directory = tmp_path / task
    save_native(model, directory, task, [f"x{i}" for i in range(X.shape[1])])
    served, reason = export_onnx(model, X, directory, atol=ATOL, rtol=RTOL)
    assert served, reason
    predictor = load_predictor(directory)
    assert isinstance(predictor, OnnxPredictor)
    if classes is None:
        np.testing.assert_allclose(predictor.predict(X), model.predict(X), atol=ATOL, rtol=RTOL)
    else:
        np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
