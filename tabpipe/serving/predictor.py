"""The interface every predictor implements, whatever runs the model."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Predictor(Protocol):
    """Predicts from validated input columns.

    ``columns`` maps each input name (in the serving spec's order) to a 1-D array
    of one dtype per contract column: float64 for integer/float/boolean columns
    (NaN for missing), object for string columns (None for missing).
    """

    #: "onnx" or "sklearn".
    kind: str

    def predict(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return predictions and, for classifiers, class probabilities (n_rows × n_classes)."""
        ...
