"""Quality metrics per task, computed the same way for candidates and for the current champion."""

from __future__ import annotations

from collections.abc import Sequence
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
    y_true: npt.NDArray[Any],
    y_pred: npt.NDArray[Any],
    proba: npt.NDArray[Any] | None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (and ROC AUC given ``proba``).

    ``classes`` are the model's classes, in the order of ``proba``'s columns. Two classes: the
    scores of the second (the positive class); more: macro averages over the classes that occur in
    the labels or the predictions. Without ``classes``, the classes that occur stand for them,
    which a few live labels (all of one class) would misread as a binary task.
    """
    labels = np.unique(np.concatenate([y_true, y_pred])) if classes is None else np.asarray(classes)
    binary = len(labels) <= 2
    options: dict[str, Any] = (
        {"average": "binary", "pos_label": labels[-1].item()} if binary else {"average": "macro"}
    )
    result = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0, **options)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0, **options)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0, **options)),
    }
    if proba is not None:
        if binary:
            result["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
        else:
            result["roc_auc"] = float(
                skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels)
            )
    return result


def score(model: Any, task: Task, X: npt.NDArray[Any], y: npt.NDArray[Any]) -> dict[str, float]:
    predictions = model.predict(X)
    if task == "regression":
        return regression_metrics(y, predictions)
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    classes = getattr(model, "classes_", None)
    return classification_metrics(y, predictions, proba, None if classes is None else list(classes))


def round_metrics(values: dict[str, float], digits: int = 6) -> dict[str, float]:
    return {key: round(value, digits) for key, value in values.items()}
