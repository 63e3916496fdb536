"""The ONNX export that the service runs must predict what the native model predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.linear_model import ElasticNet

from mloop.models.store import export_onnx, load_native, load_predictor, save_native
from tests.helpers.bundles import diabetes_rows, make_bundle
from tests.helpers.servers import start_server, stop_server


def wine_like(rows: int = 800, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Inputs on the wine data's scales and a 3-8 quality target, as the benchmark model sees."""
    rng = np.random.default_rng(seed)
    scales = np.array([8.3, 0.53, 0.27, 2.5, 0.087, 15.9, 46.5, 0.9967, 3.31, 0.66, 10.4])
    X = scales * rng.lognormal(0.0, 0.25, size=(rows, len(scales)))
    y = np.clip(np.round(5.6 + 0.4 * (X[:, 10] - 10.4) - 1.5 * (X[:, 1] - 0.53)), 3, 8)
    return X, y


@pytest.mark.parametrize(
    "estimator",
    [
        ElasticNet(alpha=0.01),
        ExtraTreesRegressor(n_estimators=200, max_features=0.5, random_state=0),
        RandomForestRegressor(n_estimators=100, random_state=0),
    ],
    ids=["elasticnet", "extra_trees", "random_forest"],
)
def test_served_onnx_matches_native_within_1e_4(estimator: object, tmp_path: Path) -> None:
    X, y = wine_like()
    estimator.fit(X[:600], y[:600])  # type: ignore[attr-defined]
    save_native(estimator, tmp_path, "regression", [f"x{i}" for i in range(X.shape[1])])
    served, note = export_onnx(estimator, X[:600], tmp_path, atol=1e-5, rtol=1e-5)
    assert served, note
    onnx_model, native = load_predictor(tmp_path), load_native(tmp_path)
    assert type(onnx_model).__name__ == "OnnxPredictor"
    held_out = X[600:]  # parity on rows the export check never saw
    difference = np.abs(onnx_model.predict(held_out) - native.predict(held_out))
    assert difference.max() <= 1e-4


@pytest.mark.parametrize("native_faster", [True, False], ids=["native-faster", "onnx-faster"])
def test_large_batches_use_the_model_measured_faster_for_batches(
    native_faster: bool, tmp_path: Path
) -> None:
    # The evaluate stage times one large batch both ways; a deep forest can be several times
    # faster in onnxruntime on one row yet slower on 10,000. ONNX (float32) and native (float64)
    # differ in the last digits, which tells which model answered.
    latency = {
        "batch_ms_per_1k": 50.0,
        "native_batch_ms_per_1k": 20.0 if native_faster else 80.0,
        "batch_serving": "native" if native_faster else "onnx",  # the evaluate stage's choice
    }
    bundle = make_bundle(
        tmp_path / "champion", version="1", kind="extra_trees",
        hyperparameters={"n_estimators": 20}, latency=latency,
    )  # fmt: skip
    onnx_model, native = load_predictor(bundle / "model"), load_native(bundle / "model")
    X, _, features = diabetes_rows()
    rows = X[:3]
    assert not np.array_equal(onnx_model.predict(rows), native.predict(rows))
    server = start_server(tmp_path, bundle, MLOOP_NATIVE_BATCH_MIN_ROWS="3")
    try:
        with server.client() as client:
            info = client.get("/model").json()
            records = [dict(zip(features, row)) for row in rows.tolist()]
            small = client.post("/predict", json=records[:2]).json()["predictions"]
            large = client.post("/predict", json=records).json()["predictions"]
    finally:
        stop_server(server)
    assert info["batch_serving"] == ("native" if native_faster else "onnx")
    assert small == onnx_model.predict(rows[:2]).tolist(), "below the threshold: the served model"
    expected = (native if native_faster else onnx_model).predict(rows)
    assert large == expected.tolist()
