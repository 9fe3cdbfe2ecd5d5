"""Table-level quality rules: missing ratios, duplicate rows, constant columns, the target's classes."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tabpipe.config import TaskType
from tabpipe.contract import DataContract, QualityRules
from tabpipe.contract.frame import hashable
from tabpipe.contract.rules import ValueKind, fmt, plain, value_kind


def label(value: Any) -> str:
    """Format a value as a plain label (a class name): unquoted, whole floats without '.0'."""
    value = plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _infinite(values: pd.Series) -> pd.Series:
    """Which cells hold +/-inf (numbers in a numeric or an object column)."""
    import numpy as np
    from pandas.api import types as ptypes

    if ptypes.is_bool_dtype(values.dtype):
        return pd.Series(False, index=values.index)
    if ptypes.is_numeric_dtype(values.dtype):
        return pd.Series(np.isinf(values.to_numpy(dtype="float64", na_value=np.nan)), index=values.index)
    if ptypes.is_object_dtype(values.dtype):
        return values.map(lambda v: isinstance(v, float | np.floating) and bool(np.isinf(v))).astype(bool)
    return pd.Series(False, index=values.index)


def check_quality(
    df: pd.DataFrame, contract: DataContract, target: str, task: TaskType
) -> tuple[list[str], list[str], dict]:
    """Check table-level quality rules.

    Args:
        df: The table.
        contract: Its contract; ``contract.quality`` holds the rules.
        target: Name of the target column.
        task: Learning task; class balance rules apply to classification only.

    Returns:
        (violations, warnings, quality): quality holds plain-typed statistics:
        ``missing_ratio`` per column, ``duplicate_rows``, ``duplicate_ratio``,
        ``constant_columns``, ``target`` and ``class_balance`` (classification).

    """
    rules: QualityRules = contract.quality
    violations: list[str] = []
    notes: list[str] = []
    n = len(df)
    df = df.loc[:, ~df.columns.duplicated()]

    missing_ratio = {str(c): (float(df[c].isna().mean()) if n else 0.0) for c in df.columns}
    for col, ratio in missing_ratio.items():
        if ratio > rules.max_missing_ratio:
            violations.append(
                f"column {col!r}: missing ratio {ratio:.3f} exceeds "
                f"max_missing_ratio {rules.max_missing_ratio}"
            )

    table = pd.DataFrame({c: hashable(df[c]) for c in df.columns}, index=df.index)
    dup_rows = int(table.duplicated().sum()) if n else 0
    dup_ratio = dup_rows / n if n else 0.0
    if dup_ratio > rules.max_duplicate_ratio:
        violations.append(
            f"table: {dup_rows} duplicate row(s), ratio {dup_ratio:.3f} exceeds "
            f"max_duplicate_ratio {rules.max_duplicate_ratio}"
        )

    constant: list[str] = []
    for c in df.columns:
        if str(c) == target:  # the target has its own, more specific rules below
            continue
        distinct = table[c].dropna().unique()
        if len(distinct) == 1:
            constant.append(str(c))
            line = f"column {str(c)!r} is constant (only value {fmt(distinct[0])})"
            if rules.forbid_constant_columns:
                violations.append(f"{line}; forbid_constant_columns is true")
            else:
                notes.append(line)

    quality: dict[str, object] = {
        "n_rows": n,
        "n_columns": df.shape[1],
        "missing_ratio": missing_ratio,
        "duplicate_rows": dup_rows,
        "duplicate_ratio": dup_ratio,
        "constant_columns": constant,
        "target": target,
        "class_balance": None,
    }

    if target in df.columns:
        y = table[target]
        # Checked whatever the contract says (a nullable target included): every row
        # needs a finite target value to train on, so these stop the run here rather
        # than crash the fit later.
        n_missing = int(y.isna().sum())
        if n_missing:
            violations.append(f"target {target!r}: {n_missing} missing value(s)")
        infinite = _infinite(y)
        n_infinite = int(infinite.sum())
        declared = contract.columns.get(target)
        # A numeric target's contract row rule ("finite") already names these; say it once.
        said_by_contract = declared is not None and value_kind(declared.dtype) is ValueKind.NUMBER
        if n_infinite and not said_by_contract:
            violations.append(
                f"target {target!r}: {n_infinite} infinite value(s); every target value must be finite"
            )
        present = y[~y.isna() & ~infinite]
        if task.is_classification:
            counts = present.value_counts()
            shares = counts / counts.sum() if len(present) else counts.astype(float)
            quality["class_balance"] = {label(k): float(v) for k, v in shares.items()}
            if len(counts) == 1:
                violations.append(
                    f"target {target!r} has a single class ({fmt(counts.index[0])} in {int(counts.iloc[0])} "
                    f"row(s)); a classifier needs at least two"
                )
            elif len(counts) > 1 and shares.min() < rules.min_class_ratio:
                smallest = shares.idxmin()
                violations.append(
                    f"target {target!r}: smallest class {fmt(smallest)} has share {shares.min():.3f}, "
                    f"below min_class_ratio {rules.min_class_ratio}"
                )
        elif present.nunique() == 1:
            violations.append(f"target {target!r} is constant (only value {fmt(present.iloc[0])})")
    return violations, notes, quality
