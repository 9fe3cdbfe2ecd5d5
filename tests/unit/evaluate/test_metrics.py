"""Test-set metrics, the confusion matrix and ROC points, checked against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from evaluate_support import (
    CLASSIFICATION_KEYS,
    REGRESSION_KEYS,
    all_plain_floats,
)
from sklearn.metrics import roc_auc_score

from tabpipe.config import TaskType
from tabpipe.stages.evaluate import (
    Predictions,
    compute_metrics,
    confusion,
    predict,
    roc_curve_points,
)


def _by_hand_binary(y_true: np.ndarray, y_pred: np.ndarray, positive) -> tuple[float, float, float, float]:
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p == positive)
    fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != positive and p == positive)
    fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p != positive)
    accuracy = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p) / len(y_true)
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    return accuracy, precision, recall, f1


def test_binary_string_metrics_match_hand_computation(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert set(metrics) == CLASSIFICATION_KEYS and all_plain_floats(metrics)
    accuracy, precision, recall, f1 = _by_hand_binary(pred.y_true, pred.y_pred, "yes")
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(pred.y_true == "yes", pred.proba[:, 1]))
    assert 0.8 < metrics["roc_auc"] <= 1.0  # the signal is strong


def test_binary_minus_one_one_positive_is_one(binary_pm1):
    model, frame, y = binary_pm1
    pred = predict(model, frame, y, TaskType.BINARY)
    assert pred.classes == [-1, 1] and all(type(c) is int for c in pred.classes)
    metrics = compute_metrics(pred, TaskType.BINARY)
    accuracy, precision, recall, f1 = _by_hand_binary(pred.y_true, pred.y_pred, 1)
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(pred.y_true == 1, pred.proba[:, 1]))


def test_perfect_binary_predictor_scores_one():
    y = np.array(["no", "yes", "yes", "no", "yes"])
    score = np.array([0.1, 0.9, 0.8, 0.3, 0.6])
    pred = Predictions(y, y.copy(), np.column_stack([1 - score, score]), ["no", "yes"])
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert metrics == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "roc_auc": 1.0}


def test_roc_auc_is_nan_when_one_class_present():
    y = np.array(["yes", "yes", "yes"])
    y_pred = np.array(["yes", "no", "yes"])
    score = np.array([0.9, 0.4, 0.7])
    pred = Predictions(y, y_pred, np.column_stack([1 - score, score]), ["no", "yes"])
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert math.isnan(metrics["roc_auc"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["precision"] == 1.0 and metrics["recall"] == pytest.approx(2 / 3)


def test_zero_division_gives_zero():
    # Nothing predicted positive and nothing positive: precision, recall, f1 are 0/0 -> 0.
    y = np.array(["no", "no"])
    pred = Predictions(y, y.copy(), np.array([[0.8, 0.2], [0.7, 0.3]]), ["no", "yes"])
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["accuracy"] == 1.0


def test_multiclass_macro_metrics(multiclass):
    model, frame, y = multiclass
    pred = predict(model, frame, y, TaskType.MULTICLASS)
    assert pred.classes == ["a", "b", "c"]
    metrics = compute_metrics(pred, TaskType.MULTICLASS)
    assert set(metrics) == CLASSIFICATION_KEYS and all_plain_floats(metrics)
    per_class = [_by_hand_binary(pred.y_true, pred.y_pred, c) for c in pred.classes]
    assert metrics["accuracy"] == pytest.approx(np.mean(pred.y_true == pred.y_pred))
    assert metrics["precision"] == pytest.approx(np.mean([p for _, p, _, _ in per_class]))
    assert metrics["recall"] == pytest.approx(np.mean([r for _, _, r, _ in per_class]))
    assert metrics["f1"] == pytest.approx(np.mean([f for _, _, _, f in per_class]))
    expected_auc = roc_auc_score(
        pred.y_true, pred.proba, multi_class="ovr", average="macro", labels=pred.classes
    )
    assert metrics["roc_auc"] == pytest.approx(expected_auc)


def test_multiclass_roc_auc_averages_present_classes():
    # Class "c" is absent from y_true: ovr AUC averages over "a" and "b" only.
    y = np.array(["a", "a", "b", "b"])
    proba = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1]])
    pred = Predictions(y, np.array(["a", "b", "b", "b"]), proba, ["a", "b", "c"])
    metrics = compute_metrics(pred, TaskType.MULTICLASS)
    auc_a = roc_auc_score(y == "a", proba[:, 0])
    auc_b = roc_auc_score(y == "b", proba[:, 1])
    assert metrics["roc_auc"] == pytest.approx((auc_a + auc_b) / 2)


def test_regression_metrics_match_formulas(regression):
    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    metrics = compute_metrics(pred, TaskType.REGRESSION)
    assert set(metrics) == REGRESSION_KEYS and all_plain_floats(metrics)
    err = pred.y_true - pred.y_pred
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    r2 = 1 - np.sum(err**2) / np.sum((pred.y_true - pred.y_true.mean()) ** 2)
    assert metrics["r2"] == pytest.approx(r2)
    assert metrics["r2"] > 0.9


def test_regression_small_example_and_constant_target():
    pred = Predictions(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0]), None, [])
    metrics = compute_metrics(pred, TaskType.REGRESSION)
    assert metrics["mae"] == pytest.approx(1.0)  # |1-2| + 0 + |4-2| = 3, / 3
    assert metrics["rmse"] == pytest.approx(math.sqrt(5 / 3))
    constant = Predictions(np.array([3.0, 3.0]), np.array([3.0, 2.0]), None, [])
    assert math.isnan(compute_metrics(constant, TaskType.REGRESSION)["r2"])


def test_compute_metrics_rejects_empty():
    empty = Predictions(np.array([]), np.array([]), None, [])
    with pytest.raises(ValueError, match="zero rows"):
        compute_metrics(empty, TaskType.REGRESSION)


# ---------------------------------------------------------------- confusion


def test_confusion_small_example():
    y_true = np.array(["a", "b", "a"])
    y_pred = np.array(["a", "a", "b"])
    pred = Predictions(y_true, y_pred, np.full((3, 2), 0.5), ["a", "b"])
    categories, matrix = confusion(pred)
    assert categories == ["a", "b"]
    assert matrix == [[1, 1], [1, 0]]  # rows true, columns predicted


def test_confusion_sums_to_n(multiclass, binary_pm1):
    for (model, frame, y), task in ((multiclass, TaskType.MULTICLASS), (binary_pm1, TaskType.BINARY)):
        pred = predict(model, frame, y, task)
        categories, matrix = confusion(pred)
        assert categories == [str(c) for c in pred.classes]
        assert sum(map(sum, matrix)) == len(frame)
        assert all(type(v) is int for row in matrix for v in row)
        diagonal = sum(matrix[i][i] for i in range(len(matrix)))
        assert diagonal == int(np.sum(pred.y_true == pred.y_pred))
    json.dumps(matrix)


def test_confusion_rejects_regression():
    with pytest.raises(ValueError, match="classification"):
        confusion(Predictions(np.array([1.0]), np.array([1.0]), None, []))


# ---------------------------------------------------------------- roc_curve_points


def test_roc_curve_points_finite_and_thinned(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    full = roc_curve_points(pred, max_points=10_000)
    thin = roc_curve_points(pred, max_points=10)
    assert full is not None and thin is not None
    assert len(full[0]) > 10
    for fpr, tpr, thresholds in (full, thin):
        assert len(fpr) == len(tpr) == len(thresholds)
        assert all(math.isfinite(t) for t in thresholds)
        assert all(type(v) is float for v in fpr + tpr + thresholds)
        assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
        assert fpr == sorted(fpr) and tpr == sorted(tpr)
        assert thresholds == sorted(thresholds, reverse=True)
    assert len(thin[0]) <= 10
    # The +inf first threshold becomes 1.0 (no score reaches 1.0 here).
    assert full[2][0] == 1.0
    json.dumps(full)


def test_roc_first_threshold_above_a_score_of_one():
    y = np.array([0, 1, 1, 0])
    score = np.array([0.2, 1.0, 0.7, 0.4])
    pred = Predictions(y, (score > 0.5).astype(int), np.column_stack([1 - score, score]), [0, 1])
    _, _, thresholds = roc_curve_points(pred)
    assert math.isfinite(thresholds[0]) and thresholds[0] > 1.0


def test_roc_curve_points_none_when_not_binary(multiclass, regression):
    model, frame, y = multiclass
    assert roc_curve_points(predict(model, frame, y, TaskType.MULTICLASS)) is None
    model, frame, y = regression
    assert roc_curve_points(predict(model, frame, y, TaskType.REGRESSION)) is None
    one_class = Predictions(np.array([1, 1]), np.array([1, 1]), np.array([[0.2, 0.8], [0.3, 0.7]]), [0, 1])
    assert roc_curve_points(one_class) is None
