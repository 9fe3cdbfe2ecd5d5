"""Export a trained model bundle to ONNX and check it against scikit-learn.

The graph has one input per raw column, in the serving spec's order: numeric
columns as ``double [N, 1]`` with NaN for missing (exactly what serving
receives, so there is no cast and no rounding), string columns as
``string [N, 1]``. ONNX string tensors cannot hold a null, so a missing string
is fed as :data:`MISSING_STRING` (``"__missing__"``, the training imputer's own
fill value): the string imputer becomes an identity and a client sending that
literal gets what scikit-learn would give it too.

skl2onnx's stock converters are not faithful here, so these are replaced for
the duration of one conversion (nothing is registered globally):

- ``SimpleImputer``: the stock converter drops ``add_indicator`` columns,
  rounds the statistics to float32 and rejects NaN as a string missing value.
- ``OneHotEncoder``: the stock one maps unknown categories to an error
  (``handle_unknown="infrequent_if_exist"`` becomes ``zeros=0``) instead of the
  infrequent column or all zeros.
- ``EngineeredFeatures`` and ``ToObject``: tabpipe's own transformers.
- RandomForest* and HistGradientBoosting*: the stock converter rounds split
  thresholds to float32 (a double input even yields an invalid graph for
  HistGradientBoosting); the wrapper keeps them float64.

Anything outside a short list of verified components is refused with a
reason rather than converted on trust; :func:`check_parity` is the final
word on every converted model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tabpipe.features import MISSING_CATEGORY, EngineeredFeatures, ToObject
from tabpipe.serving.onnx_predictor import (
    META_CLASSES,
    META_INPUTS,
    META_MISSING_STRING,
    META_TASK,
    PROBA_OUTPUT,
    REGRESSION_OUTPUT,
)

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.serving_spec import ServingSpec

#: How a missing string input is encoded in the ONNX graph's input.
MISSING_STRING = MISSING_CATEGORY
#: Opsets the graph targets; onnxruntime 1.32 implements both.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
_MAX_REASON = 400

_ESTIMATORS = frozenset(
    {
        "LogisticRegression",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
        "Ridge",
        "LinearRegression",
    }
)


class NotConvertible(Exception):
    """The model (or one of its parts) has no faithful ONNX conversion; the message says why."""


@dataclass(frozen=True)
class ConversionResult:
    """The outcome of :func:`convert_bundle`.

    Attributes:
        onnx_bytes: The serialized ONNX model, or None when the model was not converted.
        reason: Why it was not converted (None when it was); for the model's metadata.
        opset: The opsets the graph uses, by domain (``""`` is the default domain).
    """

    onnx_bytes: bytes | None
    reason: str | None
    opset: dict[str, int]

    @property
    def converted(self) -> bool:
        """Whether an ONNX model was produced."""
        return self.onnx_bytes is not None


@dataclass(frozen=True)
class ParityResult:
    """How closely the ONNX model reproduces scikit-learn on the same rows.

    Attributes:
        n_rows: Rows compared.
        tolerance: The tolerance used (absolute for probabilities; relative and
            absolute for regression predictions).
        passed: Whether every row agreed within the tolerance.
        max_abs_proba_diff: Largest absolute probability difference (classification).
        mismatch_count: Rows whose predicted label differs. A mismatch fails the check
            unless scikit-learn's probabilities of the two labels are within the tolerance (a tie).
        max_abs_pred_diff: Largest absolute prediction difference (regression).
        max_rel_pred_diff: Largest relative prediction difference (regression).
    """

    n_rows: int
    tolerance: float
    passed: bool
    max_abs_proba_diff: float | None = None
    mismatch_count: int | None = None
    max_abs_pred_diff: float | None = None
    max_rel_pred_diff: float | None = None

    @property
    def detail(self) -> str:
        """One readable sentence with the numbers, for a gate check."""
        verdict = "within" if self.passed else "NOT within"
        if self.max_abs_proba_diff is not None:
            return (
                f"ONNX vs scikit-learn on {self.n_rows} rows: max |Δproba| {self.max_abs_proba_diff:.3g}, "
                f"{self.mismatch_count} label mismatch(es); {verdict} tolerance {self.tolerance:g}"
            )
        return (
            f"ONNX vs scikit-learn on {self.n_rows} rows: max |Δpred| {self.max_abs_pred_diff:.3g}, "
            f"max relative {self.max_rel_pred_diff:.3g}; {verdict} tolerance {self.tolerance:g}"
        )


# --------------------------------------------------------------------------- graph helpers


def _const(scope: Any, container: Any, name: str, value: np.ndarray) -> str:
    """Add an initializer and return its (unique) name."""
    from onnx import helper

    arr = np.asarray(value)
    unique = scope.get_unique_variable_name(name)
    container.add_initializer(
        unique, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape), arr.ravel().tolist()
    )
    return unique


def _node(
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


def _np_float(var_type: Any) -> type:
    from skl2onnx.common.data_types import DoubleTensorType

    return np.float64 if isinstance(var_type, DoubleTensorType) else np.float32


def _onnx_float(var_type: Any) -> int:
    from onnx import TensorProto

    return TensorProto.DOUBLE if _np_float(var_type) is np.float64 else TensorProto.FLOAT


# --------------------------------------------------------------------------- EngineeredFeatures


def _parse_engineered(
    scope: Any, model: EngineeredFeatures, inputs: list[Any], custom_parsers: Any = None
) -> list:
    """Pass the raw inputs through and append one ``[N, 1]`` variable per engineered feature.

    Keeping every column its own variable lets the ColumnTransformer that follows
    pick columns by name, numeric and string alike.
    """
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


def _shape_engineered(operator: Any) -> None:
    """Outputs were typed by the parser (one float column each)."""


def _convert_engineered(scope: Any, operator: Any, container: Any) -> None:
    """Emit the engineered columns with the same NaN rules as :class:`EngineeredFeatures`."""
    from tabpipe.config import FeatureOp

    model: EngineeredFeatures = operator.raw_operator
    by_name = {var.raw_name: var.onnx_name for var in operator.inputs}
    dtype = _np_float(operator.inputs[0].type)
    nan = _const(scope, container, "nan", np.array([np.nan], dtype=dtype))
    zero = _const(scope, container, "zero", np.array([0.0], dtype=dtype))
    one = _const(scope, container, "one", np.array([1.0], dtype=dtype))
    minus_one = _const(scope, container, "minus_one", np.array([-1.0], dtype=dtype))
    for (name, op, cols), out_var in zip(model.features, operator.outputs, strict=True):
        args = [by_name[c] for c in cols]
        out = out_var.onnx_name
        # The input columns may be integers cast to float upstream; NaN means missing.
        if op == FeatureOp.RATIO.value:
            # Division by zero -> NaN (the imputer fills it), never ±inf.
            quotient = _node(scope, container, "Div", args)
            is_zero = _node(scope, container, "Equal", [args[1], zero])
            _node(scope, container, "Where", [is_zero, nan, quotient], out)
        elif op == FeatureOp.PRODUCT.value:
            _node(scope, container, "Mul", args, out)
        elif op == FeatureOp.DIFFERENCE.value:
            _node(scope, container, "Sub", args, out)
        elif op == FeatureOp.SUM.value:
            _node(scope, container, "Add", args, out)
        elif op == FeatureOp.LOG1P.value:
            # ONNX has no Log1p; log(1+x) loses precision for small x, so use
            # log1p(x) = log(u) * x / (u - 1) with u = 1 + x (exact when u == 1).
            x = args[0]
            u = _node(scope, container, "Add", [x, one])
            d = _node(scope, container, "Sub", [u, one])
            log_u = _node(scope, container, "Log", [u])
            scaled = _node(scope, container, "Div", [_node(scope, container, "Mul", [log_u, x]), d])
            is_exact = _node(scope, container, "Equal", [d, zero])
            value = _node(scope, container, "Where", [is_exact, x, scaled])
            # Only x > -1 is in the domain; NaN compares False, so it stays NaN.
            in_domain = _node(scope, container, "Greater", [x, minus_one])
            _node(scope, container, "Where", [in_domain, value, nan], out)
        else:
            raise NotConvertible(f"engineered feature {name!r}: unknown op {op!r}")


# --------------------------------------------------------------------------- ToObject


def _parse_to_object(scope: Any, model: ToObject, inputs: list[Any], custom_parsers: Any = None) -> list:
    """Identity: string inputs are already strings, and missing ones already the sentinel."""
    from skl2onnx.common.data_types import StringTensorType

    for var in inputs:
        if not isinstance(var.type, StringTensorType):
            raise NotConvertible(f"ToObject on non-string input {var.raw_name!r} is not supported")
    return list(inputs)


# --------------------------------------------------------------------------- SimpleImputer


def _imputer_checks(model: Any) -> None:
    missing = model.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise NotConvertible(f"SimpleImputer(missing_values={missing!r}): only NaN/None is supported")


def _shape_imputer(operator: Any) -> None:
    """Numeric: inputs plus one indicator column per feature that had missing values."""
    from skl2onnx.common.data_types import StringTensorType

    model = operator.raw_operator
    _imputer_checks(model)
    in_type = operator.inputs[0].type
    n_in = int(sum(var.type.shape[1] for var in operator.inputs))
    if isinstance(in_type, StringTensorType):
        operator.outputs[0].type = StringTensorType([None, n_in])
        return
    n_ind = len(model.indicator_.features_) if model.add_indicator else 0
    operator.outputs[0].type = in_type.__class__([None, n_in + n_ind])


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
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
        _node(scope, container, "Identity", [x], out)
        return
    stats = np.asarray(model.statistics_, dtype=np.float64)
    if np.isnan(stats).any():
        # scikit-learn drops all-missing columns then; the graph would keep them.
        raise NotConvertible("SimpleImputer has an all-missing feature (NaN statistic); it would be dropped")
    dtype = _np_float(operator.inputs[0].type)
    is_nan = _node(scope, container, "IsNaN", [x])
    fill = _const(scope, container, "impute_stats", stats.astype(dtype).reshape(1, -1))
    if not model.add_indicator or len(model.indicator_.features_) == 0:
        _node(scope, container, "Where", [is_nan, fill, x], out)
        return
    imputed = _node(scope, container, "Where", [is_nan, fill, x])
    idx = _const(scope, container, "indicator_idx", np.asarray(model.indicator_.features_, dtype=np.int64))
    picked = _node(scope, container, "Gather", [is_nan, idx], axis=1)
    indicator = _node(scope, container, "Cast", [picked], to=_onnx_float(operator.inputs[0].type))
    _node(scope, container, "Concat", [imputed, indicator], out, axis=1)


# --------------------------------------------------------------------------- OneHotEncoder


def _ohe_layout(model: Any) -> list[tuple[list[str], list[int], int, int]]:
    """Per feature: categories, their output column, the unknown column (-1: none), width."""
    if model.drop is not None:
        raise NotConvertible(f"OneHotEncoder(drop={model.drop!r}) is not supported")
    if model.handle_unknown not in ("ignore", "infrequent_if_exist"):
        # scikit-learn raises on unknown categories; a graph cannot raise per row.
        raise NotConvertible(f"OneHotEncoder(handle_unknown={model.handle_unknown!r}) is not supported")
    infrequent = getattr(model, "infrequent_categories_", None) or [None] * len(model.categories_)
    layout = []
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
        layout.append(([str(c) for c in cats], columns, unknown, width))
    return layout


def _shape_ohe(operator: Any) -> None:
    """Width = frequent categories plus one infrequent column per feature that has some."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    model = operator.raw_operator
    width = sum(w for *_, w in _ohe_layout(model))
    cls = DoubleTensorType if np.dtype(model.dtype) == np.float64 else FloatTensorType
    operator.outputs[0].type = cls([None, width])


def _convert_ohe(scope: Any, operator: Any, container: Any) -> None:
    """Map each category to its output column with a LabelEncoder, then compare with a range."""
    from skl2onnx.common.data_types import StringTensorType

    model = operator.raw_operator
    layout = _ohe_layout(model)
    columns: list[str] = []
    for var in operator.inputs:
        if not isinstance(var.type, StringTensorType):
            raise NotConvertible(f"OneHotEncoder on non-string input {var.raw_name!r} is not supported")
        n = int(var.type.shape[1])
        if n == 1:
            columns.append(var.onnx_name)
            continue
        for j in range(n):
            idx = _const(scope, container, "ohe_col", np.array([j], dtype=np.int64))
            columns.append(_node(scope, container, "Gather", [var.onnx_name, idx], axis=1))
    if len(columns) != len(layout):
        raise NotConvertible(f"OneHotEncoder: {len(columns)} input columns for {len(layout)} features")
    out_type = _onnx_float(operator.outputs[0].type)
    parts = []
    for col, (cats, positions, unknown, width) in zip(columns, layout, strict=True):
        if width == 0:
            continue
        index = _node(
            scope,
            container,
            "LabelEncoder",
            [col],
            keys_strings=cats,
            values_int64s=positions,
            default_int64=unknown,
        )
        arange = _const(scope, container, "ohe_range", np.arange(width, dtype=np.int64).reshape(1, -1))
        hot = _node(scope, container, "Equal", [index, arange])
        parts.append(_node(scope, container, "Cast", [hot], to=out_type))
    out = operator.outputs[0].onnx_name
    if len(parts) == 1:
        _node(scope, container, "Identity", parts, out)
    else:
        _node(scope, container, "Concat", parts, out, axis=1)


# --------------------------------------------------------------------------- tree ensembles

#: Float attributes of ai.onnx.ml TreeEnsemble* nodes that have a double ``*_as_tensor`` twin.
_TREE_FLOAT_ATTRS = ("nodes_values", "base_values", "target_weights", "class_weights", "nodes_hitrates")


class _DoubleTreeContainer:
    """Rewrites the TreeEnsemble* node skl2onnx emits so thresholds stay float64.

    skl2onnx 1.20 writes thresholds as float32 attributes; scikit-learn compares in
    float64 (HistGradientBoosting) or float32 inputs against float64 thresholds
    (random forests). Rounded thresholds misroute values near a split, so the
    node gets the opset-3 ``*_as_tensor`` double attributes instead; its float
    scores are then cast to the declared double output.
    """

    def __init__(self, container: Any, scope: Any, float32_inputs: bool, score_type: int) -> None:
        self._container = container
        self._scope = scope
        self._float32_inputs = float32_inputs
        self._score_type = score_type

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "", **attrs: Any) -> Any:
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


def _convert_tree(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx's forest/boosting converter with double thresholds (see :class:`_DoubleTreeContainer`)."""
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.base import is_classifier

    model = operator.raw_operator
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        raise NotConvertible(f"{type(model).__name__}: expected a double input")
    forest = hasattr(model, "estimators_")  # RandomForest*: scikit-learn casts X to float32
    score_type = _onnx_float(operator.outputs[-1].type)
    wrapped = _DoubleTreeContainer(container, scope, float32_inputs=forest, score_type=score_type)
    convert = (
        convert_sklearn_random_forest_classifier
        if is_classifier(model)
        else convert_sklearn_random_forest_regressor_converter
    )
    # op_version 3 makes skl2onnx keep float64 attribute values for the wrapper to move.
    convert(scope, operator, wrapped, op_version=3)


# --------------------------------------------------------------------------- validation


def _check_components(model: Any) -> tuple[Any, Any]:
    """Refuse anything not on the verified list; return (final estimator, classifier or None)."""
    from sklearn.base import is_classifier
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    allowed = (SimpleImputer, OneHotEncoder, StandardScaler, EngineeredFeatures, ToObject)

    def walk(part: Any, where: str) -> None:
        if isinstance(part, Pipeline):
            for name, step in part.steps:
                walk(step, f"{where}.{name}")
        elif isinstance(part, ColumnTransformer):
            if part.transformer_weights is not None:
                raise NotConvertible(f"{where}: transformer_weights are not supported")
            for name, sub, _ in part.transformers_:
                if name == "remainder" and sub == "drop":
                    continue
                if isinstance(sub, str):
                    raise NotConvertible(f"{where}.{name}: {sub!r} transformers are not supported")
                walk(sub, f"{where}.{name}")
        elif not isinstance(part, allowed):
            raise NotConvertible(f"{where}: {type(part).__name__} is not a verified ONNX conversion")

    if not isinstance(model, Pipeline) or len(model.steps) < 2:
        raise NotConvertible("expected a Pipeline of preprocessing steps then an estimator")
    estimator = model.steps[-1][1]
    for name, step in model.steps[:-1]:
        walk(step, name)
    kind = type(estimator).__name__
    if kind not in _ESTIMATORS:
        raise NotConvertible(f"estimator {kind} is not a verified ONNX conversion")
    if kind.startswith("HistGradientBoosting"):
        categorical = getattr(estimator, "is_categorical_", None)
        if categorical is not None and np.any(categorical):
            raise NotConvertible(f"{kind} with categorical splits: skl2onnx converts only numeric splits")
    return estimator, (estimator if is_classifier(estimator) else None)


def _initial_types(spec: ServingSpec) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    from tabpipe.contract import ColumnType

    types = []
    for column in spec.inputs:
        dtype = column.rules.dtype
        if dtype in (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN):
            types.append((column.name, DoubleTensorType([None, 1])))
        elif dtype is ColumnType.STRING:
            types.append((column.name, StringTensorType([None, 1])))
        else:
            raise NotConvertible(f"input {column.name!r}: {dtype.value} inputs are not supported")
    return types


def convert_bundle(model: Any, spec: ServingSpec) -> ConversionResult:
    """Convert a fitted ``Pipeline([("preprocess", ...), ("model", estimator)])`` to ONNX.

    Args:
        model: The fitted scikit-learn pipeline taking the raw input columns.
        spec: Its serving spec: input order and types, task and classes.

    Returns:
        The ONNX bytes, or None with the reason when there is no faithful conversion.
        Conversion never raises for an unsupported model; the caller records the reason.
    """
    try:
        return _convert(model, spec)
    except NotConvertible as exc:
        return ConversionResult(onnx_bytes=None, reason=str(exc), opset={})
    except Exception as exc:  # noqa: BLE001 (skl2onnx raises many types; each is a reason not to serve ONNX)
        # skl2onnx messages can embed whole tensors; keep the reason readable.
        message = " ".join(str(exc).split())
        if len(message) > _MAX_REASON:
            message = message[:_MAX_REASON] + "..."
        return ConversionResult(
            onnx_bytes=None, reason=f"skl2onnx failed: {type(exc).__name__}: {message}", opset={}
        )


def _convert(model: Any, spec: ServingSpec) -> ConversionResult:
    from skl2onnx import convert_sklearn
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    names = [column.name for column in spec.inputs]
    fitted_names = [str(n) for n in getattr(model, "feature_names_in_", [])]
    if fitted_names != names:
        raise NotConvertible(f"model inputs {fitted_names} differ from the serving spec's {names}")
    _, classifier = _check_components(model)
    if spec.task.is_classification:
        if classifier is None:
            raise NotConvertible("the spec is a classification task but the estimator is not a classifier")
        fitted_classes = [c.item() if hasattr(c, "item") else c for c in classifier.classes_]
        if fitted_classes != list(spec.classes):
            raise NotConvertible(
                f"model classes {fitted_classes} differ from the serving spec's {spec.classes}"
            )
    options = {id(classifier): {"zipmap": False}} if classifier is not None else None
    onx = convert_sklearn(
        model,
        initial_types=_initial_types(spec),
        target_opset=dict(TARGET_OPSET),
        options=options,
        custom_parsers={EngineeredFeatures: _parse_engineered, ToObject: _parse_to_object},
        custom_shape_calculators={
            EngineeredFeatures: _shape_engineered,
            SimpleImputer: _shape_imputer,
            OneHotEncoder: _shape_ohe,
        },
        custom_conversion_functions={
            EngineeredFeatures: _convert_engineered,
            SimpleImputer: _convert_imputer,
            OneHotEncoder: _convert_ohe,
            **dict.fromkeys(
                (
                    RandomForestClassifier,
                    RandomForestRegressor,
                    HistGradientBoostingClassifier,
                    HistGradientBoostingRegressor,
                ),
                _convert_tree,
            ),
        },
    )
    graph_inputs = [i.name for i in onx.graph.input]
    if graph_inputs != names:
        raise NotConvertible(f"graph inputs {graph_inputs} differ from the spec's {names}")
    wanted = PROBA_OUTPUT if classifier is not None else REGRESSION_OUTPUT
    if wanted not in [o.name for o in onx.graph.output]:
        raise NotConvertible(f"graph has no {wanted!r} output")
    metadata = {
        META_MISSING_STRING: MISSING_STRING,
        META_TASK: spec.task.value,
        META_CLASSES: json.dumps(list(spec.classes)),
        META_INPUTS: json.dumps(names),
    }
    for key, value in metadata.items():
        prop = onx.metadata_props.add()
        prop.key, prop.value = key, value
    data = onx.SerializeToString()
    _smoke_load(data)
    return ConversionResult(
        onnx_bytes=data, reason=None, opset={imp.domain: imp.version for imp in onx.opset_import}
    )


def _smoke_load(data: bytes) -> None:
    """Fail conversion, not serving, when onnxruntime cannot load the graph."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 (any load failure means the graph is unusable)
        raise NotConvertible(f"onnxruntime cannot load the converted graph: {exc}") from None


# --------------------------------------------------------------------------- parity


def check_parity(
    model: Any, onnx_bytes: bytes, frame: pd.DataFrame, spec: ServingSpec, tolerance: float = 1e-4
) -> ParityResult:
    """Run scikit-learn and the ONNX model on the same rows and compare.

    The ONNX side goes through :class:`~tabpipe.serving.onnx_predictor.OnnxPredictor`
    with the columns built as the server builds them, so the check covers the
    serving path, not just the graph.

    Args:
        model: The fitted scikit-learn pipeline.
        onnx_bytes: Its conversion.
        frame: Rows to compare on (e.g. the test split); extra columns are ignored.
        spec: The serving spec.
        tolerance: Classification: absolute probability tolerance. Regression:
            ``|onnx - sklearn| <= tolerance * (1 + |sklearn|)`` (relative, absolute near 0).

    Returns:
        The differences and whether they are within the tolerance.
    """
    from tabpipe.serving.onnx_predictor import OnnxPredictor, columns_from_frame

    names = [column.name for column in spec.inputs]
    features = frame[names]
    pred, proba = OnnxPredictor(onnx_bytes, spec).predict(columns_from_frame(features, spec))
    n = len(features)
    if spec.task.is_classification:
        expected = np.asarray(model.predict_proba(features), dtype=np.float64)
        expected_pred = np.asarray(model.predict(features))
        diff = float(np.max(np.abs(proba - expected))) if n else 0.0
        mismatched = np.flatnonzero(pred != expected_pred)
        classes = list(spec.classes)
        # A flipped label is explained only by a tie in scikit-learn's own probabilities.
        unexplained = [
            i
            for i in mismatched
            if abs(expected[i, classes.index(pred[i])] - expected[i, classes.index(expected_pred[i])])
            > tolerance
        ]
        passed = bool(diff <= tolerance and not unexplained)
        return ParityResult(
            n_rows=n,
            tolerance=tolerance,
            passed=passed,
            max_abs_proba_diff=diff,
            mismatch_count=len(mismatched),
        )
    expected = np.asarray(model.predict(features), dtype=np.float64)
    got = np.asarray(pred, dtype=np.float64)
    abs_diff = np.abs(got - expected)
    rel_diff = abs_diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    passed = bool(np.all(abs_diff <= tolerance * (1.0 + np.abs(expected))))
    return ParityResult(
        n_rows=n,
        tolerance=tolerance,
        passed=passed,
        max_abs_pred_diff=float(abs_diff.max()) if n else 0.0,
        max_rel_pred_diff=float(rel_diff.max()) if n else 0.0,
    )


def parity_gate_check(
    model: Any,
    conversion: ConversionResult,
    frame: pd.DataFrame,
    spec: ServingSpec,
    tolerance: float = 1e-4,
    require_onnx: bool = False,
) -> Any:
    """The blessing gate's ``onnx parity`` check (a :class:`~tabpipe.stages.evaluate.GateCheck`).

    A model without a conversion passes unless ``require_onnx``: it is served by
    the verified scikit-learn bundle. A converted model that disagrees with
    scikit-learn fails, because serving would prefer the wrong graph.

    Args:
        model: The fitted scikit-learn pipeline.
        conversion: What :func:`convert_bundle` returned for it.
        frame: Rows to compare on, e.g. the test split.
        spec: The serving spec.
        tolerance: See :func:`check_parity`.
        require_onnx: Fail when there is no ONNX model.
    """
    from tabpipe.stages.evaluate import GateCheck

    name = "onnx parity"
    if conversion.onnx_bytes is None:
        detail = f"no ONNX model ({conversion.reason}); scikit-learn serves it"
        return GateCheck(name, not require_onnx, detail)
    return GateCheck(name, *_parity_verdict(model, conversion.onnx_bytes, frame, spec, tolerance))


def _parity_verdict(
    model: Any, onnx_bytes: bytes, frame: pd.DataFrame, spec: ServingSpec, tolerance: float
) -> tuple[bool, str]:
    try:
        parity = check_parity(model, onnx_bytes, frame, spec, tolerance)
    except Exception as exc:  # noqa: BLE001 (a graph that cannot run on the test rows fails the check)
        return False, f"ONNX model failed on the test rows: {type(exc).__name__}: {exc}"
    return parity.passed, parity.detail
