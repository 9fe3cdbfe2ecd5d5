"""Slice metrics: equal to the metrics on each subset, limits and undefined values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from evaluate_support import (
    REGRESSION_KEYS,
)

from tabpipe.config import TaskType
from tabpipe.stages.evaluate import (
    NULL_SLICE_VALUE,
    Predictions,
    compute_metrics,
    predict,
    slice_metrics,
)


def test_slice_metrics_equal_metrics_on_subset(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    slices = slice_metrics(frame, pred, TaskType.BINARY, ["region"], max_values=10)
    by_value = {s["value"]: s for s in slices}
    assert set(by_value) == {"north", "south", "east", NULL_SLICE_VALUE}
    assert sum(s["n"] for s in slices) == len(frame)
    for value, row in by_value.items():
        mask = frame["region"].isna() if value == NULL_SLICE_VALUE else frame["region"] == value
        sub = frame[mask]
        expected = compute_metrics(predict(model, sub, y[mask], TaskType.BINARY), TaskType.BINARY)
        assert row["column"] == "region" and row["n"] == len(sub)
        for key, v in expected.items():
            assert row[key] == pytest.approx(v)
    # Most frequent value first.
    assert slices[0]["value"] == "north"
    json.dumps(slices, allow_nan=False)


def test_slice_metrics_limits_values_and_skips_tiny_slices():
    features = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"], "h": [1] * 11})
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    score = np.linspace(0.05, 0.95, 11)
    pred = Predictions(y, (score > 0.5).astype(int), np.column_stack([1 - score, score]), [0, 1])
    limited = slice_metrics(features, pred, TaskType.BINARY, ["g"], max_values=2)
    assert [(s["value"], s["n"]) for s in limited] == [("a", 5), ("b", 3)]
    everything = slice_metrics(features, pred, TaskType.BINARY, ["g", "h"], max_values=10)
    # "d" has one row: skipped; "h" has one value: the whole set.
    assert [(s["column"], s["value"]) for s in everything] == [("g", "a"), ("g", "b"), ("g", "c"), ("h", "1")]
    assert everything[-1]["accuracy"] == pytest.approx(compute_metrics(pred, TaskType.BINARY)["accuracy"])


def test_slice_metrics_undefined_metric_is_none():
    features = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    y = np.array(["yes", "yes", "no", "yes"])  # slice "a" has one class only
    score = np.array([0.9, 0.6, 0.2, 0.7])
    proba = np.column_stack([1 - score, score])
    pred = Predictions(y, np.where(score > 0.5, "yes", "no"), proba, ["no", "yes"])
    slices = slice_metrics(features, pred, TaskType.BINARY, ["g"], max_values=5)
    by_value = {s["value"]: s for s in slices}
    assert by_value["a"]["roc_auc"] is None
    assert by_value["b"]["roc_auc"] == 1.0
    json.dumps(slices, allow_nan=False)


def test_slice_metrics_regression_and_unknown_column(regression):
    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    slices = slice_metrics(frame, pred, TaskType.REGRESSION, ["region"], max_values=3)
    assert len(slices) == 3 and all(set(s) == {"column", "value", "n", *REGRESSION_KEYS} for s in slices)
    with pytest.raises(ValueError, match="nope"):
        slice_metrics(frame, pred, TaskType.REGRESSION, ["nope"], max_values=3)
