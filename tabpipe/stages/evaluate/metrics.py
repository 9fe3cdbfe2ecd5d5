"""Test-set metrics, the confusion matrix and the ROC curve of a model's predictions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tabpipe.config import Metric, TaskType
from tabpipe.stages.evaluate.predictions import Predictions


def _positive_class(pred: Predictions) -> Any:
    """Return the positive class of a binary problem: the greater label, ``classes[-1]``.

    scikit-learn sorts ``classes_``, so this is "yes" for "no"/"yes", 1 for 0/1 and -1/1,
    True for booleans, and it is the class of ``proba[:, 1]``.
    """
    if len(pred.classes) != 2:
        raise ValueError(f"a binary task needs exactly 2 classes, the model has {len(pred.classes)}")
    return pred.classes[-1]


def binary_roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC AUC, or NaN when y_true holds only one class (AUC is undefined then)."""
    from sklearn.metrics import roc_auc_score

    if is_positive.all() or not is_positive.any():
        return math.nan
    return float(roc_auc_score(is_positive, score))


def _ovr_macro_roc_auc(pred: Predictions) -> float:
    """One-vs-rest macro ROC AUC over the classes present in y_true.

    Equals ``roc_auc_score(multi_class="ovr", average="macro")`` when every class is present;
    classes absent from y_true (common in slices) are left out instead of making the score
    undefined. NaN when no class has both positives and negatives.
    """
    assert pred.proba is not None
    scores = [binary_roc_auc(pred.y_true == label, pred.proba[:, k]) for k, label in enumerate(pred.classes)]
    defined = [s for s in scores if not math.isnan(s)]
    return float(np.mean(defined)) if defined else math.nan


def compute_metrics(pred: Predictions, task: TaskType) -> dict[str, float]:
    """Compute the task's metrics.

    Classification: accuracy, precision, recall, f1, roc_auc. For a binary task precision,
    recall and f1 are those of the positive class, which is ``classes[-1]`` (the greater label,
    e.g. "yes" over "no", 1 over -1), and roc_auc scores ``proba[:, 1]``. For a multiclass task
    they are macro averages and roc_auc is one-vs-rest macro. A ratio with a zero denominator
    is 0; roc_auc is NaN when y_true holds a single class.

    Regression: mae, rmse, r2. r2 is NaN when y_true is constant (it is undefined then).

    Args:
        pred: Predictions to score (at least one row).
        task: Learning task.

    Returns:
        ``{Metric value: float}``, plain Python floats (possibly NaN).

    Raises:
        ValueError: ``pred`` is empty, or a binary task's model does not have two classes.

    """
    from sklearn.metrics import (
        accuracy_score,
        mean_absolute_error,
        mean_squared_error,
        precision_recall_fscore_support,
    )

    if len(pred.y_true) == 0:
        raise ValueError("cannot compute metrics on zero rows")

    if not task.is_classification:
        y_true = pred.y_true.astype(float)
        y_pred = pred.y_pred.astype(float)
        ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
        ss_res = float(np.sum((y_true - y_pred) ** 2))
        return {
            Metric.MAE.value: float(mean_absolute_error(y_true, y_pred)),
            Metric.RMSE.value: float(math.sqrt(mean_squared_error(y_true, y_pred))),
            Metric.R2.value: 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        }

    if pred.proba is None:
        raise ValueError("classification metrics need class probabilities")
    if task is TaskType.BINARY:
        positive = _positive_class(pred)
        # labels=[positive] with average=None works on any subset (even one class only),
        # where average="binary" refuses some label sets.
        p, r, f, _ = precision_recall_fscore_support(
            pred.y_true, pred.y_pred, labels=[positive], average=None, zero_division=0
        )
        precision, recall, f1 = p[0], r[0], f[0]
        roc_auc = binary_roc_auc(pred.y_true == positive, pred.proba[:, 1])
    else:
        precision, recall, f1, _ = precision_recall_fscore_support(
            pred.y_true, pred.y_pred, labels=pred.classes, average="macro", zero_division=0
        )
        roc_auc = _ovr_macro_roc_auc(pred)
    return {
        Metric.ACCURACY.value: float(accuracy_score(pred.y_true, pred.y_pred)),
        Metric.PRECISION.value: float(precision),
        Metric.RECALL.value: float(recall),
        Metric.F1.value: float(f1),
        Metric.ROC_AUC.value: float(roc_auc),
    }


def confusion(pred: Predictions) -> tuple[list[str], list[list[int]]]:
    """Compute the confusion matrix of a classifier.

    Args:
        pred: Classification predictions.

    Returns:
        ``(categories, matrix)``: class labels as strings in ``classes`` order, and counts with
        rows = true class and columns = predicted class.

    Raises:
        ValueError: ``pred`` has no classes (regression).

    """
    from sklearn.metrics import confusion_matrix

    if not pred.classes:
        raise ValueError("a confusion matrix needs classification predictions")
    matrix = confusion_matrix(pred.y_true, pred.y_pred, labels=pred.classes)
    return [str(c) for c in pred.classes], [[int(v) for v in row] for row in matrix]


def roc_curve_points(
    pred: Predictions, max_points: int = 200
) -> tuple[list[float], list[float], list[float]] | None:
    """Compute the ROC curve of a binary classifier for its positive class (``classes[-1]``).

    scikit-learn's first threshold is +inf (no row predicted positive). It is replaced by
    1.0, or by the maximum score + 1e-6 when a score reaches 1.0, so that it stays finite and
    still predicts no row positive.

    Args:
        pred: Binary classification predictions.
        max_points: Most points to keep (at least 2); the first and last are always kept.

    Returns:
        ``(fpr, tpr, thresholds)`` as plain floats, or None when the predictions are not binary
        or y_true holds a single class (the curve is undefined).

    """
    from sklearn.metrics import roc_curve

    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if pred.proba is None or len(pred.classes) != 2:
        return None
    is_positive = pred.y_true == pred.classes[-1]
    if is_positive.all() or not is_positive.any():
        return None
    score = pred.proba[:, 1]
    fpr, tpr, thresholds = roc_curve(is_positive, score)
    thresholds = thresholds.copy()
    thresholds[~np.isfinite(thresholds)] = max(1.0, float(score.max()) + 1e-6)
    if len(fpr) > max_points:
        # Evenly spaced indices keep the curve's shape and its monotone order.
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return [float(v) for v in fpr], [float(v) for v in tpr], [float(v) for v in thresholds]
