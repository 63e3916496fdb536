"""The ONNX export that the service runs must predict what the native model predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.linear_model import ElasticNet

from mloop.models.store import export_onnx, load_native, load_predictor, save_native


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
