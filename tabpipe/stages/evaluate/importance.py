"""Permutation importance of the raw feature columns, scored in a few batched predictions.

scikit-learn's ``permutation_importance`` calls the model once per column and
repeat (30 columns x 3 repeats = 90 calls through the whole pipeline on the
default data), and each call pays the pipeline's fixed cost: pandas column
handling, input validation and, for tree ensembles, a thread-pool start per tree.
Here every permuted copy of the rows is stacked into one frame and scored in a
few large ``predict`` calls, and rows a shuffle leaves exactly as they were
(common with coded features) reuse their baseline prediction; identical rows are
predicted once. The shuffles are
drawn exactly as scikit-learn draws them, so the numbers are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabpipe.config import TaskType

#: Most stacked rows per ``predict`` call: bounds memory (about 50,000 x n_columns values).
_BATCH_ROWS = 50_000


def sklearn_shuffles(seed: int, n_rows: int, n_repeats: int) -> list[np.ndarray]:
    """The row orders scikit-learn's ``permutation_importance`` gives a column on each repeat.

    scikit-learn (1.1 and later) draws one seed from ``RandomState(seed)`` and gives every
    column a fresh ``RandomState`` with it; each repeat shuffles an index array in place
    and re-permutes the already permuted column, so repeat ``r`` applies the composition
    of the first ``r + 1`` shuffles.

    Args:
        seed: The ``random_state`` passed to ``permutation_importance``.
        n_rows: Rows in the scored frame.
        n_repeats: Repeats per column.

    Returns:
        For each repeat, ``order`` such that the permuted column is ``column[order]``.

    """
    seed_for_columns = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    rng = np.random.RandomState(seed_for_columns)
    shuffling = np.arange(n_rows)
    order = np.arange(n_rows)
    orders = []
    for _ in range(n_repeats):
        rng.shuffle(shuffling)
        order = order[shuffling]
        orders.append(order)
    return orders


def _unchanged(column: pd.Series, order: np.ndarray) -> np.ndarray:
    """Rows whose value the reordering leaves exactly as it was (False when unsure).

    Only plain numpy numeric and boolean columns are compared: equal values, equal NaN-ness
    and, for floats, equal sign (a model could tell -0.0 from 0.0). Other dtypes count as
    changed, which is always safe.
    """
    values = column.to_numpy()
    if column.dtype.kind not in "biuf" or values.dtype == object:
        return np.zeros(len(values), dtype=bool)
    moved = values[order]
    if values.dtype.kind != "f":
        return values == moved
    same = (values == moved) & (np.signbit(values) == np.signbit(moved))
    return same | (np.isnan(values) & np.isnan(moved))


def _row_keys(frame: pd.DataFrame) -> np.ndarray | None:
    """The raw bits of each row (one uint64 per cell), or None when a column is not plain numeric.

    Rows with equal keys hold bit-identical values (so -0.0 and 0.0 differ, and NaN only
    equals the same NaN), hence get the same prediction.
    """
    parts = []
    for _, column in frame.items():
        values = column.to_numpy()
        if values.dtype.kind in "biu":
            parts.append(values.astype(np.int64).view(np.uint64))
        elif values.dtype == np.float64:
            parts.append(values.view(np.uint64))
        else:
            return None
    return np.column_stack(parts) if parts else None


def _predict_distinct(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """``model.predict(frame)``, predicting each distinct row once (coded features repeat a lot).

    Rows are grouped by a 64-bit hash of their bits, and the grouping is then checked
    bit for bit; on a hash collision every row is predicted.
    """
    keys = _row_keys(frame)
    if keys is None:
        return np.asarray(model.predict(frame))
    hashes = pd.util.hash_pandas_object(pd.DataFrame(keys), index=False).to_numpy()
    codes, uniques = pd.factorize(hashes)
    first = np.empty(len(uniques), dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # reversed: the first row of each group wins
    if not np.array_equal(keys[first][codes], keys):
        return np.asarray(model.predict(frame))
    return np.asarray(model.predict(frame.iloc[first]))[codes]


def _stacked(features: pd.DataFrame, jobs: list[tuple[int, np.ndarray]]) -> pd.DataFrame:
    """The rows of ``features`` with column ``j`` reordered by ``order``, for every job stacked.

    Each job gives ``(column index, order, rows)``: only ``rows`` of the permuted copy are kept.
    """
    takes = [np.concatenate([rows for _, _, rows in jobs])] * features.shape[1]
    columns = {}
    for j, name in enumerate(features.columns):
        take = takes[j].copy()
        start = 0
        for col, order, rows in jobs:
            if col == j:
                take[start : start + len(rows)] = order[rows]
            start += len(rows)
        # ``take`` on the column's own array keeps its dtype (nullable, string, categorical).
        columns[name] = features[name].array.take(take)
    return pd.DataFrame(columns, columns=features.columns)


def permutation_importance_table(
    model: Any,
    features: pd.DataFrame,
    y_true: pd.Series,
    task: TaskType,
    seed: int,
    n_repeats: int = 3,
    max_rows: int = 2000,
) -> pd.DataFrame:
    """Permutation importance of the raw feature columns.

    The model pipeline does its own preprocessing, so whole raw columns are shuffled. Scoring
    is accuracy for classification and r2 for regression, which are defined on every task.
    At most ``max_rows`` rows are used, sampled with ``seed``.

    The numbers equal ``sklearn.inspection.permutation_importance(model, features, y_true,
    scoring=..., n_repeats=n_repeats, random_state=seed)`` on the same rows: the shuffles are
    drawn the same way (:func:`sklearn_shuffles`) and the scores computed with the same
    functions. Only the batching differs: all permuted copies are predicted in a few stacked
    calls, a permuted row equal to its original keeps its baseline prediction, and
    bit-identical rows of numeric frames are predicted once. All three assume
    (as holds for fitted scikit-learn pipelines) that a row's prediction depends on that row
    only, not on the other rows it is predicted with.

    Args:
        model: A fitted scikit-learn pipeline taking the raw features.
        features: Raw feature frame.
        y_true: True targets, aligned by position with ``features``.
        task: Learning task.
        seed: Seed for the row sample and the shuffles.
        n_repeats: Shuffles per column.
        max_rows: Most rows to use.

    Returns:
        Columns ``feature``, ``importance_mean``, ``importance_std``; one row per feature,
        most important first.

    """
    from sklearn.metrics import accuracy_score, r2_score

    if len(features) != len(y_true):
        raise ValueError(f"features has {len(features)} rows but y_true has {len(y_true)}")
    if len(features) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), size=max_rows, replace=False))
        features, y_true = features.iloc[rows], y_true.iloc[rows]
    features = features.reset_index(drop=True)
    y = np.asarray(y_true)
    n = len(features)
    score = accuracy_score if task.is_classification else r2_score

    base_pred = np.asarray(model.predict(features))
    baseline = score(y, base_pred)
    orders = sklearn_shuffles(seed, n, n_repeats)
    # Rows a shuffle leaves unchanged keep their baseline prediction; only the others are predicted.
    jobs = []
    for j, name in enumerate(features.columns):
        for r, order in enumerate(orders):
            changed = np.flatnonzero(~_unchanged(features[name], order))
            jobs.append((j, r, order, changed))
    permuted = np.empty((features.shape[1], n_repeats))
    batch: list[tuple[int, int, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        stacked = _stacked(features, [(j, o, rows) for j, _, o, rows in batch])
        # scikit-learn refuses zero rows; a batch of constant columns has nothing to predict.
        pred = _predict_distinct(model, stacked) if len(stacked) else base_pred[:0]
        start = 0
        for j, r, _, rows in batch:
            job_pred = base_pred.copy()
            job_pred[rows] = pred[start : start + len(rows)]
            start += len(rows)
            permuted[j, r] = score(y, job_pred)
        batch.clear()

    pending = 0
    for job in jobs:
        batch.append(job)
        pending += len(job[3])
        if pending >= _BATCH_ROWS:
            flush()
            pending = 0
    if batch:
        flush()

    importances = baseline - permuted
    table = pd.DataFrame(
        {
            "feature": [str(c) for c in features.columns],
            "importance_mean": np.mean(importances, axis=1).astype(float),
            "importance_std": np.std(importances, axis=1).astype(float),
        }
    )
    return table.sort_values(
        ["importance_mean", "feature"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
