"""Export a trained model bundle to ONNX.

The graph has one input per raw column, in the serving spec's order: numeric
columns as ``double [N, 1]`` with NaN for missing (exactly what serving
receives, so there is no cast and no rounding), string columns as
``string [N, 1]``. ONNX string tensors cannot hold a null, so a missing string
is fed as :data:`MISSING_STRING` (``"__missing__"``, the training imputer's own
fill value): the string imputer becomes an identity and a client sending that
literal gets what scikit-learn would give it too.

Column names need not be identifiers ("mean radius", "od280/od315", "größe").
skl2onnx is given the contract's names, because the ColumnTransformer and the
engineered features select columns by them; the finished graph's inputs are
then renamed to safe ones (:func:`graph_input_names`, e.g. ``c0_mean_radius``),
and the model's metadata maps each back to its contract name
(:data:`~tabpipe.onnx.predictor.META_INPUT_NAMES`), so callers keep using the
contract's names.

Where skl2onnx's stock converters are not faithful, the ones in
:mod:`tabpipe.onnx.converters` replace them for the duration of one conversion
(nothing is registered globally). The final estimator must be in the estimator
registry (:mod:`tabpipe.estimators`), whose entry names its converter or the
reason it has none; preprocessing must be on a short list of verified
components. Anything else is refused with a reason rather than converted on
trust, and :func:`tabpipe.onnx.parity.check_parity` is the final word on every
converted model.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabpipe.estimators import ESTIMATORS, NotExportable, OnnxConverter, import_object, spec_for_class
from tabpipe.onnx.common import MISSING_STRING, TARGET_OPSET, NotConvertible
from tabpipe.onnx.predictor import (
    META_CLASSES,
    META_INPUT_NAMES,
    META_INPUTS,
    META_MISSING_STRING,
    META_TASK,
    PROBA_OUTPUT,
    REGRESSION_OUTPUT,
)

if TYPE_CHECKING:
    from tabpipe.serving_spec import ServingSpec

__all__ = [
    "MISSING_STRING",
    "TARGET_OPSET",
    "ConversionResult",
    "NotConvertible",
    "convert_bundle",
    "graph_input_names",
    "initial_types",
]

_MAX_REASON = 400
#: Longest part of a column name kept in its graph input name (the position keeps names unique).
_MAX_SLUG = 40


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

    def __post_init__(self) -> None:
        """A refusal must say why (in words, not ``None``); a conversion has no reason."""
        from tabpipe.serving_spec import reason_problem

        if self.onnx_bytes is None:
            problem = reason_problem(self.reason)
            if problem is not None:
                raise ValueError(f"a ConversionResult without ONNX bytes needs a reason ({problem})")
        elif self.reason is not None:
            raise ValueError(f"a converted model has no refusal reason, got {self.reason!r}")

    @property
    def converted(self) -> bool:
        """Whether an ONNX model was produced."""
        return self.onnx_bytes is not None


def _check_estimator(estimator: Any) -> None:
    """Refuse an estimator the registry does not know, or one it declares not exportable."""
    kind = type(estimator).__name__
    spec = spec_for_class(type(estimator))
    if spec is None:
        raise NotConvertible(
            f"estimator {kind} is not in tabpipe's estimator registry (tabpipe.estimators), "
            "so it has no verified ONNX conversion"
        )
    if isinstance(spec.onnx, NotExportable):
        raise NotConvertible(f"estimator {kind} ({spec.name}) has no ONNX conversion: {spec.onnx.reason}")


def _check_components(model: Any) -> tuple[Any, Any]:
    """Refuse anything not verified; return (final estimator, classifier or None)."""
    from sklearn.base import is_classifier
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from tabpipe.features import EngineeredFeatures, ToObject

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
    _check_estimator(estimator)
    return estimator, (estimator if is_classifier(estimator) else None)


def _estimator_converters() -> dict[type, Any]:
    """The custom converter of every registered class that names one (stock ones need none)."""
    converters: dict[type, Any] = {}
    for spec in ESTIMATORS.values():
        if isinstance(spec.onnx, OnnxConverter) and spec.onnx.path is not None:
            function = import_object(spec.onnx.path)
            for estimator_class in spec.classes:
                converters[estimator_class.load()] = function
    return converters


def graph_input_names(names: Sequence[str]) -> list[str]:
    """Safe ONNX input names for the contract's column names, in the same order.

    Name ``i`` is ``c{i}_{slug}``: the slug is the name folded to ASCII, lower
    case, with every run of other characters one underscore (``"mean radius"``
    at position 0 gives ``c0_mean_radius``). The position makes the names
    unique even when two columns fold to the same slug (``"a b"`` and
    ``"a-b"``), the leading ``c`` makes them identifiers whatever the column
    name starts with, and they depend on nothing but the names.

    Args:
        names: The contract's input column names, in the serving spec's order.

    Returns:
        One name per column, each matching ``[A-Za-z_][A-Za-z0-9_]*``.
    """
    safe = []
    for position, name in enumerate(names):
        # NFKD splits accents off their letters, so "größe" keeps its "o".
        folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        slug = re.sub(r"[^0-9A-Za-z]+", "_", folded).strip("_").lower()[:_MAX_SLUG].rstrip("_")
        safe.append(f"c{position}_{slug}" if slug else f"c{position}")
    return safe


def _skl2onnx_input_names(names: Sequence[str]) -> list[str]:
    """The names skl2onnx gives the graph inputs declared as ``names`` (it rewrites non-identifiers)."""
    # skl2onnx declares the initial inputs first, in order, each through this function
    # with the set of names taken so far; replaying it tells which graph input is which
    # column without trusting the order alone.
    from skl2onnx.common._topology import Topology

    taken: set[str] = set()
    return [Topology._generate_unique_name(name, taken) for name in names]


def _rename_graph_inputs(graph: Any, renames: dict[str, str]) -> None:
    """Rename graph inputs everywhere they are read (subgraphs included).

    Raises:
        NotConvertible: a new name is already used by another tensor of the graph.
    """
    from onnx import AttributeProto

    def tensor_names(g: Any) -> set[str]:
        found = {t.name for t in g.initializer} | {o.name for o in g.output} | {v.name for v in g.value_info}
        for n in g.node:
            found.update(n.input)
            found.update(n.output)
            for attr in n.attribute:
                subgraphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
                for sub in subgraphs:
                    found |= tensor_names(sub)
        return found

    clashes = sorted((tensor_names(graph) - set(renames)) & set(renames.values()))
    if clashes:
        raise NotConvertible(f"graph input names {clashes} are already used inside the graph")

    def rename_reads(g: Any) -> None:
        for n in g.node:
            for i, name in enumerate(n.input):
                if name in renames:
                    n.input[i] = renames[name]
            for attr in n.attribute:
                subgraphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
                for sub in subgraphs:
                    rename_reads(sub)
        for value in g.value_info:
            if value.name in renames:
                value.name = renames[value.name]

    for graph_input in graph.input:
        graph_input.name = renames.get(graph_input.name, graph_input.name)
    rename_reads(graph)


def initial_types(spec: ServingSpec) -> list[tuple[str, Any]]:
    """The inputs skl2onnx converts with: one ``[N, 1]`` tensor per raw column, in the spec's order.

    They carry the contract's names, which the fitted ColumnTransformer and the
    engineered features select columns by; the finished graph's inputs are
    renamed to :func:`graph_input_names`.

    Raises:
        NotConvertible: a column's type has no graph input type (datetimes).
    """
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
        return ConversionResult(onnx_bytes=None, reason=_reason(exc, limit=None), opset={})
    except Exception as exc:  # noqa: BLE001 (skl2onnx raises many types; each is a reason not to serve ONNX)
        return ConversionResult(
            onnx_bytes=None, reason=f"skl2onnx failed: {type(exc).__name__}: {_reason(exc)}", opset={}
        )


def _reason(exc: BaseException, limit: int | None = _MAX_REASON) -> str:
    """An exception's message as one line (at most ``limit`` characters); never empty, never ``"None"``."""
    from tabpipe.serving_spec import reason_problem

    # skl2onnx messages can embed whole tensors; keep the reason readable.
    message = " ".join(str(exc).split())
    if limit is not None and len(message) > limit:
        message = message[:limit] + "..."
    if reason_problem(message) is not None:
        # str() of an exception raised without a message (or with None) is "" or "None".
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        origin = f" in {where.tb_frame.f_code.co_name}" if where is not None else ""
        message = f"{type(exc).__name__} raised without a message{origin}"
    return message


def _convert(model: Any, spec: ServingSpec) -> ConversionResult:
    from skl2onnx import convert_sklearn
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    from tabpipe.features import EngineeredFeatures, ToObject
    from tabpipe.onnx.converters import engineered, imputer, one_hot, to_object

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
        initial_types=initial_types(spec),
        target_opset=dict(TARGET_OPSET),
        options=options,
        custom_parsers={EngineeredFeatures: engineered.parse, ToObject: to_object.parse},
        custom_shape_calculators={
            EngineeredFeatures: engineered.shape,
            SimpleImputer: imputer.shape,
            OneHotEncoder: one_hot.shape,
        },
        custom_conversion_functions={
            EngineeredFeatures: engineered.convert,
            SimpleImputer: imputer.convert,
            OneHotEncoder: one_hot.convert,
            **_estimator_converters(),
        },
    )
    graph_inputs = [i.name for i in onx.graph.input]
    if graph_inputs != _skl2onnx_input_names(names):
        raise NotConvertible(f"graph inputs {graph_inputs} do not correspond to the spec's {names}")
    safe_names = graph_input_names(names)
    _rename_graph_inputs(onx.graph, dict(zip(graph_inputs, safe_names, strict=True)))
    wanted = PROBA_OUTPUT if classifier is not None else REGRESSION_OUTPUT
    if wanted not in [o.name for o in onx.graph.output]:
        raise NotConvertible(f"graph has no {wanted!r} output")
    metadata = {
        META_MISSING_STRING: MISSING_STRING,
        META_TASK: spec.task.value,
        META_CLASSES: json.dumps(list(spec.classes)),
        META_INPUTS: json.dumps(names),
        # Graph input name -> contract name, in the spec's order (JSON keeps it).
        META_INPUT_NAMES: json.dumps(dict(zip(safe_names, names, strict=True))),
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
