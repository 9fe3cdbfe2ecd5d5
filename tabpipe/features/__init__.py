"""The feature set every model shares: which columns feed it, and the unfitted preprocessing.

Builds one scikit-learn ``Pipeline``: the engineered features the config
declares, then a ``ColumnTransformer`` that imputes, encodes and scales.
The train stage puts it in front of each estimator, so cross-validation refits
it per fold and serving applies exactly the training transformation.

This package sits below the stages, serving and ONNX export: all three use it,
and model bundles name its classes (the skops allow-list trusts the package).
Choosing columns (:func:`feature_columns`, :func:`split_xy`) needs no
scikit-learn, so deploy and the serving spec stay light; the transformers live in
:mod:`tabpipe.features.transformers` and load on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabpipe.config import PipelineConfig
from tabpipe.contract import ColumnType

if TYPE_CHECKING:
    import pandas as pd

MISSING_CATEGORY = "__missing__"
_TRANSFORMERS = ("EngineeredFeatures", "ToObject")


def __getattr__(name: str) -> Any:
    # The transformer classes import scikit-learn: loaded on first use, not with the package.
    if name in _TRANSFORMERS:
        from tabpipe.features import transformers

        return getattr(transformers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    from tabpipe.features.transformers import EngineeredFeatures, ToObject

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
