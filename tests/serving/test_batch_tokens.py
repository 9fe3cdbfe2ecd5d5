"""Batch scoring reads text booleans and missing-value tokens as validation and serving do."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabpipe.contract import ColumnContract
from tabpipe.onnx.predictor import columns_from_frame
from tabpipe.serving_spec import ServingInput, ServingSpec


def test_columns_from_frame_maps_boolean_tokens_and_normalises_text() -> None:
    spec = ServingSpec(
        model_name="m",
        task="binary_classification",
        target="y",
        sha256="0" * 64,
        inputs=[
            ServingInput(name="smoker", rules=ColumnContract(dtype="boolean", nullable=True)),
            ServingInput(name="color", rules=ColumnContract(dtype="string", normalize=["strip", "casefold"])),
            ServingInput(name="age", rules=ColumnContract(dtype="integer", nullable=True)),
        ],
    )
    frame = pd.DataFrame(
        {"smoker": ["yes", "No", None], "color": [" Red", "blue ", "RED"], "age": [3, None, 5]}
    )
    columns = columns_from_frame(frame, spec)
    np.testing.assert_array_equal(columns["smoker"], [1.0, 0.0, np.nan])
    assert columns["color"].tolist() == ["red", "blue", "red"]
    np.testing.assert_array_equal(columns["age"], [3.0, np.nan, 5.0])
