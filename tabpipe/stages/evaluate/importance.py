"""Permutation importance of the raw feature columns, scored in a few batched predictions.

scikit-learn's ``permutation_importance`` calls the model once per column and
repeat (30 columns x 3 repeats = 90 calls through the whole pipeline on the
default data), and each call pays the pipeline's fixed cost: pandas column
handling, input validation and, for tree ensembles, a thread-pool start per tree.
Here every permuted copy of the rows is stacked into one frame and scored in a
few large ``predict`` calls. The shuffles are drawn exactly as scikit-learn
draws them, so the numbers are the same.
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


def _stacked(features: pd.DataFrame, jobs: list[tuple[int, np.ndarray]]) -> pd.DataFrame:
    """One frame holding, block after block, ``features`` with column ``j`` reordered by ``order``."""
    n = len(features)
    columns = {}
    for j, name in enumerate(features.columns):
        take = np.tile(np.arange(n), len(jobs))
        for k, (col, order) in enumerate(jobs):
            if col == j:
                take[k * n : (k + 1) * n] = order
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
    calls, which assumes (as holds for fitted scikit-learn pipelines) that a row's prediction
    does not depend on the other rows it is predicted with.

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

    baseline = score(y, model.predict(features))
    orders = sklearn_shuffles(seed, n, n_repeats)
    jobs = [(j, r) for j in range(features.shape[1]) for r in range(n_repeats)]
    permuted = np.empty((features.shape[1], n_repeats))
    per_call = max(1, _BATCH_ROWS // max(n, 1))
    for start in range(0, len(jobs), per_call):
        chunk = jobs[start : start + per_call]
        pred = np.asarray(model.predict(_stacked(features, [(j, orders[r]) for j, r in chunk])))
        for k, (j, r) in enumerate(chunk):
            permuted[j, r] = score(y, pred[k * n : (k + 1) * n])

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
