"""mloop.metrics: the model's classes, not the few labels at hand, decide binary or multiclass."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mloop.metrics import classification_metrics


def test_one_correct_label_of_a_three_class_model_scores_one() -> None:
    scores = classification_metrics(np.array([0]), np.array([0]), None, classes=[0, 1, 2])
    assert scores["f1"] == scores["accuracy"] == 1.0


def test_labels_of_a_multiclass_model_without_class_one_are_macro_averaged() -> None:
    actual, predicted = np.array([0, 2, 2]), np.array([0, 2, 0])
    scores = classification_metrics(actual, predicted, None, classes=[0, 1, 2])
    assert scores["f1"] == pytest.approx(f1_score(actual, predicted, average="macro"))


def test_a_binary_model_scores_its_second_class() -> None:
    actual, predicted = np.array([5, 9, 9, 5]), np.array([5, 9, 5, 5])
    scores = classification_metrics(actual, predicted, None, classes=[5, 9])
    assert scores["recall"] == 0.5 and scores["precision"] == 1.0


def test_probabilities_give_roc_auc_with_the_classes_order() -> None:
    actual = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7], [0.2, 0.3, 0.5]])
    scores = classification_metrics(actual, proba.argmax(axis=1), proba, classes=[0, 1, 2])
    assert scores["roc_auc"] == 1.0
