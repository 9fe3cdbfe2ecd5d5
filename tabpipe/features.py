"""The feature set every model shares: which columns feed it, and the unfitted preprocessing.

Builds one scikit-learn ``Pipeline``: the engineered features the config
declares, then a ``ColumnTransformer`` that imputes, encodes and scales.
The train stage puts it in front of each estimator, so cross-validation refits
it per fold and serving applies exactly the training transformation.

This module sits below the stages, serving and ONNX export: all three use it,
and model bundles name its classes (the skops allow-list trusts this module).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from tabpipe.config import FeatureOp, PipelineConfig
from tabpipe.contract import ColumnType

MISSING_CATEGORY = "__missing__"


class EngineeredFeatures(TransformerMixin, BaseEstimator):
    """Adds the derived numeric columns declared in the config.

    Division by zero yields NaN, which the imputer downstream fills, instead
    of infinities that would break scaling.

    Args:
        features: ``(name, op, inputs)`` triples, with ``op`` a :class:`FeatureOp` value.
    """

    def __init__(self, features: tuple[tuple[str, str, tuple[str, ...]], ...] = ()) -> None:
        self.features = features

    def fit(self, X: pd.DataFrame, y: object = None) -> EngineeredFeatures:  # noqa: N803 (sklearn API)
        """Nothing to learn; records the input columns."""
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803 (sklearn API)
        """Return a copy of ``X`` with the engineered columns appended."""
        out = X.copy()
        for name, op, inputs in self.features:
            cols = [pd.to_numeric(out[c], errors="coerce").astype("float64") for c in inputs]
            if op == FeatureOp.RATIO.value:
                denominator = cols[1].where(cols[1] != 0)
                out[name] = cols[0] / denominator
            elif op == FeatureOp.PRODUCT.value:
                out[name] = cols[0] * cols[1]
            elif op == FeatureOp.DIFFERENCE.value:
                out[name] = cols[0] - cols[1]
            elif op == FeatureOp.SUM.value:
                out[name] = cols[0] + cols[1]
            elif op == FeatureOp.LOG1P.value:
                out[name] = np.log1p(cols[0].where(cols[0] > -1))
            else:  # the config model rejects unknown ops; this guards hand-built instances
                raise ValueError(f"unknown feature op {op!r}")
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Input columns followed by engineered ones."""
        return np.asarray([*self.feature_names_in_, *(name for name, _, _ in self.features)], dtype=object)


class ToObject(TransformerMixin, BaseEstimator):
    """Casts categorical columns to object dtype with NaN for missing.

    pandas 3 string columns carry their own NA type; casting keeps the imputer
    and encoder on one well-trodden path whatever dtype the input came with.
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> ToObject:  # noqa: N803 (sklearn API)
        """Nothing to learn."""
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803 (sklearn API)
        """Object-typed copy with ``np.nan`` for missing values."""
        frame = pd.DataFrame(X).astype(object)
        return frame.where(frame.notna(), np.nan)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Names pass through unchanged."""
        return self.feature_names_in_


@dataclass(frozen=True)
class FeatureColumns:
    """Which raw columns feed the model, by kind."""

    numeric: list[str]
    categorical: list[str]
    engineered: list[str]

    @property
    def raw(self) -> list[str]:
        """The raw input columns the model expects, in order."""
        return [*self.numeric, *self.categorical]


def feature_columns(config: PipelineConfig) -> FeatureColumns:
    """Select the feature columns from the contract.

    The target, dropped columns, PII columns, unique identifiers and
    datetimes are never features: identifiers and hashes only let a model
    memorise rows, and datetimes are for splitting.
    """
    excluded = {config.target, *config.features.drop, *config.contract.pii_columns}
    numeric: list[str] = []
    categorical: list[str] = []
    for name, column in config.contract.columns.items():
        if name in excluded or column.unique or column.dtype is ColumnType.DATETIME:
            continue
        if column.dtype in (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN):
            numeric.append(name)
        else:
            categorical.append(name)
    engineered = [feature.name for feature in config.features.engineered]
    return FeatureColumns(numeric=numeric, categorical=categorical, engineered=engineered)


def build_preprocessor(config: PipelineConfig) -> object:
    """Build the unfitted preprocessing pipeline for a config."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = feature_columns(config)
    numeric_pipeline = Pipeline(
        [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
    )
    categorical_pipeline = Pipeline(
        [
            ("as_object", ToObject()),
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            (
                "encode",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    max_categories=config.features.max_categories,
                    sparse_output=False,
                ),
            ),
        ]
    )
    transformers = []
    numeric = [*columns.numeric, *columns.engineered]
    if numeric:
        transformers.append(("numeric", numeric_pipeline, numeric))
    if columns.categorical:
        transformers.append(("categorical", categorical_pipeline, columns.categorical))
    engineered = tuple(
        (feature.name, feature.op.value, tuple(feature.inputs)) for feature in config.features.engineered
    )
    return Pipeline(
        [
            ("engineer", EngineeredFeatures(engineered)),
            ("columns", ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)),
        ]
    )


def split_xy(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Feature frame (raw model inputs, in contract order) and target series."""
    columns = feature_columns(config)
    return frame[columns.raw], frame[config.target]
