"""Candidate models behind one small interface: scikit-learn's fit/predict(/predict_proba)."""

from __future__ import annotations

from typing import Any

from mloop.config import CandidateSpec, Task
from mloop.models.sklearn_models import ESTIMATORS, build_sklearn


def build_candidate(
    spec: CandidateSpec,
    task: Task,
    seed: int,
    missing_values: bool = False,
    categories: list[int] | None = None,
) -> Any:
    """An untrained estimator for the candidate, with the hyperparameters of the dataset's task.

    ``missing_values``: the schema has nullable features, so the model must take NaN (imputed in
    the scikit-learn pipelines, natively by gradient boosting, by training medians in Keras).
    ``categories``: each feature's number of categories (0 for a number); category features hold
    codes and are one-hot encoded for the kinds that need it.
    """
    hyperparameters = spec.hyperparameters(task)
    if spec.kind == "keras_mlp":
        from mloop.models.keras_mlp import KerasMLP

        if "hidden_units" in hyperparameters:
            hyperparameters["hidden_units"] = tuple(hyperparameters["hidden_units"])
        try:
            return KerasMLP(task=task, seed=seed, categories=categories, **hyperparameters)
        except TypeError as exc:
            raise ValueError(f"keras_mlp: bad hyperparameter: {exc}") from None
    if spec.kind not in ESTIMATORS:
        raise ValueError(f"unknown candidate kind {spec.kind!r}")
    return build_sklearn(
        spec.kind, task, hyperparameters, seed, impute=missing_values, categories=categories
    )
