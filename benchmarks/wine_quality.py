"""Quality bar on the UCI wine red data: the pipeline under both split protocols, from scratch.

Runs `dvc repro` in two throwaway copies of this repo with the wine configuration, one with the
paper's random split (test_size 0.25, seed 42) and one duplicate-aware, and prints the champion's
figures next to the published ElasticNet baseline. Needs ../shared/data (not on users' machines):

    python benchmarks/wine_quality.py [--data ../shared/data/winequality-red.csv]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.e2e.conftest import dvc_repro, fresh_copy, set_params  # noqa: E402

PUBLISHED = {"rmse": 0.660, "mae": 0.511, "r2": 0.311}


def paper_baseline(data: Path) -> dict[str, float]:
    """ElasticNet(alpha=0.2, l1_ratio=0.1), unscaled, random split 0.25/42: the tutorial setup."""
    frame = pd.read_csv(data, sep=";")
    X, y = frame.drop(columns="quality"), frame["quality"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42)
    model = ElasticNet(alpha=0.2, l1_ratio=0.1, random_state=42).fit(X_train, y_train)
    predicted = model.predict(X_test)
    return {
        "rmse": root_mean_squared_error(y_test, predicted),
        "mae": mean_absolute_error(y_test, predicted),
        "r2": r2_score(y_test, predicted),
    }


def run_protocol(data: Path, strategy: str, workdir: Path) -> dict[str, object]:
    repo = fresh_copy(workdir / strategy)
    schema_path = repo / "datasets/wine_red.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["source"]["path"] = str(data.resolve())
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    set_params(repo, dataset="datasets/wine_red.yaml", split__strategy=strategy)
    started = time.perf_counter()
    dvc_repro(repo)
    elapsed = time.perf_counter() - started
    bundle = json.loads((repo / "models/champion/bundle.json").read_text())
    return {
        "seconds": elapsed,
        "bundle": bundle,
        "metrics": json.loads((repo / "reports/metrics.json").read_text()),
    }


def single_row_ms(repo_bundle: Path) -> float:
    from mloop.bundle import load_bundle

    bundle = load_bundle(repo_bundle)
    row = np.zeros((1, len(bundle.features)))
    for _ in range(50):
        bundle.predictor.predict(row)
    timings = []
    for _ in range(2000):
        started = time.perf_counter()
        bundle.predictor.predict(row)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared/data/winequality-red.csv"
    )
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data} not found: this benchmark needs the UCI wine red file")

    baseline = paper_baseline(args.data)
    for label, figures in (("published ElasticNet", PUBLISHED), ("same model here", baseline)):
        print(f"{label:<20}: " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    workdir = Path(tempfile.mkdtemp(prefix="mloop-wine-"))
    try:
        for strategy in ("random", "group_duplicates"):
            result = run_protocol(args.data, strategy, workdir)
            bundle = result["bundle"]
            metrics = bundle["metrics"]
            latency = single_row_ms(workdir / strategy / "models/champion")
            print(
                f"\nsplit={strategy}: dvc repro from scratch {result['seconds']:.0f} s; champion "
                f"{bundle['candidate']} ({bundle['serving']})"
            )
            print(
                "  champion: "
                + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                + f"  one-row predict {latency:.3f} ms (in-process, median of 2000)"
            )
            print(
                f"  vs published: rmse x{metrics['rmse'] / PUBLISHED['rmse']:.3f}, "
                f"r2 x{metrics['r2'] / PUBLISHED['r2']:.2f}"
            )
            for name, values in result["metrics"]["candidates"].items():
                print(f"    {name:<14} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
