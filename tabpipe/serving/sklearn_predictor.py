"""The scikit-learn predictor: runs the checksum-verified bundle's Pipeline in process."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import sklearn

from tabpipe.serving_spec import ServingSpec


class SklearnPredictor:
    """Predicts with a fitted scikit-learn Pipeline on named input columns.

    Args:
        model: The fitted Pipeline (preprocessing + estimator) from the bundle.
        spec: Its serving spec; fixes the input column order.
    """

    kind = "sklearn"

    def __init__(self, model: Any, spec: ServingSpec) -> None:
        self._model = model
        self._names = [inp.name for inp in spec.inputs]
        self._proba = spec.task.is_classification and hasattr(model, "predict_proba")
        # predict_proba's columns follow classes_; the labels come from the same array.
        self._classes = np.asarray(model.classes_) if self._proba else None

    def predict(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return predictions and, for classifiers, class probabilities (n_rows × n_classes)."""
        # One array per column keeps each column's dtype (float64 or object) without a
        # row-wise object matrix; the ColumnTransformer selects by name.
        frame = pd.DataFrame({name: columns[name] for name in self._names}, copy=False)
        # Inputs are already validated (no infinities; NaN only where the imputer expects it),
        # so scikit-learn's own re-checks are skipped: about 10% of a one-row call.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            if self._classes is None:
                return np.asarray(self._model.predict(frame)), None
            # One pass through the preprocessing: the label is the most probable class, which is
            # what predict returns for the estimators tabpipe trains.
            proba = np.asarray(self._model.predict_proba(frame), dtype=np.float64)
        return self._classes[proba.argmax(axis=1)], proba
