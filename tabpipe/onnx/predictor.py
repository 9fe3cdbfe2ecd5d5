"""The ONNX fast path: onnxruntime on a graph made by :mod:`tabpipe.onnx.export`.

Per call it only reshapes each column to ``[n, 1]`` (no copy for float64),
replaces missing strings with the graph's sentinel and runs one output; the
input names, class labels and run options are prepared once.

Callers pass columns by the contract's names; the graph's inputs have safe
names (``c0_mean_radius``), and the model's metadata maps each to its
contract name (:data:`META_INPUT_NAMES`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from tabpipe.contract import ColumnType

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.serving_spec import ServingSpec

#: Keys of the metadata :mod:`tabpipe.onnx.export` writes into the model.
META_MISSING_STRING = "tabpipe.missing_string"
META_TASK = "tabpipe.task"
META_CLASSES = "tabpipe.classes"
META_INPUTS = "tabpipe.inputs"
#: JSON object: graph input name -> contract column name, in the spec's order.
META_INPUT_NAMES = "tabpipe.input_names"
#: Graph output names skl2onnx gives classifiers (zipmap off) and regressors.
PROBA_OUTPUT = "probabilities"
REGRESSION_OUTPUT = "variable"

_NUMERIC = (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN)


class OnnxPredictor:
    """A :class:`~tabpipe.serving.predictor.Predictor` backed by onnxruntime.

    Args:
        onnx_bytes: A model made by :func:`~tabpipe.onnx.export.convert_bundle`.
        spec: The serving spec the model was converted with.
        threads: Intra-op threads; 1 keeps latency predictable on small hosts,
            where a thread pool's spin-waits cost more than one row's arithmetic.

    Raises:
        ValueError: the graph's inputs, task or classes do not match the spec.
    """

    kind = "onnx"

    def __init__(self, onnx_bytes: bytes, spec: ServingSpec, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No CPU memory arena: it grows to the largest batch served (a 10,000-row request, or
        # several at once) and never shrinks, so the server would stay at its peak after hostile
        # traffic. Plain allocations cost nothing measurable here (single-row p50 unchanged).
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        names = [column.name for column in spec.inputs]
        graph_inputs = [i.name for i in self._session.get_inputs()]
        # Graphs made before inputs were renamed use the contract's names themselves.
        mapping = json.loads(meta.get(META_INPUT_NAMES, "null")) or {name: name for name in graph_inputs}
        if (
            list(mapping) != graph_inputs
            or list(mapping.values()) != names
            or json.loads(meta.get(META_INPUTS, "null")) != names
        ):
            raise ValueError(
                f"ONNX inputs {graph_inputs} (for columns {list(mapping.values())}) "
                f"do not match the serving spec's inputs {names}"
            )
        if meta.get(META_TASK) != spec.task.value:
            raise ValueError(
                f"ONNX model is for task {meta.get(META_TASK)!r}, the spec for {spec.task.value!r}"
            )
        self._classify = spec.task.is_classification
        if self._classify and json.loads(meta.get(META_CLASSES, "[]")) != list(spec.classes):
            raise ValueError(f"ONNX classes {meta.get(META_CLASSES)} do not match the spec's {spec.classes}")
        self._missing = meta.get(META_MISSING_STRING)
        if self._missing is None:
            raise ValueError("ONNX model lacks the missing-string metadata; was it made by convert_bundle?")
        # (graph input, contract name, is_string) in spec order.
        self._inputs = [
            (graph_name, c.name, c.rules.dtype not in _NUMERIC)
            for graph_name, c in zip(graph_inputs, spec.inputs, strict=True)
        ]
        self._output = [PROBA_OUTPUT if self._classify else REGRESSION_OUTPUT]
        # Keep numeric labels numeric (ints stay ints) so they compare equal to the bundle's.
        self._classes = np.asarray(spec.classes) if self._classify else None

    def _string_column(self, values: np.ndarray) -> np.ndarray:
        # None (and a stray NaN) means missing; ONNX strings cannot be null.
        missing = self._missing
        out = np.empty((len(values), 1), dtype=object)
        out[:, 0] = [missing if (v is None or v != v) else v for v in values]
        return out

    def predict(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return predictions and, for classifiers, probabilities (n_rows × n_classes, spec class order).

        Args:
            columns: One array per input, keyed by the contract's column name.
        """
        feed: dict[str, Any] = {}
        for graph_name, name, is_string in self._inputs:
            values = columns[name]
            if is_string:
                feed[graph_name] = self._string_column(values)
            else:
                feed[graph_name] = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        (result,) = self._session.run(self._output, feed)
        if not self._classify:
            return result.reshape(-1).astype(np.float64, copy=False), None
        proba = result.astype(np.float64, copy=False)
        # argmax over the probabilities is how every supported classifier predicts.
        return self._classes[np.argmax(proba, axis=1)], proba


def columns_from_frame(frame: pd.DataFrame, spec: ServingSpec) -> dict[str, np.ndarray]:
    """Build the predictor's input columns from a DataFrame, as the server would.

    The same canonical values the rule engine checks (:func:`tabpipe.contract.frame.canonical_values`):
    float64 with NaN for numbers and booleans (``yes``/``no`` tokens included), object arrays
    with None for text, normalised as the contract declares.

    Raises:
        ValueError: a column's dtype does not fit its contract (batch scoring checks each chunk first).
    """
    from tabpipe.contract.frame import canonical_values

    columns: dict[str, np.ndarray] = {}
    for column in spec.inputs:
        problem, values = canonical_values(frame[column.name], column.rules)
        if problem is not None:
            raise ValueError(f"column {column.name!r}: expected dtype {column.rules.dtype.value}, {problem}")
        columns[column.name] = values
    return columns
