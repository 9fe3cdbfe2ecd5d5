"""The predict step: labels, probabilities and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from tabpipe.config import TaskType
from tabpipe.stages.evaluate import (
    predict,
)


def test_predict_binary_string_labels(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    assert pred.classes == ["no", "yes"]
    assert all(type(c) is str for c in pred.classes)
    assert pred.proba is not None and pred.proba.shape == (len(frame), 2)
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0)
    assert set(pred.y_pred) <= {"no", "yes"}
    # predict's labels agree with the probability columns
    np.testing.assert_array_equal(pred.y_pred, np.array(pred.classes)[pred.proba.argmax(axis=1)])


def test_predict_regression_has_no_proba(regression):
    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    assert pred.proba is None and pred.classes == []
    assert pred.y_pred.shape == (len(frame),)


def test_predict_rejects_misaligned_lengths(binary_str):
    model, frame, y = binary_str
    with pytest.raises(ValueError, match="rows"):
        predict(model, frame, y.iloc[:-1], TaskType.BINARY)
