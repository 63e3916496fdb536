"""The promotion gate: champion and challenger judged on the same rows, none of which either saw.

A split change (or a retrain that adds production rows) moves rows the champion trained on into
today's test split, where it scores as if it knew the answers. So both models are scored only on
the test rows whose inputs neither trained on (``mloop.rows``), and the report says how many that
was. With fewer than ``promote.min_compared_rows`` such rows the comparison cannot be trusted, and
``promote.too_few_rows`` decides: ``keep`` the champion (default), ``promote`` the challenger, or
``fail`` the stage. Leaked rows are never used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mloop.config import PromoteParams, Task, metric_is_lower_better
from mloop.metrics import round_metrics, score

SCOPE = "test rows whose inputs neither model trained on"


@dataclass
class Comparison:
    """Both models on the same unseen rows; metrics are None where they could not be computed."""

    rows: int
    test_rows: int
    seen_by_champion: int
    seen_by_challenger: int
    champion_training_rows: str  # "recorded", or "unknown" (registered before they were)
    champion: dict[str, float] | None
    challenger: dict[str, float] | None
    scope: str = SCOPE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unseen(
    test_ids: npt.NDArray[np.uint64],
    champion_rows: npt.NDArray[np.uint64] | None,
    challenger_rows: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.bool_], int, int]:
    """The test rows neither model trained on, and how many each had seen."""
    by_challenger = np.isin(test_ids, challenger_rows)
    by_champion = (
        np.zeros(len(test_ids), dtype=bool)
        if champion_rows is None
        else np.isin(test_ids, champion_rows)
    )
    return ~(by_champion | by_challenger), int(by_champion.sum()), int(by_challenger.sum())


def _scores(model: Any, task: Task, X: npt.NDArray[Any], y: npt.NDArray[Any]) -> Any:
    try:
        return round_metrics(score(model, task, X, y))
    except ValueError:  # e.g. ROC AUC of rows of one class: this metric cannot be had here
        return None


def compare(
    champion_model: Any,
    challenger_model: Any,
    task: Task,
    X: npt.NDArray[Any],
    y: npt.NDArray[Any],
    test_ids: npt.NDArray[np.uint64],
    champion_rows: npt.NDArray[np.uint64] | None,
    challenger_rows: npt.NDArray[np.uint64],
) -> Comparison:
    """Score both models on the test rows neither trained on."""
    mask, by_champion, by_challenger = unseen(test_ids, champion_rows, challenger_rows)
    rows = int(mask.sum())
    champion = _scores(champion_model, task, X[mask], y[mask]) if rows else None
    challenger = _scores(challenger_model, task, X[mask], y[mask]) if rows else None
    return Comparison(
        rows=rows,
        test_rows=len(test_ids),
        seen_by_champion=by_champion,
        seen_by_challenger=by_challenger,
        champion_training_rows="unknown" if champion_rows is None else "recorded",
        champion=champion,
        challenger=challenger,
    )


def at_least_as_good(challenger: float, champion: float, metric: str, tolerance: float) -> bool:
    """Relative tolerance: with 0.01 the challenger may be up to 1% worse than the champion."""
    slack = tolerance * abs(champion)
    if metric_is_lower_better(metric):
        return challenger <= champion + slack
    return challenger >= champion - slack


class TooFewRows(Exception):
    """``promote.too_few_rows: fail`` and too few rows to compare on."""


def decide(
    comparison: Comparison, champion_version: str, metric: str, params: PromoteParams
) -> tuple[bool, str]:
    """Promote the challenger? (promoted, reason), from the comparison on unseen rows only."""
    where = f"on {comparison.rows} of {comparison.test_rows} test rows neither model trained on"
    if comparison.champion_training_rows == "unknown":
        where += " (the champion's training rows are unknown: registered before they were recorded)"
    old = (comparison.champion or {}).get(metric)
    new = (comparison.challenger or {}).get(metric)
    if comparison.rows < params.min_compared_rows or old is None or new is None:
        problem = (
            f"only {comparison.rows} of {comparison.test_rows} test rows are unseen by both "
            f"models (promote.min_compared_rows: {params.min_compared_rows})"
            if comparison.rows < params.min_compared_rows
            else f"{metric} cannot be computed {where}"
        )
        if params.too_few_rows == "fail":
            raise TooFewRows(f"{problem}: no fair comparison (promote.too_few_rows: fail)")
        if params.too_few_rows == "promote":
            return True, f"{problem}: the challenger is promoted (promote.too_few_rows: promote)"
        return False, f"{problem}: champion v{champion_version} kept (promote.too_few_rows: keep)"
    if at_least_as_good(new, old, metric, params.tolerance):
        return True, f"{metric} {new:.4f} vs champion v{champion_version} {old:.4f} {where}"
    return False, (
        f"{metric} {new:.4f} is worse than champion v{champion_version} {old:.4f} {where}, "
        f"beyond the tolerance of {params.tolerance:.1%}"
    )
