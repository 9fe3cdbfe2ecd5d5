"""ONNX conversion of ``SimpleImputer``, faithful to scikit-learn.

The stock skl2onnx converter drops ``add_indicator`` columns, rounds the
statistics to float32 and rejects NaN as a string missing value. This one
imputes in the input's own float type (float64 statistics for a double input),
appends the missing-indicator columns scikit-learn appends, and turns the
string imputer into an identity: missing strings arrive as
:data:`~tabpipe.onnx.common.MISSING_STRING`, the training imputer's fill value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tabpipe.onnx.common import MISSING_STRING, NotConvertible, const, node, np_float, onnx_float


def _checks(model: Any) -> None:
    missing = model.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise NotConvertible(f"SimpleImputer(missing_values={missing!r}): only NaN/None is supported")


def shape(operator: Any) -> None:
    """Numeric: inputs plus one indicator column per feature that had missing values."""
    from skl2onnx.common.data_types import StringTensorType

    model = operator.raw_operator
    _checks(model)
    in_type = operator.inputs[0].type
    n_in = int(sum(var.type.shape[1] for var in operator.inputs))
    if isinstance(in_type, StringTensorType):
        operator.outputs[0].type = StringTensorType([None, n_in])
        return
    n_ind = len(model.indicator_.features_) if model.add_indicator else 0
    operator.outputs[0].type = in_type.__class__([None, n_in + n_ind])


def convert(scope: Any, operator: Any, container: Any) -> None:
    """Impute like scikit-learn, in the input's own float type, with missing-indicators."""
    from skl2onnx.common.data_types import StringTensorType

    model = operator.raw_operator
    if len(operator.inputs) != 1:
        raise NotConvertible("SimpleImputer with several input variables is not supported")
    x = operator.inputs[0].onnx_name
    out = operator.outputs[0].onnx_name
    if isinstance(operator.inputs[0].type, StringTensorType):
        # Missing strings arrive as MISSING_STRING; with that fill value imputing is the identity.
        if model.strategy != "constant" or model.fill_value != MISSING_STRING:
            raise NotConvertible(
                f"SimpleImputer(strategy={model.strategy!r}, fill_value={model.fill_value!r}) on strings: "
                f"only strategy='constant' with fill_value={MISSING_STRING!r} is supported"
            )
        if model.add_indicator:
            raise NotConvertible("SimpleImputer(add_indicator=True) on strings is not supported")
        node(scope, container, "Identity", [x], out)
        return
    stats = np.asarray(model.statistics_, dtype=np.float64)
    if np.isnan(stats).any():
        # scikit-learn drops all-missing columns then; the graph would keep them.
        raise NotConvertible("SimpleImputer has an all-missing feature (NaN statistic); it would be dropped")
    dtype = np_float(operator.inputs[0].type)
    is_nan = node(scope, container, "IsNaN", [x])
    fill = const(scope, container, "impute_stats", stats.astype(dtype).reshape(1, -1))
    if not model.add_indicator or len(model.indicator_.features_) == 0:
        node(scope, container, "Where", [is_nan, fill, x], out)
        return
    imputed = node(scope, container, "Where", [is_nan, fill, x])
    idx = const(scope, container, "indicator_idx", np.asarray(model.indicator_.features_, dtype=np.int64))
    picked = node(scope, container, "Gather", [is_nan, idx], axis=1)
    indicator = node(scope, container, "Cast", [picked], to=onnx_float(operator.inputs[0].type))
    node(scope, container, "Concat", [imputed, indicator], out, axis=1)
