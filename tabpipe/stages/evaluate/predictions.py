"""A model's predictions on one data set, aligned with the true values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.config import TaskType


@dataclass(frozen=True)
class Predictions:
    """A model's predictions on one data set, aligned with the true values.

    Attributes:
        y_true: True targets, shape (n,).
        y_pred: Predicted targets, shape (n,).
        proba: Class probabilities, shape (n, n_classes), for classifiers; None for regression.
        classes: Class labels in ``proba`` column order (the model's ``classes_``, sorted
            ascending by scikit-learn); empty for regression.

    """

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: list

    def subset(self, mask: np.ndarray) -> Predictions:
        """Return the predictions of the rows where ``mask`` is True."""
        return Predictions(
            y_true=self.y_true[mask],
            y_pred=self.y_pred[mask],
            proba=None if self.proba is None else self.proba[mask],
            classes=self.classes,
        )


def plain(value: Any) -> Any:
    """Turn a numpy scalar into the equivalent Python value (JSON-safe); leave anything else."""
    return value.item() if isinstance(value, np.generic) else value


def predict(model: Any, features: pd.DataFrame, y_true: pd.Series, task: TaskType) -> Predictions:
    """Run a fitted model on raw features.

    Args:
        model: A fitted scikit-learn ``Pipeline`` taking the raw feature columns.
        features: Raw feature frame (named columns).
        y_true: True targets, one per row of ``features``.
        task: Learning task; classifiers must have ``predict_proba`` and ``classes_``.

    Returns:
        The predictions; for classifiers also the class probabilities.

    Raises:
        ValueError: ``features`` and ``y_true`` differ in length.

    """
    if len(features) != len(y_true):
        raise ValueError(f"features has {len(features)} rows but y_true has {len(y_true)}")
    y_pred = np.asarray(model.predict(features))
    if not task.is_classification:
        return Predictions(
            y_true=np.asarray(y_true, dtype=float),
            y_pred=y_pred.astype(float),
            proba=None,
            classes=[],
        )
    proba = np.asarray(model.predict_proba(features), dtype=float)
    classes = [plain(c) for c in model.classes_]
    return Predictions(y_true=np.asarray(y_true), y_pred=y_pred, proba=proba, classes=classes)
