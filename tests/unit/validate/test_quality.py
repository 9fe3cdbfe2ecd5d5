"""Table-level quality rules."""

from __future__ import annotations

import json

import pandas as pd
from validate_support import contract

from tabpipe.config import TaskType
from tabpipe.stages.validate import (
    check_quality,
)


def test_quality_stats_and_clean_table():
    df = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    c = contract(
        {"x": {"dtype": "float", "nullable": True}, "c": {"dtype": "string"}, "y": {"dtype": "integer"}}
    )
    violations, warnings, quality = check_quality(df, c, "y", TaskType.BINARY)
    assert violations == [] and warnings == []
    assert quality["missing_ratio"] == {"x": 0.25, "c": 0.0, "y": 0.0}
    assert quality["duplicate_rows"] == 0 and quality["duplicate_ratio"] == 0.0
    assert quality["constant_columns"] == []
    assert quality["class_balance"] == {"0": 0.5, "1": 0.5}
    json.dumps(quality, allow_nan=False)


def test_missing_ratio_and_duplicate_ratio_violations():
    df = pd.DataFrame({"x": [None, None, None, 1.0, 2.0], "k": [1, 1, 1, 2, 3], "y": [0, 0, 0, 1, 1]})
    c = contract(
        {"x": {"dtype": "float", "nullable": True}, "k": {"dtype": "integer"}, "y": {"dtype": "integer"}},
        quality={"max_missing_ratio": 0.5, "max_duplicate_ratio": 0.2},
    )
    violations, _, quality = check_quality(df, c, "y", TaskType.BINARY)
    assert violations == [
        "column 'x': missing ratio 0.600 exceeds max_missing_ratio 0.5",
        "table: 2 duplicate row(s), ratio 0.400 exceeds max_duplicate_ratio 0.2",
    ]
    assert quality["duplicate_rows"] == 2


def test_constant_columns_violation_or_warning():
    df = pd.DataFrame({"const": [7, 7, 7, None], "x": [1, 2, 3, 4], "y": [0, 1, 0, 1]})
    doc = {
        "const": {"dtype": "integer", "nullable": True},
        "x": {"dtype": "integer"},
        "y": {"dtype": "integer"},
    }
    violations, warnings, quality = check_quality(df, contract(doc), "y", TaskType.BINARY)
    assert violations == ["column 'const' is constant (only value 7); forbid_constant_columns is true"]
    assert warnings == [] and quality["constant_columns"] == ["const"]
    relaxed = contract(doc, quality={"forbid_constant_columns": False})
    violations, warnings, _ = check_quality(df, relaxed, "y", TaskType.BINARY)
    assert violations == [] and warnings == ["column 'const' is constant (only value 7)"]


def test_classification_target_rules():
    doc = {"x": {"dtype": "integer"}, "y": {"dtype": "string", "nullable": True}}
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["spam", "spam", "spam"]})
    violations, _, _ = check_quality(df, contract(doc), "y", TaskType.BINARY)
    assert violations == [
        "target 'y' has a single class ('spam' in 3 row(s)); a classifier needs at least two"
    ]

    df = pd.DataFrame({"x": range(20), "y": ["a"] * 19 + ["b"]})
    strict = contract(doc, quality={"min_class_ratio": 0.1})
    violations, _, quality = check_quality(df, strict, "y", TaskType.MULTICLASS)
    assert violations == ["target 'y': smallest class 'b' has share 0.050, below min_class_ratio 0.1"]
    assert quality["class_balance"] == {"a": 0.95, "b": 0.05}

    df = pd.DataFrame({"x": [1, 2, 3, 4], "y": ["a", None, "b", "a"]})
    violations, _, _ = check_quality(df, contract(doc), "y", TaskType.BINARY)
    assert violations == ["target 'y': 1 missing value(s)"]


def test_regression_constant_target():
    doc = {"x": {"dtype": "float"}, "y": {"dtype": "float"}}
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.5, 2.5, 2.5]})
    violations, _, quality = check_quality(df, contract(doc), "y", TaskType.REGRESSION)
    assert violations == ["target 'y' is constant (only value 2.5)"]
    assert quality["class_balance"] is None
    df["y"] = [1.0, 2.0, 3.0]
    assert check_quality(df, contract(doc), "y", TaskType.REGRESSION)[0] == []
