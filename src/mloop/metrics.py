"""Quality metrics per task, computed the same way for candidates and for the current champion."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import metrics as skm

from mloop.config import Task


def regression_metrics(y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any]) -> dict[str, float]:
    return {
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def classification_metrics(
    y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any], proba: npt.NDArray[Any] | None
) -> dict[str, float]:
    binary = len(np.unique(y_true)) <= 2
    average = "binary" if binary else "macro"
    result = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, average=average, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, average=average, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, average=average, zero_division=0)),
    }
    if proba is not None:
        score = proba[:, 1] if binary else proba
        result["roc_auc"] = float(skm.roc_auc_score(y_true, score, multi_class="ovr"))
    return result


def score(model: Any, task: Task, X: npt.NDArray[Any], y: npt.NDArray[Any]) -> dict[str, float]:
    predictions = model.predict(X)
    if task == "regression":
        return regression_metrics(y, predictions)
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    return classification_metrics(y, predictions, proba)


def round_metrics(values: dict[str, float], digits: int = 6) -> dict[str, float]:
    return {key: round(value, digits) for key, value in values.items()}
