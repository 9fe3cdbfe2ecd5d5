"""ONNX conversion of ``OneHotEncoder`` with infrequent categories, faithful to scikit-learn.

The stock skl2onnx converter maps unknown categories to an error
(``handle_unknown="infrequent_if_exist"`` becomes ``zeros=0``) instead of the
infrequent column or all zeros. This one maps each category to its output
column with a ``LabelEncoder`` (unknowns to the infrequent column when there is
one, else to no column) and compares with a range to get the one-hot row.
Encoders that raise on unknown categories are refused: a graph cannot raise per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tabpipe.onnx.common import NotConvertible, const, node, onnx_float


def layout(model: Any) -> list[tuple[list[str], list[int], int, int]]:
    """Per feature: categories, their output column, the unknown column (-1: none), width.

    Raises:
        NotConvertible: the encoder drops columns, raises on unknowns or has non-string categories.
    """
    if model.drop is not None:
        raise NotConvertible(f"OneHotEncoder(drop={model.drop!r}) is not supported")
    if model.handle_unknown not in ("ignore", "infrequent_if_exist"):
        # scikit-learn raises on unknown categories; a graph cannot raise per row.
        raise NotConvertible(f"OneHotEncoder(handle_unknown={model.handle_unknown!r}) is not supported")
    infrequent = getattr(model, "infrequent_categories_", None) or [None] * len(model.categories_)
    result = []
    for cats, rare in zip(model.categories_, infrequent, strict=True):
        if not all(isinstance(c, str) for c in cats):
            raise NotConvertible("OneHotEncoder with non-string categories is not supported")
        rare_set = set() if rare is None else {str(c) for c in rare}
        frequent = [str(c) for c in cats if str(c) not in rare_set]
        width = len(frequent) + (1 if rare_set else 0)
        rare_col = len(frequent) if rare_set else -1
        columns = [rare_col if str(c) in rare_set else frequent.index(str(c)) for c in cats]
        # Unknown categories go to the infrequent column when there is one, else all zeros.
        unknown = rare_col if (rare_set and model.handle_unknown == "infrequent_if_exist") else -1
        result.append(([str(c) for c in cats], columns, unknown, width))
    return result


def shape(operator: Any) -> None:
    """Width = frequent categories plus one infrequent column per feature that has some."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    model = operator.raw_operator
    width = sum(w for *_, w in layout(model))
    cls = DoubleTensorType if np.dtype(model.dtype) == np.float64 else FloatTensorType
    operator.outputs[0].type = cls([None, width])


def convert(scope: Any, operator: Any, container: Any) -> None:
    """Map each category to its output column with a LabelEncoder, then compare with a range."""
    from skl2onnx.common.data_types import StringTensorType

    model = operator.raw_operator
    features = layout(model)
    columns: list[str] = []
    for var in operator.inputs:
        if not isinstance(var.type, StringTensorType):
            raise NotConvertible(f"OneHotEncoder on non-string input {var.raw_name!r} is not supported")
        n = int(var.type.shape[1])
        if n == 1:
            columns.append(var.onnx_name)
            continue
        for j in range(n):
            idx = const(scope, container, "ohe_col", np.array([j], dtype=np.int64))
            columns.append(node(scope, container, "Gather", [var.onnx_name, idx], axis=1))
    if len(columns) != len(features):
        raise NotConvertible(f"OneHotEncoder: {len(columns)} input columns for {len(features)} features")
    out_type = onnx_float(operator.outputs[0].type)
    parts = []
    for col, (cats, positions, unknown, width) in zip(columns, features, strict=True):
        if width == 0:
            continue
        index = node(
            scope,
            container,
            "LabelEncoder",
            [col],
            keys_strings=cats,
            values_int64s=positions,
            default_int64=unknown,
        )
        arange = const(scope, container, "ohe_range", np.arange(width, dtype=np.int64).reshape(1, -1))
        hot = node(scope, container, "Equal", [index, arange])
        parts.append(node(scope, container, "Cast", [hot], to=out_type))
    out = operator.outputs[0].onnx_name
    if len(parts) == 1:
        node(scope, container, "Identity", parts, out)
    else:
        node(scope, container, "Concat", parts, out, axis=1)
