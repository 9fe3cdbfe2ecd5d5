"""Drafting a contract from example data (``tabpipe infer-schema``), for a user to review."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from tabpipe.contract.frame import hashable
from tabpipe.contract.rules import parse_dates
from tabpipe.contract.rules import plain as plain_value
from tabpipe.contract.schema import ColumnContract, ColumnType, DataContract

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T].*)?$")


def _is_whole(values: pd.Series) -> pd.Series:
    """Element-wise: finite and without a fractional part."""
    arr = values.to_numpy(dtype=float)
    return pd.Series(np.isfinite(arr) & (np.mod(arr, 1) == 0), index=values.index)


def _infer_type(series: pd.Series) -> ColumnType:
    dtype = series.dtype
    values = series.dropna()
    if ptypes.is_bool_dtype(dtype):
        return ColumnType.BOOLEAN
    if ptypes.is_datetime64_any_dtype(dtype):
        return ColumnType.DATETIME
    if ptypes.is_integer_dtype(dtype):
        return ColumnType.INTEGER
    if ptypes.is_float_dtype(dtype):
        if not values.empty and bool(_is_whole(values).all()):
            return ColumnType.INTEGER
        return ColumnType.FLOAT
    if ptypes.is_numeric_dtype(dtype):
        return ColumnType.FLOAT
    if not values.empty and ptypes.is_object_dtype(dtype) and all(isinstance(v, bool) for v in values):
        return ColumnType.BOOLEAN  # CSV reads a bool column with nulls as object
    # Only ISO dates become datetime: free-form strings such as "1" or "3/4" parse too, wrongly.
    if (
        not values.empty
        and not isinstance(dtype, pd.CategoricalDtype)
        and all(isinstance(v, str) and _ISO_DATE.match(v) for v in values)
        and all(p is not None for p in parse_dates(values.to_numpy(dtype=object)))
    ):
        return ColumnType.DATETIME
    return ColumnType.STRING


def _sorted_plain(values: Sequence[Any]) -> list[Any]:
    values_plain = [plain_value(v) for v in values]
    try:
        return sorted(values_plain)
    except TypeError:
        return sorted(values_plain, key=lambda v: (type(v).__name__, str(v)))


def infer_contract(df: pd.DataFrame, name: str, max_categories: int = 20) -> DataContract:
    """Draft a contract from a table, for a new user to review and edit.

    Per column: the dtype; nullable when the column has nulls; allowed values
    (sorted) when an integer, string or boolean column has at most
    ``max_categories`` distinct values, unless every value is distinct (then
    the column looks like an identifier, not a category); the observed min and
    max of numeric columns; unique when an integer or string column of more
    than one value has no repeats. Quality rules keep their defaults and no
    PII action is guessed. All values are plain Python types, so
    :func:`tabpipe.contract.dump_contract` can write the draft as YAML.

    Args:
        df: An example of the data.
        name: The contract's name.
        max_categories: Largest number of distinct values listed as allowed.

    Returns:
        The drafted contract.

    """
    columns: dict[str, ColumnContract] = {}
    for col in df.columns:
        series = df[col]
        if isinstance(series, pd.DataFrame):  # duplicated column name: the first one wins
            series = series.iloc[:, 0]
        dtype = _infer_type(series)
        values = series.dropna()
        hv = hashable(values)
        spec: dict[str, Any] = {"dtype": dtype, "nullable": bool(series.isna().any())}
        all_distinct = bool(hv.is_unique) and len(hv) > 1
        if dtype in (ColumnType.INTEGER, ColumnType.STRING) and all_distinct:
            spec["unique"] = True
        if dtype in (ColumnType.INTEGER, ColumnType.STRING, ColumnType.BOOLEAN) and not values.empty:
            distinct = hv.unique()
            if len(distinct) <= max_categories and not spec.get("unique"):
                if dtype is ColumnType.INTEGER:
                    spec["allowed"] = sorted(int(v) for v in distinct)
                elif dtype is ColumnType.BOOLEAN:
                    spec["allowed"] = sorted({bool(v) for v in distinct})
                else:
                    spec["allowed"] = _sorted_plain(list(distinct))
        if dtype in (ColumnType.INTEGER, ColumnType.FLOAT) and not values.empty:
            numeric = pd.to_numeric(values)
            low, high = plain_value(numeric.min()), plain_value(numeric.max())
            spec["min"], spec["max"] = float(low), float(high)
        columns[str(col)] = ColumnContract(**spec)
    return DataContract(name=name, columns=columns)
