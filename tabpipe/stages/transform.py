"""Transform: fit the shared preprocessing on the training split and describe it.

The preprocessing itself is defined in :mod:`tabpipe.features`.
"""

from __future__ import annotations

import pandas as pd

from tabpipe.config import PipelineConfig
from tabpipe.features import build_preprocessor, feature_columns, split_xy


def fit_preprocessor(config: PipelineConfig, train: pd.DataFrame) -> tuple[object, list[str]]:
    """Fit the preprocessing on the training split only.

    Returns:
        The fitted preprocessor and the names of the columns it outputs.
    """
    preprocessor = build_preprocessor(config)
    features, _ = split_xy(train, config)
    preprocessor.fit(features)
    return preprocessor, [str(name) for name in preprocessor.get_feature_names_out()]


def describe_features(config: PipelineConfig, output_names: list[str]) -> str:
    """A Markdown summary of the feature set for the KFP UI."""
    columns = feature_columns(config)
    lines = [
        f"# Features for `{config.name}`",
        "",
        f"- numeric inputs ({len(columns.numeric)}): {', '.join(columns.numeric) or '-'}",
        f"- categorical inputs ({len(columns.categorical)}): {', '.join(columns.categorical) or '-'}",
        f"- engineered ({len(columns.engineered)}): {', '.join(columns.engineered) or '-'}",
        f"- model input width after encoding: **{len(output_names)}**",
        "",
        "Numeric: median imputation with missing-indicators, standard scaling. "
        "Categorical: constant imputation, one-hot encoding with rare categories grouped.",
    ]
    return "\n".join(lines) + "\n"
