"""The report's plots from the CSVs evaluate writes: which images, and that they are real PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mloop.report.markdown import number
from mloop.report.plots import render

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def test_classification_plots_are_a_confusion_matrix_and_one_roc_per_class(
    tmp_path: Path,
) -> None:
    plots, training = tmp_path / "plots", tmp_path / "training"
    rng = np.random.default_rng(0)
    actual = rng.integers(0, 3, 60)
    write(plots / "confusion" / "forest.csv", pd.DataFrame({"actual": actual, "predicted": actual}))
    for label in range(3):
        curve = pd.DataFrame({"fpr": [0, 0.2, 1], "tpr": [0, 0.8, 1]})
        write(plots / "roc" / f"forest-class-{label}.csv", curve)
    write(plots / "roc" / "forest_two.csv", pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]}))
    write(
        plots / "importance" / "forest.csv",
        pd.DataFrame({"feature": ["a", "b"], "importance": [0.3, 0.1], "std": [0.01, 0.02]}),
    )
    images = render(
        plots, training, "forest", {"forest": 0.9, "base": 0.5}, "roc_auc", tmp_path / "out"
    )
    assert [image.file for image in images] == [
        "out/candidates.png", "out/confusion.png", "out/roc.png", "out/importance.png",
    ]  # fmt: skip
    for image in images:
        data = (tmp_path / image.file).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 3000


def test_regression_plots_skip_what_the_run_did_not_write(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    frame = pd.DataFrame({"actual": [1.0, 2.0, 3.0], "predicted": [1.1, 1.9, 3.2]})
    write(plots / "predictions" / "lin.csv", frame)
    images = render(plots, tmp_path / "none", "lin", {}, "rmse", tmp_path / "out")
    assert [image.title for image in images] == ["lin: predicted vs actual"]


def test_numbers_keep_integers_and_two_decimals_from_one_up() -> None:
    assert [number(200), number(40.9959), number(0.004805), number(None)] == [
        "200", "41.00", "0.004805", "–",
    ]  # fmt: skip
    assert [number(-0.5, signed=True), number(3, signed=True)] == ["-0.5", "+3"]
