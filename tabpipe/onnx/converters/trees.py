"""ONNX conversion of RandomForest* and HistGradientBoosting* with float64 split thresholds.

skl2onnx 1.20's stock converter writes split thresholds as float32 attributes
(and a double input even yields an invalid graph for HistGradientBoosting).
scikit-learn compares in float64 (HistGradientBoosting) or float32 inputs
against float64 thresholds (random forests), so rounded thresholds misroute
values near a split. :func:`convert_tree` runs the stock converter through
:class:`DoubleTreeContainer`, which moves the thresholds to the opset-3
``*_as_tensor`` double attributes. Estimators opt in through the registry
(:data:`tabpipe.estimators.FLOAT64_TREES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tabpipe.onnx.common import NotConvertible, onnx_float

#: Float attributes of ai.onnx.ml TreeEnsemble* nodes that have a double ``*_as_tensor`` twin.
_TREE_FLOAT_ATTRS = ("nodes_values", "base_values", "target_weights", "class_weights", "nodes_hitrates")


class DoubleTreeContainer:
    """Rewrites the TreeEnsemble* node skl2onnx emits so thresholds stay float64.

    Every other node passes through to the wrapped container unchanged. The
    tree node gets the ``*_as_tensor`` double attributes; its float scores are
    then cast to the declared output type.

    Args:
        container: skl2onnx's model container.
        scope: The conversion scope (for unique names).
        float32_inputs: Round the input through float32 first, as random forests do.
        score_type: ONNX element type of the declared score output.
    """

    def __init__(self, container: Any, scope: Any, float32_inputs: bool, score_type: int) -> None:
        self._container = container
        self._scope = scope
        self._float32_inputs = float32_inputs
        self._score_type = score_type

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "", **attrs: Any) -> Any:
        """Add a node; a TreeEnsemble* node gets double thresholds and a cast score output."""
        from onnx import TensorProto, numpy_helper

        if not op_type.startswith("TreeEnsemble"):
            return self._container.add_node(op_type, inputs, outputs, op_domain=op_domain, **attrs)
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        for key in _TREE_FLOAT_ATTRS:
            if key in attrs:
                values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
        for key, value in attrs.items():
            # skl2onnx passes HistGradientBoosting's missing_go_to_left as bools; onnx wants ints.
            if isinstance(value, list) and any(isinstance(v, bool | np.bool_) for v in value):
                attrs[key] = [int(v) for v in value]
        attrs["op_version"] = 3
        scope, add = self._scope, self._container.add_node
        if self._float32_inputs:
            # Trees compare float32(x) with float64 thresholds; round the same way.
            as_float = scope.get_unique_variable_name("tree_input_f32")
            add(
                "Cast",
                inputs[:1],
                [as_float],
                name=scope.get_unique_operator_name("Cast"),
                to=TensorProto.FLOAT,
            )
            rounded = scope.get_unique_variable_name("tree_input_rounded")
            add(
                "Cast",
                [as_float],
                [rounded],
                name=scope.get_unique_operator_name("Cast"),
                to=TensorProto.DOUBLE,
            )
            inputs = [rounded, *inputs[1:]]
        # Scores (the last output) are float whatever the input type; cast to the declared type.
        scores = scope.get_unique_variable_name("tree_scores_f32")
        result = add(op_type, inputs, [*outputs[:-1], scores], op_domain=op_domain, **attrs)
        add("Cast", [scores], [outputs[-1]], name=scope.get_unique_operator_name("Cast"), to=self._score_type)
        return result


def convert_tree(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx's forest/boosting converter with double thresholds (see :class:`DoubleTreeContainer`).

    Raises:
        NotConvertible: the input is not double, or a HistGradientBoosting model has
            categorical splits (skl2onnx converts only numeric ones).
    """
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.base import is_classifier

    model = operator.raw_operator
    kind = type(model).__name__
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        raise NotConvertible(f"{kind} with categorical splits: skl2onnx converts only numeric splits")
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        raise NotConvertible(f"{kind}: expected a double input")
    forest = hasattr(model, "estimators_")  # RandomForest*: scikit-learn casts X to float32
    score_type = onnx_float(operator.outputs[-1].type)
    wrapped = DoubleTreeContainer(container, scope, float32_inputs=forest, score_type=score_type)
    convert = (
        convert_sklearn_random_forest_classifier
        if is_classifier(model)
        else convert_sklearn_random_forest_regressor_converter
    )
    # op_version 3 makes skl2onnx keep float64 attribute values for the wrapper to move.
    convert(scope, operator, wrapped, op_version=3)
