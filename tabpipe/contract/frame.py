"""Checking a whole DataFrame against a contract: the path validation and batch scoring take.

Three layers, each reported in full so a user sees every problem at once:

1. structure: row count, duplicated, missing and unexpected column names;
2. per column, its dtype, then its canonical values (:mod:`tabpipe.contract.rules`)
   checked against the row rules shared with serving;
3. dataset rules that need the whole table: an entirely null column, ``unique``.

A column whose dtype does not conform gets only the dtype violation: its value
checks would be noise.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from tabpipe.contract.rules import (
    RuleScope,
    ValueKind,
    Violation,
    boolean_token,
    check_values,
    column_label,
    examples,
    missing_mask,
    normalize_values,
    value_kind,
)
from tabpipe.contract.schema import ColumnContract, ColumnType, DataContract

if TYPE_CHECKING:
    import pandas as pd

_BOOL_MEMBERS = {True, False}  # 0 and 1 hash equal to False and True, so they are members too


def _table(rule: str, message: str, column: str | None = None, count: int = 1) -> Violation:
    return Violation(column=column, rule=rule, scope=RuleScope.DATASET, count=count, message=message)


def hashable(series: pd.Series) -> pd.Series:
    """Replace unhashable cells (lists, dicts, arrays from JSON or Parquet) by their repr.

    value_counts, duplicated and set membership need hashable values; nested
    values are rare, so only object columns pay for the check.
    """
    from pandas.api import types as ptypes

    if not ptypes.is_object_dtype(series.dtype):
        return series
    if all(isinstance(v, Hashable) for v in series):
        return series
    return series.map(lambda v: v if isinstance(v, Hashable) else repr(v))


def _objects(series: pd.Series) -> np.ndarray:
    """Object array with None for every kind of missing value."""
    values = np.array(hashable(series).to_numpy(dtype=object, na_value=None), dtype=object)
    values[missing_mask(values)] = None
    return values


def _boolean(value: object) -> float | None:
    """The canonical value of one present cell of a boolean column, or None when it is not boolean."""
    if isinstance(value, str):
        return boolean_token(value)
    if isinstance(value, bool | int | float) and value in _BOOL_MEMBERS:
        return float(value)
    return None


def canonical_values(series: pd.Series, col: ColumnContract) -> tuple[str | None, np.ndarray]:
    """A column's dtype check and, when it conforms, its canonical values.

    Boolean columns read as text (``yes``/``no`` and the other
    :data:`~tabpipe.contract.rules.BOOLEAN_TOKENS`) map to 1.0/0.0, and string
    columns get their declared ``normalize`` steps, as serving decodes them.

    Returns:
        (problem, values): ``problem`` is None when the dtype conforms, else what
        was found (e.g. ``"found str"``); ``values`` are the canonical values.
    """
    import pandas as pd
    from pandas.api import types as ptypes

    dtype = series.dtype
    found = f"found {dtype}"
    kind = value_kind(col.dtype)
    is_bool = ptypes.is_bool_dtype(dtype)
    if kind is ValueKind.NUMBER:
        if is_bool:
            if col.dtype is ColumnType.BOOLEAN:
                return None, series.to_numpy(dtype=np.float64, na_value=np.nan)
            return found, np.empty(0)
        if ptypes.is_numeric_dtype(dtype):
            return None, series.to_numpy(dtype=np.float64, na_value=np.nan)
        if col.dtype is ColumnType.BOOLEAN and (
            ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)
        ):
            # CSV reads a boolean column with nulls as object (True/False/None), and one of
            # yes/no-style tokens as text.
            values = _objects(series)
            mapped = [None if v is None else _boolean(v) for v in values]
            bad = [v for v, m in zip(values, mapped, strict=True) if v is not None and m is None]
            if not bad:
                return None, np.array([np.nan if m is None else m for m in mapped], dtype=np.float64)
            return f"{found} holding non-boolean values (e.g. {examples(bad)})", np.empty(0)
        return found, np.empty(0)
    if kind is ValueKind.TEXT:
        if (
            ptypes.is_object_dtype(dtype)
            or ptypes.is_string_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
        ):
            return None, normalize_values(col, _objects(series))
        return found, np.empty(0)
    # DATE
    if ptypes.is_datetime64_any_dtype(dtype):
        return None, _objects(series)
    if ptypes.is_string_dtype(dtype) or ptypes.is_object_dtype(dtype):
        values = _objects(series)
        if not all(isinstance(v, str) for v in values if v is not None):
            return f"{found} holding non-string values", np.empty(0)
        return None, values
    return found, np.empty(0)


def _unique_violation(name: str, series: pd.Series) -> Violation | None:
    """Repeated values of a column (its canonical values when the column declares ``normalize``)."""
    values = hashable(series.dropna())
    dup_mask = values.duplicated(keep=False)
    if not dup_mask.any():
        return None
    dups = values[dup_mask]
    return _table(
        "unique",
        f"{column_label(name)}: {dups.nunique()} duplicated value(s) in {len(dups)} row(s) "
        f"but unique is true (e.g. {examples(dups.to_numpy())})",
        column=name,
        count=len(dups),
    )


def check_frame(
    df: pd.DataFrame, contract: DataContract, scope: RuleScope = RuleScope.DATASET
) -> list[Violation]:
    """Check a table against its contract.

    Args:
        df: The table.
        contract: Its contract.
        scope: ``DATASET`` (validation) checks everything; ``ROW`` (batch scoring,
            one chunk at a time) skips the rules that need the whole table:
            ``min_rows``, entirely-null columns and ``unique``.

    Returns:
        Every violation, structure first, then per column in contract order.
    """
    import pandas as pd

    whole_table = scope is RuleScope.DATASET
    violations: list[Violation] = []
    if whole_table and len(df) < contract.min_rows:
        violations.append(
            _table("min_rows", f"table has {len(df)} row(s), fewer than min_rows {contract.min_rows}")
        )
    present = [str(c) for c in df.columns]
    duplicated_names = sorted({c for c in present if present.count(c) > 1})
    if duplicated_names:
        violations.append(_table("columns", f"duplicated column name(s): {duplicated_names}"))
        df = df.loc[:, ~pd.Index(present).duplicated()]
        present = [str(c) for c in df.columns]
    present_set = set(present)
    missing = [c for c in contract.columns if c not in present_set]
    if missing:
        violations.append(_table("columns", f"missing column(s): {missing}"))
    if not contract.allow_extra_columns:
        extra = [c for c in present if c not in contract.columns]
        if extra:
            violations.append(_table("columns", f"unexpected column(s): {extra}"))
    by_name = dict(zip(present, df.columns, strict=True))
    for name, col in contract.columns.items():
        if name not in present_set:
            continue
        series = df[by_name[name]]
        if len(series) > 0 and bool(series.isna().all()):
            # No value to infer a dtype from: only the null rule applies.
            if whole_table:
                violations.append(
                    _table("entirely_null", f"{column_label(name)} is entirely null", column=name)
                )
            values = (
                np.full(len(series), np.nan)
                if value_kind(col.dtype) is ValueKind.NUMBER
                else _objects(series)
            )
            violations += check_values(name, col, values)
            continue
        problem, values = canonical_values(series, col)
        if problem is not None:
            message = f"{column_label(name)} expected dtype {col.dtype.value}, {problem}"
            violations.append(_table("dtype", message, column=name))
            continue
        violations += check_values(name, col, values)
        if whole_table and col.unique:
            if col.normalize:  # "A1" and "a1 " are one identifier once normalised
                series = pd.Series(values, dtype=object)
            unique = _unique_violation(name, series)
            if unique is not None:
                violations.append(unique)
    return violations


def row_messages(violations: list[Violation]) -> list[str]:
    """The messages of the row-scope errors (what every checking path must agree on); no warnings."""
    return [v.message for v in violations if v.scope is RuleScope.ROW and not v.is_warning]


def messages(violations: list[Violation]) -> list[str]:
    """Every error's message, in order: what fails validation and batch scoring (warnings excluded)."""
    return [v.message for v in violations if not v.is_warning]


def warning_messages(violations: list[Violation]) -> list[str]:
    """The soft rules' warnings, in order: reported, never a failure."""
    return [v.message for v in violations if v.is_warning]
