"""scikit-learn candidates: each kind maps to a regressor and a classifier with the same role."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mloop.config import Task

ESTIMATORS: dict[str, dict[Task, type[BaseEstimator]]] = {
    "baseline": {"regression": DummyRegressor, "classification": DummyClassifier},
    "linear": {"regression": ElasticNet, "classification": LogisticRegression},
    "random_forest": {
        "regression": RandomForestRegressor,
        "classification": RandomForestClassifier,
    },
    "extra_trees": {"regression": ExtraTreesRegressor, "classification": ExtraTreesClassifier},
    "hist_gradient_boosting": {
        "regression": HistGradientBoostingRegressor,
        "classification": HistGradientBoostingClassifier,
    },
}
# Kinds whose quality depends on the scale of the inputs; ``scale: false`` in params turns it off.
SCALED_BY_DEFAULT = frozenset({"linear"})


def build_sklearn(kind: str, task: Task, hyperparameters: dict[str, Any], seed: int) -> Pipeline:
    params = dict(hyperparameters)
    scale = bool(params.pop("scale", kind in SCALED_BY_DEFAULT))
    estimator_cls = ESTIMATORS[kind][task]
    if "random_state" in estimator_cls().get_params():
        params.setdefault("random_state", seed)
    try:
        estimator = estimator_cls(**params)
    except TypeError as exc:
        raise ValueError(f"{kind} ({task}): bad hyperparameter: {exc}") from None
    steps = [StandardScaler(), estimator] if scale else [estimator]
    return make_pipeline(*steps)
