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
from sklearn.impute import SimpleImputer
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


# Kinds that take missing values (NaN) natively, as a learnt split direction: no imputer before them.
NATIVE_MISSING = frozenset({"hist_gradient_boosting"})


def build_sklearn(
    kind: str, task: Task, hyperparameters: dict[str, Any], seed: int, impute: bool = False
) -> Pipeline:
    """The candidate's pipeline; ``impute`` puts a median imputer first (schemas with nullable
    features), except for kinds that take missing values natively."""
    params = dict(hyperparameters)
    scale = bool(params.pop("scale", kind in SCALED_BY_DEFAULT))
    estimator_cls = ESTIMATORS[kind][task]
    if "random_state" in estimator_cls().get_params():
        params.setdefault("random_state", seed)
    try:
        estimator = estimator_cls(**params)
    except TypeError as exc:
        raise ValueError(f"{kind} ({task}): bad hyperparameter: {exc}") from None
    steps: list[Any] = [StandardScaler(), estimator] if scale else [estimator]
    if impute and kind not in NATIVE_MISSING:
        steps.insert(0, SimpleImputer(strategy="median", keep_empty_features=True))
    return make_pipeline(*steps)
