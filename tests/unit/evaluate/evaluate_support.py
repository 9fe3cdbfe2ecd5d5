"""Shared builders for the evaluate tests: small real scikit-learn pipelines and configs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tabpipe.config import EvaluationConfig, Metric

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
REGRESSION_KEYS = {"mae", "rmse", "r2"}


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """Two informative numeric features, one pure-noise feature, and a slice column with nulls."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    region[rng.random(n) < 0.1] = None
    return pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "region": region,
        }
    )


def make_pipeline(estimator) -> Pipeline:
    # The model only uses the numeric columns; "region" is there to slice on.
    pre = ColumnTransformer([("num", StandardScaler(), ["x1", "x2", "noise"])], remainder="drop")
    return Pipeline([("pre", pre), ("model", estimator)])


def binary_target(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logit = 2.0 * frame["x1"] - 1.5 * frame["x2"] + rng.normal(scale=1.0, size=len(frame))
    return (logit > 0).to_numpy()


def all_plain_floats(metrics: dict) -> bool:
    return all(type(v) is float for v in metrics.values())


def eval_config(primary: Metric, thresholds: dict | None = None, tolerance: float = 0.0) -> EvaluationConfig:
    return EvaluationConfig(primary_metric=primary, thresholds=thresholds or {}, champion_tolerance=tolerance)
