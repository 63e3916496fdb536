"""scikit-learn candidates: each kind maps to a regressor and a classifier with the same role."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
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
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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


# Kinds that split on thresholds: a category's code (its position in the schema's list) serves
# them as it is; the others see each category as a column of its own (one-hot).
ORDINAL_CATEGORIES = frozenset(
    {"baseline", "random_forest", "extra_trees", "hist_gradient_boosting"}
)


def build_sklearn(
    kind: str,
    task: Task,
    hyperparameters: dict[str, Any],
    seed: int,
    impute: bool = False,
    categories: list[int] | None = None,
) -> Pipeline:
    """The candidate's pipeline; ``impute`` puts a median imputer first (schemas with nullable
    features), except for kinds that take missing values natively.

    ``categories`` gives each feature's number of categories (0: a number). A category feature
    holds codes (see :mod:`mloop.encoding`): one-hot encoded for the kinds that need it, and a
    missing one takes the most frequent category where the kind imputes.
    """
    params = dict(hyperparameters)
    scale = bool(params.pop("scale", kind in SCALED_BY_DEFAULT))
    estimator_cls = ESTIMATORS[kind][task]
    if "random_state" in estimator_cls().get_params():
        params.setdefault("random_state", seed)
    try:
        estimator = estimator_cls(**params)
    except TypeError as exc:
        raise ValueError(f"{kind} ({task}): bad hyperparameter: {exc}") from None
    impute = impute and kind not in NATIVE_MISSING
    categorical = categories is not None and any(categories)
    one_hot = categorical and kind not in ORDINAL_CATEGORIES
    if one_hot or (categorical and impute):
        assert categories is not None
        return make_pipeline(_encode_columns(categories, impute, scale, one_hot), estimator)
    steps: list[Any] = [StandardScaler(), estimator] if scale else [estimator]
    if impute:
        steps.insert(0, SimpleImputer(strategy="median", keep_empty_features=True))
    return make_pipeline(*steps)


def _encode_columns(
    categories: list[int], impute: bool, scale: bool, one_hot: bool
) -> ColumnTransformer:
    """Numeric columns imputed (median) and scaled as asked, then the category codes imputed (most
    frequent) and one-hot encoded as asked; the output holds the numeric columns first."""
    numeric = [i for i, count in enumerate(categories) if not count]
    coded = [i for i, count in enumerate(categories) if count]
    numeric_steps: list[Any] = []
    if impute:
        numeric_steps.append(SimpleImputer(strategy="median", keep_empty_features=True))
    if scale:
        numeric_steps.append(StandardScaler())
    category_steps: list[Any] = []
    if impute:
        category_steps.append(SimpleImputer(strategy="most_frequent", keep_empty_features=True))
    if one_hot:
        category_steps.append(
            OneHotEncoder(
                categories=[np.arange(categories[i], dtype=float) for i in coded],
                handle_unknown="ignore",
                sparse_output=False,
            )
        )
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        parts.append(
            ("numeric", make_pipeline(*numeric_steps) if numeric_steps else "passthrough", numeric)
        )
    parts.append(
        ("categorical", make_pipeline(*category_steps) if category_steps else "passthrough", coded)
    )
    return ColumnTransformer(parts)
