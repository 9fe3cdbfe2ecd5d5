"""Leakage checks across the splits: copies of training rows in test, contradictory labels, target proxies.

Ingest already drops exact duplicates (or keeps them in one split); these checks
measure what is left and fail the run above the configured limits:

- **test rows in train**: test rows that also appear, target included, in the
  training split (a model is then scored on rows it memorised);
- **conflicting labels**: rows whose model features are identical to another
  row's but whose label differs (noise no model can fit, which caps every metric);
- **target proxies**: a single feature that (almost) determines the target. Each
  feature alone is turned into a one-feature model on the training split (majority
  label, or mean target, per value; numbers in quantile bins) and scored on the
  test split: balanced accuracy for classification, R² for regression. Scoring on
  held-out rows keeps identifier-like columns (every value unseen) from looking
  predictive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.contract.frame import hashable

#: Numeric features with more distinct values than this are binned by quantile for the proxy check.
_PROXY_BINS = 50


@dataclass
class LeakageReport:
    """The figures the summary shows and the limits they were held to."""

    test_rows_in_train: int = 0
    test_share_in_train: float = 0.0
    conflicting_label_rows: int = 0
    conflicting_label_share: float = 0.0
    proxies: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The JSON-safe figures (for the report and the run summary)."""
        top = max(self.proxies, key=lambda p: p["score"], default=None)
        return {
            "test_rows_in_train": self.test_rows_in_train,
            "test_share_in_train": round(self.test_share_in_train, 4),
            "conflicting_label_rows": self.conflicting_label_rows,
            "conflicting_label_share": round(self.conflicting_label_share, 4),
            "strongest_single_feature": None if top is None else f"{top['column']} ({top['score']:.3f})",
        }


def _keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    table = pd.DataFrame({c: hashable(frame[c]) for c in columns}, index=frame.index)
    return pd.util.hash_pandas_object(table, index=False)


def _single_feature_score(
    train: pd.Series, y_train: pd.Series, test: pd.Series, y_test: pd.Series, classification: bool
) -> float:
    """Held-out score of a model that only sees one feature (see the module docstring)."""
    from sklearn.metrics import balanced_accuracy_score, r2_score

    if (
        pd.api.types.is_numeric_dtype(train)
        and not pd.api.types.is_bool_dtype(train)
        and train.nunique() > _PROXY_BINS
    ):
        edges = np.unique(np.nanquantile(train.to_numpy(dtype=float), np.linspace(0, 1, _PROXY_BINS + 1)))
        to_key = lambda s: pd.Series(np.digitize(s.to_numpy(dtype=float), edges[1:-1]), index=s.index)  # noqa: E731
    else:
        to_key = lambda s: hashable(s).astype(object).where(s.notna(), "<null>")  # noqa: E731
    train_key, test_key = to_key(train), to_key(test)
    if classification:
        fallback = y_train.mode().iloc[0]
        table = pd.DataFrame({"k": train_key, "y": y_train}).groupby("k")["y"].agg(lambda v: v.mode().iloc[0])
        predicted = test_key.map(table).fillna(fallback).astype(y_test.dtype, errors="ignore")
        return float(balanced_accuracy_score(y_test.astype(str), predicted.astype(str)))
    table = pd.DataFrame({"k": train_key, "y": y_train.astype(float)}).groupby("k")["y"].mean()
    predicted = test_key.map(table).fillna(float(y_train.mean()))
    return float(r2_score(y_test.astype(float), predicted.to_numpy(dtype=float)))


def check_leakage(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    features: list[str],
    target: str,
    classification: bool,
    max_test_share_in_train: float,
    max_conflicting_label_share: float,
    max_single_feature_score: float,
) -> LeakageReport:
    """Measure leakage across the three splits and hold it to the limits.

    Args:
        train: The training split.
        validation: The validation split.
        test: The test split.
        features: The model's raw feature columns.
        target: The target column.
        classification: Whether the task is classification (picks the proxy score).
        max_test_share_in_train: Fail when a larger share of test rows appears in train.
        max_conflicting_label_share: Fail when a larger share of rows has a contradicted label.
        max_single_feature_score: Fail when one feature alone scores at least this on test.

    Returns:
        The figures, with one violation per limit exceeded.
    """
    report = LeakageReport()
    columns = [c for c in [*features, target] if c in train.columns and c in test.columns]
    features = [c for c in features if c in columns]
    if target not in columns or not len(test):
        return report
    in_train = _keys(test, columns).isin(set(_keys(train, columns)))
    report.test_rows_in_train = int(in_train.sum())
    report.test_share_in_train = report.test_rows_in_train / len(test)
    if report.test_share_in_train > max_test_share_in_train:
        report.violations.append(
            f"leakage: {report.test_rows_in_train} of {len(test)} test row(s) "
            f"({report.test_share_in_train:.1%}) are copies of training rows, above "
            f"leakage.max_test_share_in_train {max_test_share_in_train}"
        )
    whole = pd.concat([train, validation, test], ignore_index=True)
    if features:
        labels = pd.DataFrame({"k": _keys(whole, features), "y": hashable(whole[target])})
        n_labels = labels.groupby("k")["y"].transform("nunique")
        report.conflicting_label_rows = int((n_labels > 1).sum())
        report.conflicting_label_share = report.conflicting_label_rows / len(whole)
        if report.conflicting_label_share > max_conflicting_label_share:
            report.violations.append(
                f"leakage: {report.conflicting_label_rows} row(s) "
                f"({report.conflicting_label_share:.1%}) share their features with a row of another "
                f"label, above leakage.max_conflicting_label_share {max_conflicting_label_share}"
            )
    for column in features:
        score = _single_feature_score(
            train[column], train[target], test[column], test[target], classification
        )
        report.proxies.append({"column": column, "score": score})
        if score >= max_single_feature_score:
            what = "balanced accuracy" if classification else "R²"
            report.violations.append(
                f"leakage: feature {column!r} alone predicts the target "
                f"({what} {score:.3f} on the test split), at or above "
                f"leakage.max_single_feature_score {max_single_feature_score}: is it the target in disguise?"
            )
    return report
