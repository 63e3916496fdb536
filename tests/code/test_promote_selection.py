"""mloop.promote: which candidate is the challenger, and whether it may replace the champion."""

from __future__ import annotations

import pytest

from mloop.promote import at_least_as_good, select_challenger


@pytest.mark.parametrize(
    ("challenger", "champion", "metric", "tolerance", "expected"),
    [
        # lower is better
        (50.0, 50.0, "rmse", 0.0, True),  # a tie keeps the newer model
        (49.0, 50.0, "rmse", 0.0, True),
        (50.5, 50.0, "rmse", 0.0, False),
        (50.5, 50.0, "rmse", 0.01, True),  # 1% of 50 = 0.5 of slack
        (50.6, 50.0, "rmse", 0.01, False),
        (0.30, 0.20, "log_loss", 0.0, False),
        # higher is better
        (0.91, 0.90, "roc_auc", 0.0, True),
        (0.89, 0.90, "roc_auc", 0.0, False),
        (0.89, 0.90, "roc_auc", 0.02, True),  # 2% of 0.90 = 0.018 of slack
        (0.88, 0.90, "roc_auc", 0.02, False),
        # the slack is relative to the magnitude, also for a negative champion score
        (-0.54, -0.50, "r2", 0.1, True),
        (-0.56, -0.50, "r2", 0.1, False),
    ],
)
def test_at_least_as_good(
    challenger: float, champion: float, metric: str, tolerance: float, expected: bool
):
    assert at_least_as_good(challenger, champion, metric, tolerance) is expected


def latency(**p50: float) -> dict[str, dict[str, float | str]]:
    return {name: {"p50_ms": value, "serving": "native"} for name, value in p50.items()}


def test_fastest_is_not_chosen_over_the_best_within_budget():
    quality = {"baseline": {"rmse": 70.0}, "elasticnet": {"rmse": 55.0}, "forest": {"rmse": 52.0}}
    best, over = select_challenger(
        quality, latency(baseline=0.01, elasticnet=0.05, forest=2.0), "rmse", budget_ms=5.0
    )
    assert (best, over) == ("forest", [])


def test_latency_budget_excludes_slow_candidates_even_when_best():
    quality = {"baseline": {"rmse": 70.0}, "elasticnet": {"rmse": 55.0}, "forest": {"rmse": 52.0}}
    best, over = select_challenger(
        quality, latency(baseline=0.01, elasticnet=0.05, forest=12.0), "rmse", budget_ms=5.0
    )
    assert best == "elasticnet"
    assert over == ["forest"]


def test_candidate_exactly_at_the_budget_is_eligible():
    quality = {"a": {"rmse": 2.0}, "b": {"rmse": 1.0}}
    assert select_challenger(quality, latency(a=0.1, b=5.0), "rmse", 5.0) == ("b", [])


def test_higher_is_better_metric_picks_the_largest():
    quality = {
        "baseline": {"roc_auc": 0.5, "log_loss": 0.69},
        "linear": {"roc_auc": 0.97, "log_loss": 0.20},
        "boosting": {"roc_auc": 0.99, "log_loss": 0.25},
    }
    lat = latency(baseline=0.01, linear=0.05, boosting=0.5)
    assert select_challenger(quality, lat, "roc_auc", 5.0) == ("boosting", [])
    assert select_challenger(quality, lat, "log_loss", 5.0) == ("linear", [])


def test_ties_go_to_the_earlier_candidate():
    quality = {"simple": {"rmse": 3.0}, "complex": {"rmse": 3.0}}
    assert select_challenger(quality, latency(simple=0.1, complex=0.1), "rmse", 5.0)[0] == "simple"
    quality = {"simple": {"r2": 0.4}, "complex": {"r2": 0.4}}
    assert select_challenger(quality, latency(simple=0.1, complex=0.1), "r2", 5.0)[0] == "simple"


def test_no_candidate_within_budget():
    quality = {"a": {"rmse": 2.0}, "b": {"rmse": 1.0}}
    assert select_challenger(quality, latency(a=6.0, b=9.0), "rmse", 5.0) == (None, ["a", "b"])
