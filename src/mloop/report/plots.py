"""PNG plots of a run, rendered offline from the CSVs the evaluate and train stages write.

``dvc plots show`` draws the same data as HTML that loads vega from a CDN; a merge-request
comment needs images, and CML uploads the PNGs that the markdown references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a runner; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 110
SIZE = (5.2, 4.0)


@dataclass(frozen=True)
class Plot:
    """One rendered image: its file (relative to the report) and what it shows."""

    file: str
    title: str


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)


def _predicted_vs_actual(frame: pd.DataFrame, title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=SIZE)
    axes.scatter(frame["actual"], frame["predicted"], s=12, alpha=0.6)
    low = float(min(frame["actual"].min(), frame["predicted"].min()))
    high = float(max(frame["actual"].max(), frame["predicted"].max()))
    axes.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--", label="perfect")
    axes.set(xlabel="actual", ylabel="predicted", title=title)
    axes.legend(loc="upper left")
    _save(figure, path)


def _residuals(frame: pd.DataFrame, title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=SIZE)
    axes.scatter(frame["predicted"], frame["residual"], s=12, alpha=0.6)
    axes.axhline(0, color="grey", linewidth=1, linestyle="--")
    axes.set(xlabel="predicted", ylabel="actual - predicted", title=title)
    _save(figure, path)


def _confusion(frame: pd.DataFrame, title: str, path: Path) -> None:
    table = pd.crosstab(frame["actual"], frame["predicted"]).astype(int)
    labels = sorted(set(table.index) | set(table.columns))
    table = table.reindex(index=labels, columns=labels, fill_value=0)
    figure, axes = plt.subplots(figsize=SIZE)
    image = axes.imshow(table.to_numpy(), cmap="Blues")
    axes.set_xticks(range(len(labels)), [str(label) for label in labels])
    axes.set_yticks(range(len(labels)), [str(label) for label in labels])
    for (row, column), count in np.ndenumerate(table.to_numpy()):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=9)
    axes.set(xlabel="predicted", ylabel="actual", title=title)
    figure.colorbar(image, ax=axes)
    _save(figure, path)


def _roc(curves: dict[str, pd.DataFrame], title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=SIZE)
    for label, frame in curves.items():
        axes.plot(frame["fpr"], frame["tpr"], label=label)
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)


def _importance(frame: pd.DataFrame, title: str, path: Path) -> None:
    frame = frame.sort_values("importance")
    figure, axes = plt.subplots(figsize=(SIZE[0], max(2.5, 0.3 * len(frame) + 1)))
    axes.barh(frame["feature"].astype(str), frame["importance"], xerr=frame.get("std"))
    axes.set(xlabel="drop in score when shuffled", title=title)
    _save(figure, path)


def _training_curves(frame: pd.DataFrame, title: str, path: Path) -> None:
    figure, axes = plt.subplots(figsize=SIZE)
    for column in ("loss", "val_loss"):
        if column in frame:
            axes.plot(frame["epoch"], frame[column], label=column)
    axes.set(xlabel="epoch", ylabel="loss (standardised target)", title=title)
    axes.legend()
    _save(figure, path)


def _candidate_scores(scores: dict[str, float], metric: str, best: str | None, path: Path) -> None:
    names = list(scores)
    figure, axes = plt.subplots(figsize=(SIZE[0], max(2.5, 0.4 * len(names) + 1)))
    colours = ["tab:orange" if name == best else "tab:blue" for name in names]
    axes.barh(names, [scores[name] for name in names], color=colours)
    axes.set(xlabel=f"{metric} (test split)", title=f"{metric} per candidate (selected in orange)")
    _save(figure, path)


def _roc_label(stem: str, candidate: str) -> str:
    """``name.csv`` holds the positive class's curve; ``name-class-K.csv`` class K against the rest."""
    label = stem.removeprefix(candidate).removeprefix("-class-")
    return f"class {label} vs rest" if label else "positive class"


def render(
    plots_dir: Path,
    training_dir: Path,
    candidate: str,
    scores: dict[str, float],
    metric: str,
    out: Path,
) -> list[Plot]:
    """Render the selected candidate's plots (and every candidate's score) into ``out``.

    Returns the images written, in report order; a plot whose CSV the run did not write (ROC
    for a regression, training curves for a scikit-learn model) is left out.
    """
    rendered: list[Plot] = []

    def add(name: str, title: str) -> Path:
        rendered.append(Plot(f"{out.name}/{name}.png", title))
        return out / f"{name}.png"

    if scores:
        _candidate_scores(scores, metric, candidate, add("candidates", f"{metric} per candidate"))
    source = plots_dir / "predictions" / f"{candidate}.csv"
    if source.exists():
        title = f"{candidate}: predicted vs actual"
        _predicted_vs_actual(pd.read_csv(source), title, add("predictions", title))
    source = plots_dir / "residuals" / f"{candidate}.csv"
    if source.exists():
        title = f"{candidate}: residuals"
        _residuals(pd.read_csv(source), title, add("residuals", title))
    source = plots_dir / "confusion" / f"{candidate}.csv"
    if source.exists():
        title = f"{candidate}: confusion matrix"
        _confusion(pd.read_csv(source), title, add("confusion", title))
    curves = {
        _roc_label(path.stem, candidate): pd.read_csv(path)
        for path in sorted((plots_dir / "roc").glob(f"{candidate}*.csv"))
        if path.stem == candidate or path.stem.startswith(f"{candidate}-class-")
    }
    if curves:
        title = f"{candidate}: ROC"
        _roc(curves, title, add("roc", title))
    source = plots_dir / "importance" / f"{candidate}.csv"
    if source.exists():
        title = f"{candidate}: permutation importance"
        _importance(pd.read_csv(source), title, add("importance", title))
    for source in sorted(training_dir.glob("*.csv")):
        title = f"{source.stem}: training curves"
        _training_curves(pd.read_csv(source), title, add(f"training-{source.stem}", title))
    return rendered
