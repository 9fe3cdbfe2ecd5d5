"""ONNX conversion of :class:`~tabpipe.features.EngineeredFeatures`, tabpipe's derived columns.

skl2onnx knows nothing of this transformer. The parser keeps every column its
own ``[N, 1]`` variable (raw inputs pass through, one variable is appended per
engineered feature) so the ColumnTransformer that follows can pick columns by
name, numeric and string alike; the converter reproduces the transformer's NaN
rules exactly (division by zero is NaN, log1p outside its domain is NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tabpipe.features import EngineeredFeatures
from tabpipe.onnx.common import NotConvertible, const, node, np_float


def parse(scope: Any, model: EngineeredFeatures, inputs: list[Any], custom_parsers: Any = None) -> list:
    """Pass the raw inputs through and append one ``[N, 1]`` variable per engineered feature."""
    if not model.features:
        return list(inputs)
    by_name = {var.raw_name: var for var in inputs}
    operator = scope.declare_local_operator("TabpipeEngineeredFeatures", model)
    needed: list[str] = []
    for _, _, cols in model.features:
        for col in cols:
            if col not in by_name:
                raise NotConvertible(f"engineered feature input {col!r} is not a graph input")
            if col not in needed:
                needed.append(col)
    operator.inputs = [by_name[c] for c in needed]
    outputs = []
    for name, _, cols in model.features:
        var_type = by_name[cols[0]].type.__class__([None, 1])
        outputs.append(scope.declare_local_variable(name, var_type))
    operator.outputs.extend(outputs)
    return [*inputs, *outputs]


def shape(operator: Any) -> None:
    """Nothing to infer: the parser typed the outputs (one float column each)."""


def convert(scope: Any, operator: Any, container: Any) -> None:
    """Emit the engineered columns with the same NaN rules as :class:`EngineeredFeatures`."""
    from tabpipe.config import FeatureOp

    model: EngineeredFeatures = operator.raw_operator
    by_name = {var.raw_name: var.onnx_name for var in operator.inputs}
    dtype = np_float(operator.inputs[0].type)
    nan = const(scope, container, "nan", np.array([np.nan], dtype=dtype))
    zero = const(scope, container, "zero", np.array([0.0], dtype=dtype))
    one = const(scope, container, "one", np.array([1.0], dtype=dtype))
    minus_one = const(scope, container, "minus_one", np.array([-1.0], dtype=dtype))
    for (name, op, cols), out_var in zip(model.features, operator.outputs, strict=True):
        args = [by_name[c] for c in cols]
        out = out_var.onnx_name
        # The input columns may be integers cast to float upstream; NaN means missing.
        if op == FeatureOp.RATIO.value:
            # Division by zero -> NaN (the imputer fills it), never ±inf.
            quotient = node(scope, container, "Div", args)
            is_zero = node(scope, container, "Equal", [args[1], zero])
            node(scope, container, "Where", [is_zero, nan, quotient], out)
        elif op == FeatureOp.PRODUCT.value:
            node(scope, container, "Mul", args, out)
        elif op == FeatureOp.DIFFERENCE.value:
            node(scope, container, "Sub", args, out)
        elif op == FeatureOp.SUM.value:
            node(scope, container, "Add", args, out)
        elif op == FeatureOp.LOG1P.value:
            # ONNX has no Log1p; log(1+x) loses precision for small x, so use
            # log1p(x) = log(u) * x / (u - 1) with u = 1 + x (exact when u == 1).
            x = args[0]
            u = node(scope, container, "Add", [x, one])
            d = node(scope, container, "Sub", [u, one])
            log_u = node(scope, container, "Log", [u])
            scaled = node(scope, container, "Div", [node(scope, container, "Mul", [log_u, x]), d])
            is_exact = node(scope, container, "Equal", [d, zero])
            value = node(scope, container, "Where", [is_exact, x, scaled])
            # Only x > -1 is in the domain; NaN compares False, so it stays NaN.
            in_domain = node(scope, container, "Greater", [x, minus_one])
            node(scope, container, "Where", [in_domain, value, nan], out)
        else:
            raise NotConvertible(f"engineered feature {name!r}: unknown op {op!r}")
