"""The project's own scikit-learn transformers, used inside every model pipeline.

Model bundles name these classes, and the skops allow-list trusts the
``tabpipe.features`` package, so they load wherever a bundle is served.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from tabpipe.config import FeatureOp


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


class NormalizeText(TransformerMixin, BaseEstimator):
    """Applies the contract's declared text normalisation (``normalize: [strip, casefold]``).

    The same function the rule engine applies before the rules
    (:func:`tabpipe.contract.schema.normalize_text`), so ``"Red "`` and ``"red"``
    are one category when the model is trained, validated and served.

    Args:
        columns: ``(column, steps)`` pairs; ``steps`` are
            :class:`~tabpipe.contract.schema.Normalization` values.
    """

    def __init__(self, columns: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> None:
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: object = None) -> NormalizeText:  # noqa: N803 (sklearn API)
        """Nothing to learn; records the input columns."""
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803 (sklearn API)
        """A copy of ``X`` with each declared column's text normalised (missing and non-text kept)."""
        from tabpipe.contract.schema import Normalization, normalize_text

        out = X.copy()
        for column, steps in self.columns:
            parsed = tuple(Normalization(step) for step in steps)
            values = out[column].astype(object)
            out[column] = [normalize_text(v, parsed) if isinstance(v, str) else v for v in values]
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Names pass through unchanged."""
        return self.feature_names_in_


# Config part names whose pandas Timestamp attribute is spelled differently.
_TIMESTAMP_ATTRIBUTES = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}


class DateParts(TransformerMixin, BaseEstimator):
    """Adds numeric parts of datetime columns (``features.date_parts``): ``<column>_<part>``.

    Values are parsed with the rule engine's date parsing
    (:func:`tabpipe.contract.rules.parse_dates`), so what the ``date`` rule accepts
    is what the model reads; unparseable or missing values become NaN, which the
    imputer downstream fills. Time-zone-aware values keep their local clock time.

    Args:
        columns: ``(column, parts)`` pairs, with ``parts`` :class:`~tabpipe.config.DatePart` values.
    """

    def __init__(self, columns: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> None:
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: object = None) -> DateParts:  # noqa: N803 (sklearn API)
        """Nothing to learn; records the input columns."""
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803 (sklearn API)
        """A copy of ``X`` with the date parts appended as float columns."""
        from tabpipe.contract.rules import parse_dates

        out = X.copy()
        for column, parts in self.columns:
            raw = out[column].astype(object).to_numpy()
            raw = np.array([None if v is None or v != v else v for v in raw], dtype=object)
            stamps = parse_dates(raw)
            for part in parts:
                attribute = _TIMESTAMP_ATTRIBUTES.get(part, part)
                out[f"{column}_{part}"] = np.array(
                    [np.nan if t is None else float(getattr(t, attribute)) for t in stamps], dtype=np.float64
                )
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Input columns followed by the date parts."""
        derived = [f"{column}_{part}" for column, parts in self.columns for part in parts]
        return np.asarray([*self.feature_names_in_, *derived], dtype=object)
