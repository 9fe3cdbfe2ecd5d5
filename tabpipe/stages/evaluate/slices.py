"""Metrics per slice: per value of chosen feature columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tabpipe.config import TaskType
from tabpipe.stages.evaluate.metrics import compute_metrics
from tabpipe.stages.evaluate.predictions import Predictions, plain

#: Slice value used for missing values, so they form their own slice.
NULL_SLICE_VALUE = "<null>"


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if v is None or math.isnan(v) else float(v)) for k, v in metrics.items()}


def slice_metrics(
    features: pd.DataFrame,
    pred: Predictions,
    task: TaskType,
    columns: Sequence[str],
    max_values: int,
) -> list[dict]:
    """Metrics per value of each slice column.

    For each column, its ``max_values`` most frequent values (ties broken by the value's
    string) each give one slice; missing values form the slice ``"<null>"``. Slices with
    fewer than 2 rows are skipped.

    Args:
        features: The feature frame ``pred`` was computed on (rows aligned by position).
        pred: Predictions on ``features``.
        task: Learning task.
        columns: Columns of ``features`` to slice on.
        max_values: Most values per column.

    Returns:
        One flat dict per slice: ``column``, ``value`` (str), ``n`` (rows) and the metrics of
        :func:`compute_metrics`, with undefined (NaN) metrics as None so it is JSON-safe.

    Raises:
        ValueError: a slice column is not in ``features``, or the lengths differ.

    """
    if len(features) != len(pred.y_true):
        raise ValueError(f"features has {len(features)} rows but the predictions have {len(pred.y_true)}")
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"slice column(s) not in the evaluation data: {missing}")

    out: list[dict] = []
    for column in columns:
        values = features[column]
        is_null = values.isna().to_numpy(dtype=bool)
        # (label, n, value); value None stands for the null slice.
        candidates: list[tuple[str, int, Any]] = [
            (str(plain(v)), int(n), v) for v, n in values.value_counts(dropna=True).items()
        ]
        if is_null.any():
            candidates.append((NULL_SLICE_VALUE, int(is_null.sum()), None))
        candidates.sort(key=lambda item: (-item[1], item[0]))
        for label, n, value in candidates[:max_values]:
            if n < 2:
                continue
            mask = is_null if value is None else (values == value).fillna(False).to_numpy(dtype=bool)
            metrics = compute_metrics(pred.subset(mask), task)
            out.append({"column": column, "value": label, "n": n, **_json_safe(metrics)})
    return out
