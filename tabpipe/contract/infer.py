"""Drafting a contract from example data (``tabpipe infer-schema``), for a user to review.

The draft is meant to be *kept*: ranges are soft bounds with a margin (a plausible
row just past the sample's extremes is flagged, not rejected), numeric columns
with a few missing-value tokens stay numeric, ``yes``/``no``-style columns are
booleans, text differing only by case or spaces is normalised, and constant and
identifier-like columns are called out (:class:`Draft` notes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from tabpipe.contract.frame import hashable
from tabpipe.contract.rules import boolean_token, parse_dates
from tabpipe.contract.rules import plain as plain_value
from tabpipe.contract.schema import ColumnContract, ColumnType, DataContract, Normalization, normalize_text

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T].*)?$")

#: A text column is drafted numeric with missing-value tokens when at most this share of its
#: present values does not parse as a number ...
NA_MAX_SHARE = 0.05
#: ... those values are at most this many distinct tokens ...
NA_MAX_TOKENS = 3
#: ... and no token holds a digit ("12a" is a typo to fix, not a way of writing "missing").
_DIGIT = re.compile(r"\d")
#: Soft bounds widen the observed range by this fraction of its span on each side.
SOFT_MARGIN = 0.1


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


@dataclass(frozen=True)
class Draft:
    """A drafted contract and what a reviewer should look at first.

    Attributes:
        contract: The draft.
        notes: One line per flagged column (constant, identifier-like, missing-value
            tokens, boolean tokens, normalised text, datetimes), for the command's summary.
    """

    contract: DataContract
    notes: list[str] = field(default_factory=list)


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    return (ptypes.is_object_dtype(dtype) or ptypes.is_string_dtype(dtype)) and not isinstance(
        dtype, pd.CategoricalDtype
    )


def _na_tokens(series: pd.Series) -> list[str] | None:
    """The missing-value tokens of a mostly numeric text column, or None when it is not one.

    Drafted as numeric when at most :data:`NA_MAX_SHARE` of the present values, in at
    most :data:`NA_MAX_TOKENS` distinct tokens without digits (``"?"``, ``"NA"``,
    ``"n/a"``, ``"-"``, ``""``), do not parse as numbers: below that a column is numbers
    with a way of writing "missing"; above it, it is text.
    """
    present = series.dropna()
    if present.empty or not _is_text(series) or not all(isinstance(v, str) for v in present):
        return None
    numbers = pd.to_numeric(present.astype(object), errors="coerce")
    bad = numbers.isna()
    if not bad.any() or bad.all():
        return None
    tokens = sorted({str(v) for v in present[bad]})
    if bad.mean() > NA_MAX_SHARE or len(tokens) > NA_MAX_TOKENS or any(_DIGIT.search(t) for t in tokens):
        return None
    return tokens


def _boolean_tokens(series: pd.Series) -> pd.Series | None:
    """A text column of boolean tokens (yes/no, true/false, y/n, t/f, any case) as booleans, else None."""
    present = series.dropna()
    if present.empty or not _is_text(series) or not all(isinstance(v, str) for v in present):
        return None
    mapped = [boolean_token(v) for v in present]
    if any(m is None for m in mapped):
        return None
    out = pd.Series([None] * len(series), index=series.index, dtype=object)
    out[present.index] = [bool(m) for m in mapped]
    return out


def _normalization(values: pd.Series) -> list[Normalization]:
    """The steps that merge values differing only by surrounding spaces or case (none when nothing merges).

    A step is proposed only when leaving it out would keep apart values the other merges.
    """
    distinct = {v for v in values if isinstance(v, str)}
    both = len({v.strip().casefold() for v in distinct})
    if both == len(distinct):
        return []
    steps: list[Normalization] = []
    if len({v.casefold() for v in distinct}) > both:
        steps.append(Normalization.STRIP)
    if len({v.strip() for v in distinct}) > both:
        steps.append(Normalization.CASEFOLD)
    return steps


def _tidy_step(width: float, integer: bool) -> float:
    """A round step (1, 2 or 5 times a power of ten) dividing ``width`` into at most 20 parts."""
    if width <= 0:
        return 1.0
    unit = 10.0 ** (math.floor(math.log10(width)) - 1)
    step = next(unit * m for m in (1, 2, 5, 10) if width / (unit * m) <= 20)
    return max(step, 1.0) if integer else step


def soft_bounds(low: float, high: float, integer: bool) -> tuple[float | None, float | None, float | None]:
    """Draft bounds for a numeric column observed in ``[low, high]``: ``(min, soft_min, soft_max)``.

    Why soft, and this margin: a sample's extremes are not the population's (the
    next batch holds an 85-year-old when the sample's oldest was 84), so hard
    bounds at the extremes reject plausible rows. The range is widened by
    :data:`SOFT_MARGIN` (10%) of its span on each side and rounded outward to a
    tidy step (age 18..84 gives 10..95), and it is *soft*: a value outside is
    accepted and counted, so a guess that is too narrow costs a warning, never a
    refused request. The only hard bound drafted is ``min: 0`` when no value is
    negative: counts, amounts and sizes cannot be, and a negative one is a bug.

    Returns:
        The hard min (0 or None), and the soft min (None when it would be the hard
        min) and soft max.
    """
    span = high - low
    margin = SOFT_MARGIN * span if span > 0 else max(abs(high) * SOFT_MARGIN, 1.0)
    wide_low, wide_high = low - margin, high + margin
    step = _tidy_step(wide_high - wide_low, integer)
    soft_low = round(math.floor(wide_low / step) * step, 10)
    soft_high = round(math.ceil(wide_high / step) * step, 10)
    hard_min = None
    if low >= 0:
        hard_min = 0.0
        soft_low = max(soft_low, 0.0)
    return hard_min, (None if soft_low == hard_min else soft_low), soft_high


def draft_contract(df: pd.DataFrame, name: str, max_categories: int = 20) -> Draft:
    """Draft a contract from a table, for a new user to review, edit and keep.

    Per column:

    * dtype: as read, except that a text column of numbers with a few missing-value
      tokens (:func:`_na_tokens`) is numeric, its tokens listed in the contract's
      ``na_values``, and a text column of boolean tokens (``yes``/``no``, ``true``/``false``,
      ``y``/``n``, ``t``/``f``, any case) is boolean;
    * nullable when the column has nulls (missing-value tokens included);
    * ``normalize`` on a string column whose values differ only by surrounding spaces
      or case (the listed values are then the normalised ones);
    * allowed values (sorted) when an integer, string or boolean column has at most
      ``max_categories`` distinct values and is neither constant nor identifier-like;
    * numeric ranges as soft bounds with a margin (:func:`soft_bounds`);
    * a constant column gets a description saying so and suggesting ``features.drop``;
      an identifier-like one (integers or strings, every value distinct) is ``unique``
      with a description saying it is not used as a feature.

    Quality rules keep their defaults and no PII action is guessed. All values are
    plain Python types, so :func:`tabpipe.contract.dump_contract` writes the draft as YAML.

    Args:
        df: An example of the data, read without the contract's ``na_values``.
        name: The contract's name.
        max_categories: Largest number of distinct values listed as allowed.

    Returns:
        The draft and its notes.
    """
    columns: dict[str, ColumnContract] = {}
    na_values: set[str] = set()
    notes: list[str] = []
    for col in df.columns:
        label = str(col)
        series = df[col]
        if isinstance(series, pd.DataFrame):  # duplicated column name: the first one wins
            series = series.iloc[:, 0]
        tokens = _na_tokens(series)
        booleans = None if tokens is not None else _boolean_tokens(series)
        if tokens is not None:
            na_values.update(tokens)
            series = pd.to_numeric(series.astype(object).where(~series.isin(tokens), None), errors="coerce")
            notes.append(f"{label}: numeric with missing-value token(s) {tokens} (added to na_values)")
            dtype = _infer_type(series)
        elif booleans is not None:
            series = booleans
            dtype = ColumnType.BOOLEAN
            notes.append(f"{label}: boolean written as text tokens (yes/no, true/false, y/n or t/f)")
        else:
            dtype = _infer_type(series)
        values = series.dropna()
        spec: dict[str, Any] = {"dtype": dtype, "nullable": bool(series.isna().any())}
        if dtype is ColumnType.STRING:
            steps = _normalization(values)
            if steps:
                spec["normalize"] = steps
                values = pd.Series(
                    [normalize_text(v, steps) if isinstance(v, str) else v for v in values],
                    index=values.index,
                    dtype=object,
                )
                shown = ", ".join(step.value for step in steps)
                notes.append(f"{label}: values differ only by case or spaces; normalize: [{shown}]")
        hv = hashable(values)
        n_distinct = int(hv.nunique())
        constant = n_distinct == 1 and len(hv) > 1
        all_distinct = bool(hv.is_unique) and len(hv) > 1
        if constant:
            spec["description"] = (
                f"constant in the sample (every value is {plain_value(hv.iloc[0])!r}): no information "
                "for a model; consider adding it to features.drop"
            )
            notes.append(f"{label}: constant; consider adding it to features.drop")
        elif dtype in (ColumnType.INTEGER, ColumnType.STRING) and all_distinct:
            spec["unique"] = True
            spec["description"] = "identifier-like (every value distinct): unique, not used as a feature"
            notes.append(f"{label}: identifier-like (every value distinct); unique, not a feature")
        if dtype is ColumnType.DATETIME:
            notes.append(f"{label}: datetime; a feature only through features.date_parts")
        listable = dtype in (ColumnType.INTEGER, ColumnType.STRING, ColumnType.BOOLEAN)
        if listable and not values.empty and not constant and not spec.get("unique"):
            distinct = hv.unique()
            if len(distinct) <= max_categories:
                if dtype is ColumnType.INTEGER:
                    spec["allowed"] = sorted(int(v) for v in distinct)
                elif dtype is ColumnType.BOOLEAN:
                    spec["allowed"] = sorted({bool(v) for v in distinct})
                else:
                    spec["allowed"] = _sorted_plain(list(distinct))
        if dtype in (ColumnType.INTEGER, ColumnType.FLOAT) and not values.empty and "allowed" not in spec:
            numeric = pd.to_numeric(values)
            low, high = float(plain_value(numeric.min())), float(plain_value(numeric.max()))
            hard_min, soft_min, soft_max = soft_bounds(low, high, dtype is ColumnType.INTEGER)
            if hard_min is not None:
                spec["min"] = hard_min
            # Identifiers and constants grow or never vary: a range says nothing about them.
            if not constant and not spec.get("unique"):
                spec["soft_min"], spec["soft_max"] = soft_min, soft_max
        columns[label] = ColumnContract(**spec)
    if na_values:
        # na_values apply to every column when reading: a text column holding a token
        # reads it as null from then on.
        for col in df.columns:
            label = str(col)
            drafted = columns[label]
            series = df[col] if not isinstance(df[col], pd.DataFrame) else df[col].iloc[:, 0]
            if drafted.dtype is not ColumnType.STRING or not series.isin(sorted(na_values)).any():
                continue
            kept = [v for v in drafted.allowed or [] if v not in na_values] or None
            columns[label] = drafted.model_copy(
                update={"nullable": True, "allowed": kept if drafted.allowed is not None else None}
            )
    contract = DataContract(name=name, columns=columns, na_values=sorted(na_values))
    return Draft(contract=contract, notes=notes)


def infer_contract(df: pd.DataFrame, name: str, max_categories: int = 20) -> DataContract:
    """Draft a contract from a table (see :func:`draft_contract`, which also returns the notes)."""
    return draft_contract(df, name, max_categories).contract
