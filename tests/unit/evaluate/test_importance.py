"""Permutation importance: rankings, sampling and equality with scikit-learn's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evaluate_support import binary_target, make_frame, make_pipeline

from tabpipe.config import TaskType
from tabpipe.stages.evaluate import (
    permutation_importance_table,
)


def test_permutation_importance_ranks_informative_features(binary_str):
    model, frame, y = binary_str
    table = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=0, n_repeats=3)
    assert list(table.columns) == ["feature", "importance_mean", "importance_std"]
    assert set(table["feature"]) == set(frame.columns)
    assert table["importance_mean"].is_monotonic_decreasing
    assert set(table["feature"].iloc[:2]) == {"x1", "x2"}
    # The model ignores "region": shuffling it changes nothing.
    assert table.set_index("feature").loc["region", "importance_mean"] == 0.0
    again = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=0, n_repeats=3)
    pd.testing.assert_frame_equal(table, again)


def test_permutation_importance_samples_rows_for_regression(regression):
    model, frame, y = regression
    table = permutation_importance_table(
        model, frame, y, TaskType.REGRESSION, seed=1, n_repeats=2, max_rows=50
    )
    assert table["feature"].iloc[0] == "x1"  # coefficient 3 beats 2
    assert table["importance_mean"].is_monotonic_decreasing


def _sklearn_table(model, frame, y, task, seed, n_repeats):
    """The reference: scikit-learn's own permutation_importance, one call per column and repeat."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(
        model,
        frame,
        y,
        scoring="accuracy" if task.is_classification else "r2",
        n_repeats=n_repeats,
        random_state=seed,
        n_jobs=1,
    )
    pairs = zip(result.importances_mean, result.importances_std, strict=True)
    return dict(zip(frame.columns, pairs, strict=True))


def _assert_same_as_sklearn(model, frame, y, task, seed, n_repeats=3):
    ours = permutation_importance_table(model, frame, y, task, seed=seed, n_repeats=n_repeats)
    reference = _sklearn_table(model, frame, y, task, seed, n_repeats)
    assert set(ours["feature"]) == set(reference)
    for row in ours.itertuples():
        mean, std = reference[row.feature]
        # Identical draws and scores: equal, not merely close.
        assert row.importance_mean == pytest.approx(mean, abs=1e-12), row.feature
        assert row.importance_std == pytest.approx(std, abs=1e-12), row.feature
    assert (ours["importance_mean"] != 0).any()


@pytest.mark.parametrize("seed", [0, 7])
def test_permutation_importance_equals_sklearn_binary(binary_str, seed):
    model, frame, y = binary_str
    _assert_same_as_sklearn(model, frame, y, TaskType.BINARY, seed)


def test_permutation_importance_equals_sklearn_multiclass_and_regression(multiclass, regression):
    model, frame, y = multiclass
    _assert_same_as_sklearn(model, frame, y, TaskType.MULTICLASS, seed=3, n_repeats=2)
    model, frame, y = regression
    _assert_same_as_sklearn(model, frame, y, TaskType.REGRESSION, seed=4, n_repeats=4)


def test_permutation_importance_equals_sklearn_with_categories_nulls_and_trees():
    """Mixed dtypes (nullable integers, strings with nulls) through imputers, one-hot and a boosted model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = make_frame(600, 11)
    rng = np.random.default_rng(12)
    frame["count"] = pd.array(rng.integers(0, 5, size=len(frame)), dtype="Int64")
    frame.loc[rng.random(len(frame)) < 0.1, "count"] = pd.NA
    frame["coded"] = rng.choice([-1, 0, 1], size=len(frame))  # most shuffled rows keep their value
    frame["constant"] = 1.0  # no row changes: nothing to predict
    frame["signed_zero"] = np.where(rng.random(len(frame)) < 0.5, 0.0, -0.0)
    y = pd.Series(binary_target(frame, 13) ^ (frame["region"] == "east").to_numpy(), name="y")
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    pre = ColumnTransformer(
        [
            (
                "num",
                SimpleImputer(strategy="median", add_indicator=True),
                ["x1", "x2", "noise", "count", "coded", "constant", "signed_zero"],
            ),
            ("cat", categorical, ["region"]),
        ]
    )
    model = Pipeline([("pre", pre), ("model", HistGradientBoostingClassifier(max_iter=30, random_state=0))])
    model.fit(frame, y)
    _assert_same_as_sklearn(model, frame, y, TaskType.BINARY, seed=5)


def test_permutation_importance_on_sampled_rows_equals_sklearn_on_that_sample(binary_str):
    model, frame, y = binary_str
    ours = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=2, n_repeats=2, max_rows=150)
    rows = np.sort(np.random.default_rng(2).choice(len(frame), size=150, replace=False))
    reference = _sklearn_table(model, frame.iloc[rows], y.iloc[rows], TaskType.BINARY, 2, 2)
    for row in ours.itertuples():
        assert row.importance_mean == pytest.approx(reference[row.feature][0], abs=1e-12)


def test_permutation_importance_of_only_constant_columns_is_zero():
    from sklearn.dummy import DummyClassifier

    frame = pd.DataFrame({"a": np.ones(50), "b": np.zeros(50, dtype=int)})
    y = pd.Series(np.arange(50) % 2)
    model = make_pipeline(DummyClassifier()).set_params(pre="passthrough").fit(frame, y)
    table = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=0, n_repeats=2)
    assert table["importance_mean"].tolist() == [0.0, 0.0]
    assert table["importance_std"].tolist() == [0.0, 0.0]
