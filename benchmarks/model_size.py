"""Accuracy against serving cost for the forest sizes in params.yaml, and the sizes they replaced.

The tree ensembles' size is the largest single term of the service's latency: a request walks every
tree. This prints, per dataset and configuration, the mean RMSE over 8 random 75/25 splits (one
split hides a size effect under split noise) and the time of one 10,000-row ``predict`` on one
thread (the service's batch path), with ratios against the previous configuration. Wine red and
white need ``../shared/data``; diabetes ships with scikit-learn.

    python benchmarks/model_size.py [--splits 8]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH_ROWS = 10_000

# (label, factory) pairs, oldest first: ratios are against the first, the last is what params.yaml holds.
CONFIGS: dict[str, list[tuple[str, Callable[[int], Any]]]] = {
    "extra_trees": [
        ("200 trees, max_features 0.5 (before)",
         lambda seed: ExtraTreesRegressor(n_estimators=200, max_features=0.5, random_state=seed)),
        ("60 trees, max_features 0.7",
         lambda seed: ExtraTreesRegressor(n_estimators=60, max_features=0.7, random_state=seed)),
        ("40 trees, max_features 0.7 (params.yaml)",
         lambda seed: ExtraTreesRegressor(n_estimators=40, max_features=0.7, random_state=seed)),
    ],
    "hist_gb": [
        ("lr 0.05, 300 x 15 leaves (before)",
         lambda seed: HistGradientBoostingRegressor(
             learning_rate=0.05, max_iter=300, max_leaf_nodes=15, l2_regularization=1.0,
             random_state=seed)),
        ("lr 0.1, 100 x 31 leaves",
         lambda seed: HistGradientBoostingRegressor(
             learning_rate=0.1, max_iter=100, max_leaf_nodes=31, l2_regularization=1.0,
             random_state=seed)),
        ("lr 0.15, 60 x 31 leaves (params.yaml)",
         lambda seed: HistGradientBoostingRegressor(
             learning_rate=0.15, max_iter=60, max_leaf_nodes=31, l2_regularization=1.0,
             random_state=seed)),
    ],
}  # fmt: skip


def datasets() -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    import pandas as pd
    from sklearn.datasets import load_diabetes

    found = {}
    for colour in ("red", "white"):
        path = SHARED / f"winequality-{colour}.csv"
        if path.is_file():
            frame = pd.read_csv(path, sep=";")
            found[f"wine {colour}"] = (
                frame.drop(columns="quality").to_numpy(float),
                frame["quality"].to_numpy(float),
            )
        else:
            print(f"skipping wine {colour}: {path} not found")
    diabetes = load_diabetes()
    found["diabetes"] = (diabetes.data, diabetes.target.astype(float))
    return found


def batch_ms(model: Any, X: npt.NDArray[np.float64]) -> float:
    """Best of three 10,000-row predicts on one thread, the dataset's rows repeated."""
    batch = np.resize(X, (BATCH_ROWS, X.shape[1]))
    best = float("inf")
    with threadpool_limits(1):
        model.predict(batch)
        for _ in range(3):
            started = time.perf_counter()
            model.predict(batch)
            best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=8)
    args = parser.parse_args()
    for name, (X, y) in datasets().items():
        print(f"\n== {name}: {len(X)} rows, mean RMSE over {args.splits} random splits")
        for family, configs in CONFIGS.items():
            baseline: tuple[float, float] | None = None
            for label, factory in configs:
                errors = []
                for split in range(args.splits):
                    X_train, X_test, y_train, y_test = train_test_split(
                        X, y, test_size=0.25, random_state=split
                    )
                    model = factory(42).fit(X_train, y_train)
                    errors.append(float(np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2))))
                rmse, ms = float(np.mean(errors)), batch_ms(model, X)
                note = ""
                if baseline is not None:
                    note = f"  RMSE x{rmse / baseline[0]:.3f}, batch x{ms / baseline[1]:.2f}"
                else:
                    baseline = (rmse, ms)
                print(f"  {family:<12} {label:<42} RMSE {rmse:8.4f}  10k rows {ms:6.1f} ms{note}")


if __name__ == "__main__":
    main()
