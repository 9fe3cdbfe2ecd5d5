"""What the converters and the export share.

The refusal exception, the missing-string sentinel, the target opsets and
small graph-building helpers. Kept apart from :mod:`tabpipe.onnx.export` so
the converter modules can use these without importing the export that wires
them in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tabpipe.features import MISSING_CATEGORY

#: How a missing string input is encoded in the ONNX graph's input: the training
#: imputer's own fill value, so the string imputer becomes an identity.
MISSING_STRING = MISSING_CATEGORY
#: Opsets the graph targets; onnxruntime 1.32 implements both.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}


class NotConvertible(Exception):
    """The model (or one of its parts) has no faithful ONNX conversion; the message says why."""


def const(scope: Any, container: Any, name: str, value: np.ndarray) -> str:
    """Add an initializer and return its (unique) name."""
    from onnx import helper

    arr = np.asarray(value)
    unique = scope.get_unique_variable_name(name)
    container.add_initializer(
        unique, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape), arr.ravel().tolist()
    )
    return unique


def node(
    scope: Any, container: Any, op: str, inputs: list[str], output: str | None = None, **attrs: Any
) -> str:
    """Add one node and return its output name."""
    out = output or scope.get_unique_variable_name(op.lower())
    domain = "ai.onnx.ml" if op in ("LabelEncoder",) else ""
    kwargs: dict[str, Any] = {"op_domain": domain} if domain else {}
    if op == "LabelEncoder":
        kwargs["op_version"] = 2
    container.add_node(op, inputs, [out], name=scope.get_unique_operator_name(op), **kwargs, **attrs)
    return out


def np_float(var_type: Any) -> type:
    """The numpy float type of a skl2onnx tensor type (float64 for double, else float32)."""
    from skl2onnx.common.data_types import DoubleTensorType

    return np.float64 if isinstance(var_type, DoubleTensorType) else np.float32


def onnx_float(var_type: Any) -> int:
    """The ONNX element type matching :func:`np_float`."""
    from onnx import TensorProto

    return TensorProto.DOUBLE if np_float(var_type) is np.float64 else TensorProto.FLOAT
