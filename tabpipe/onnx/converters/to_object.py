"""ONNX conversion of :class:`~tabpipe.features.ToObject`: an identity in the graph.

In scikit-learn it casts categorical columns to ``object`` so the imputer and
encoder see strings. The graph's string inputs are already strings, and a
missing one already arrives as the sentinel, so the parser passes them through
and refuses anything that is not a string input.
"""

from __future__ import annotations

from typing import Any

from tabpipe.features import ToObject
from tabpipe.onnx.common import NotConvertible


def parse(scope: Any, model: ToObject, inputs: list[Any], custom_parsers: Any = None) -> list:
    """Identity: string inputs are already strings, and missing ones already the sentinel."""
    from skl2onnx.common.data_types import StringTensorType

    for var in inputs:
        if not isinstance(var.type, StringTensorType):
            raise NotConvertible(f"ToObject on non-string input {var.raw_name!r} is not supported")
    return list(inputs)
