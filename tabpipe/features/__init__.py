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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tabpipe.config import PipelineConfig
from tabpipe.contract import ColumnType

if TYPE_CHECKING:
    import pandas as pd

MISSING_CATEGORY = "__missing__"
_TRANSFORMERS = ("EngineeredFeatures", "ToObject", "DateParts", "NormalizeText")


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
    #: Datetime columns with declared ``features.date_parts``: raw inputs, never fed as is.
    dates: list[str] = field(default_factory=list)
    #: The numeric columns derived from them (``<column>_<part>``).
    date_parts: list[str] = field(default_factory=list)

    @property
    def raw(self) -> list[str]:
        """The raw input columns the model expects, in order."""
        return [*self.numeric, *self.categorical, *self.dates]


def feature_columns(config: PipelineConfig) -> FeatureColumns:
    """Select the feature columns from the contract.

    The target, dropped columns, PII columns, unique identifiers and
    datetimes are never features: identifiers and hashes only let a model
    memorise rows, and datetimes are for splitting. A datetime column with
    declared ``features.date_parts`` is a raw input: the model pipeline turns it
    into those numeric parts.
    """
    excluded = {config.target, *config.features.drop, *config.contract.pii_columns}
    with_parts = {feature.column: feature for feature in config.features.date_parts}
    numeric: list[str] = []
    categorical: list[str] = []
    dates: list[str] = []
    date_parts: list[str] = []
    for name, column in config.contract.columns.items():
        if name in excluded or column.unique:
            continue
        if column.dtype is ColumnType.DATETIME:
            if name in with_parts:
                dates.append(name)
                date_parts += with_parts[name].output_names
            continue
        if column.dtype in (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN):
            numeric.append(name)
        else:
            categorical.append(name)
    engineered = [feature.name for feature in config.features.engineered]
    return FeatureColumns(
        numeric=numeric, categorical=categorical, engineered=engineered, dates=dates, date_parts=date_parts
    )


def build_preprocessor(config: PipelineConfig) -> object:
    """Build the unfitted preprocessing pipeline for a config."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from tabpipe.features.transformers import DateParts, EngineeredFeatures, NormalizeText, ToObject

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
    numeric = [*columns.numeric, *columns.engineered, *columns.date_parts]
    if numeric:
        transformers.append(("numeric", numeric_pipeline, numeric))
    if columns.categorical:
        transformers.append(("categorical", categorical_pipeline, columns.categorical))
    engineered = tuple(
        (feature.name, feature.op.value, tuple(feature.inputs)) for feature in config.features.engineered
    )
    steps: list[tuple[str, object]] = []
    # Only when declared: ONNX export converts the pipelines without these steps as before.
    normalized = tuple(
        (name, tuple(step.value for step in config.contract.columns[name].normalize or ()))
        for name in columns.categorical
        if config.contract.columns[name].normalize
    )
    if normalized:
        steps.append(("normalize", NormalizeText(normalized)))
    if config.features.date_parts:
        parts = tuple(
            (feature.column, tuple(part.value for part in feature.parts))
            for feature in config.features.date_parts
        )
        steps.append(("date_parts", DateParts(parts)))
    steps += [
        ("engineer", EngineeredFeatures(engineered)),
        ("columns", ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)),
    ]
    return Pipeline(steps)


def split_xy(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Feature frame (raw model inputs, in contract order) and target series.

    A boolean column read as text (``yes``/``no`` and the contract's other
    boolean tokens) becomes 1.0/0.0, the canonical values serving decodes it to,
    so the model trains on what it will be served.
    """
    columns = feature_columns(config)
    features = frame[columns.raw]
    contract = config.contract.columns
    booleans = [
        name
        for name in columns.numeric
        if contract[name].dtype is ColumnType.BOOLEAN and features[name].dtype.kind not in "biuf"
    ]
    if booleans:
        from tabpipe.contract.frame import canonical_values

        features = features.copy()
        for name in booleans:
            problem, values = canonical_values(features[name], contract[name])
            if problem is None:  # anything else is validation's to report
                features[name] = values
    return features, frame[config.target]
