"""Decoding and validating Open Inference Protocol (V2) infer requests against the contract.

A request is a JSON object whose ``inputs`` hold one tensor per model input
column (``"parameters": {"content_type": "pd"}`` marks it as a table, as in
MLServer and KServe; requests without it are accepted when the inputs are the
named columns). Every problem raises :class:`RequestError` naming the field.

Status codes:
  * 400: the body is not a well-formed V2 request (bad JSON, missing ``inputs``,
    wrong structure, unknown datatype, shape that does not match the data).
  * 413: the body or the number of rows exceeds the server's limits.
  * 422: a well-formed request that breaks the model's contract (missing or
    extra column, datatype the column cannot take, null where not nullable,
    value outside the allowed set or the min/max range).

Soft rules (``soft_min``/``soft_max``) never reject: a request that only breaks
them is answered, and :attr:`DecodedRequest.warnings` carries them for the
metrics. Decoding produces the contract's canonical values: a boolean column
also takes BYTES holding ``yes``/``no``-style tokens (1.0/0.0), and a string
column's declared ``normalize`` steps are applied before the rules, exactly as
validation and batch scoring do (:mod:`tabpipe.contract.rules`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tabpipe.contract import ColumnContract, ColumnType
from tabpipe.contract.rules import (
    BOOLEAN_TOKENS,
    FastColumn,
    ValueKind,
    Violation,
    applicable_rules,
    boolean_token,
    check_values,
    errors,
    normalize_values,
    value_kind,
    warnings_of,
)
from tabpipe.serving.binary import binary_size, read_tensor, split_body, wants_binary
from tabpipe.serving.request_error import RequestError
from tabpipe.serving_spec import ServingSpec

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_INFLIGHT = 64
#: Request bodies in flight at once, in units of the largest allowed body, by default.
DEFAULT_INFLIGHT_BODIES = 4
#: Repository loads allowed per minute by default (a deploy needs one, two when it rolls back).
DEFAULT_MAX_LOADS_PER_MINUTE = 12
#: How long a request body may take to arrive before it is answered 408.
DEFAULT_BODY_READ_SECONDS = 30.0

_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
_NUMERIC_TYPES = frozenset(_INT_RANGES) | _FLOAT_TYPES
KNOWN_DATATYPES = _NUMERIC_TYPES | {"BOOL", "BYTES"}

# Which OIP datatypes each contract dtype accepts.
_ACCEPTED: dict[ColumnType, frozenset[str]] = {
    ColumnType.INTEGER: _NUMERIC_TYPES,
    ColumnType.FLOAT: _NUMERIC_TYPES,
    # BYTES: yes/no-style tokens (tabpipe.contract.rules.BOOLEAN_TOKENS), as CSV files hold them.
    ColumnType.BOOLEAN: frozenset({"BOOL", "BYTES"}) | frozenset(_INT_RANGES),
    ColumnType.STRING: frozenset({"BYTES"}),
    ColumnType.DATETIME: frozenset({"BYTES"}),
}

# The datatype a column is advertised with in the model metadata.
CONTRACT_DATATYPE: dict[ColumnType, str] = {
    ColumnType.INTEGER: "INT64",
    ColumnType.FLOAT: "FP64",
    ColumnType.BOOLEAN: "BOOL",
    ColumnType.STRING: "BYTES",
    ColumnType.DATETIME: "BYTES",
}

# Requests of at most this many rows are checked in plain Python (about 20x cheaper
# per column than numpy for one row); larger ones use the vectorised checks. Both
# evaluate the contract's one rule table (tabpipe.contract.rules).
DEFAULT_FAST_PATH_ROWS = 16

_NONE = type(None)
_NUMBER_TYPES = frozenset({int, float, _NONE})
_BOOL_TYPES = frozenset({bool, _NONE})
_STRING_TYPES = frozenset({str, _NONE})
_INT_TYPES = frozenset({int})
# The Python type of the values of a binary tensor's array, by numpy kind (what tolist() gives).
_PLAIN_TYPE: dict[str, type] = {"b": bool, "i": int, "u": int, "f": float}


@dataclass(frozen=True)
class Limits:
    """Request size limits."""

    max_rows: int = DEFAULT_MAX_ROWS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Requests of at most this many rows try the plain-Python fast path first.
    fast_path_rows: int = DEFAULT_FAST_PATH_ROWS
    #: Infer requests in progress at once (REST and gRPC together); more answer 503 with Retry-After.
    max_inflight: int = DEFAULT_MAX_INFLIGHT


@dataclass(frozen=True)
class DecodedRequest:
    """A validated request: its id, the columns in spec order, the row count and requested outputs.

    ``warnings`` are the soft rules the request broke (accepted, to be counted).
    """

    id: str | None
    columns: dict[str, np.ndarray]
    n_rows: int
    outputs: list[str] | None
    warnings: tuple[Violation, ...] = ()
    #: Outputs to answer in the binary tensor format (``binary_data``/``binary_data_output``).
    binary_outputs: frozenset[str] = frozenset()


def _examples(values: list[Any], limit: int = 3) -> str:
    shown = ", ".join(repr(v)[:40] for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Column:
    """A contract column compiled for decoding: datatype checks here, row rules from the rule engine."""

    __slots__ = ("name", "rules", "accepted", "is_numeric", "fast", "fast_path_rows", "row_rules")

    def __init__(self, name: str, rules: ColumnContract, fast_path_rows: int) -> None:
        self.name = name
        self.fast_path_rows = fast_path_rows
        self.rules = rules
        self.accepted = _ACCEPTED[rules.dtype]
        self.is_numeric = value_kind(rules.dtype) is ValueKind.NUMBER
        self.fast = FastColumn(rules)
        self.row_rules = applicable_rules(rules)

    def convert(
        self, datatype: str, data: list[Any] | np.ndarray, types: set[type] | None = None
    ) -> tuple[np.ndarray, list[Violation]]:
        """Decode one input's values to canonical values and check them against the row rules.

        Args:
            datatype: The tensor's OIP datatype.
            data: Its values, flat: a list, or an array for a large binary fixed-width tensor.
            types: ``set(map(type, data))`` when the caller has it already (one pass over the values).

        Raises:
            RequestError: the datatype or the JSON values do not fit the column (a malformed tensor).
        """
        where = f"inputs[{self.name!r}]"
        if types is None:
            types = set(map(type, data))
        if datatype not in self.accepted:
            raise RequestError(
                422,
                f"{where}: datatype {datatype} does not fit the contract dtype {self.rules.dtype.value} "
                f"(accepted: {', '.join(sorted(self.accepted))})",
            )
        if self.is_numeric and datatype == "BYTES":  # only a boolean column accepts BYTES
            values = self._boolean_tokens(where, data, types)
        elif self.is_numeric:
            if len(data) <= self.fast_path_rows:
                fast = self._fast_numeric(datatype, data)
                if fast is not None:
                    return fast, []
            values = self._numeric(where, datatype, data, types)
        else:
            values = normalize_values(self.rules, self._strings(where, data, types))
            # The fast path judges the normalised values (the plain list when nothing changes).
            checked = values.tolist() if self.rules.normalize else data
            if len(data) <= self.fast_path_rows and self.fast.accepts(checked):
                return values, []
        return values, check_values(self.name, self.rules, values, self.row_rules)

    def _boolean_tokens(self, where: str, data: list[Any], types: set[type]) -> np.ndarray:
        """Text booleans (``yes``/``no``, ``true``/``false``, ``y``/``n``, ``t``/``f``) as 1.0/0.0."""
        strings = self._strings(where, data, types)
        mapped = [None if v is None else boolean_token(v) for v in strings]
        bad = [v for v, m in zip(data, mapped, strict=True) if v is not None and m is None]
        if bad:
            raise RequestError(
                422,
                f"{where}: datatype BYTES for a boolean column needs one of "
                f"{', '.join(sorted(BOOLEAN_TOKENS))} (any case), got {_examples(bad)}",
            )
        return np.array([math.nan if m is None else m for m in mapped], dtype=np.float64)

    def _fast_numeric(self, datatype: str, data: list[Any]) -> np.ndarray | None:
        """Plain-Python decoding for a few rows, where numpy's per-call cost dominates.

        Returns the array when every value is a number of the tensor's datatype and
        passes every row rule (:class:`FastColumn`), else None: the vectorised path
        then runs and names the problem.
        """
        boolean = datatype == "BOOL"
        whole = datatype in _INT_RANGES
        low_bound, high_bound = _INT_RANGES.get(datatype, (-math.inf, math.inf))
        floats: list[float | None] = []
        for value in data:
            kind = type(value)
            if value is None or (boolean and kind is bool):
                floats.append(None if value is None else float(value))
                continue
            if boolean or kind not in (int, float):
                return None  # bool in a numeric tensor, strings, ...: the full checks decide
            if not low_bound <= value <= high_bound:
                return None
            try:
                number = float(value)
            except OverflowError:  # an integer past the float range (FP64 has no bounds to stop it)
                return None
            if whole and not number.is_integer():
                return None
            floats.append(number)
        if not self.fast.accepts(floats):
            return None
        return np.array([math.nan if v is None else v for v in floats], dtype=np.float64)

    def _numeric(
        self, where: str, datatype: str, data: list[Any] | np.ndarray, types: set[type]
    ) -> np.ndarray:
        if datatype == "BOOL":
            if not types <= _BOOL_TYPES:
                bad = [v for v in data if type(v) not in _BOOL_TYPES]
                raise RequestError(
                    422, f"{where}: datatype BOOL needs true/false values, got {_examples(bad)}"
                )
        elif not types <= _NUMBER_TYPES:
            # bool is an int subclass, so it is rejected here by exact type.
            bad = [v for v in data if type(v) not in _NUMBER_TYPES]
            raise RequestError(
                422,
                f"{where}: datatype {datatype} needs numbers, got {_type_name(bad[0])} ({_examples(bad)})",
            )
        try:
            # Without nulls numpy converts the list as it is (float() of each value, as below).
            values = np.array(
                data if _NONE not in types else [math.nan if v is None else v for v in data],
                dtype=np.float64,
            )
        except OverflowError:
            raise RequestError(422, f"{where}: a value is too large for a 64-bit float") from None
        if datatype not in _INT_RANGES:
            return values
        # Python ints (the usual integer tensor) are finite and whole: only their range is checked.
        finite = values if types <= _INT_TYPES else values[np.isfinite(values)]
        if finite.size:
            if float in types and not (finite == np.floor(finite)).all():
                raise RequestError(
                    422, f"{where}: datatype {datatype} needs whole numbers, got {_examples(finite.tolist())}"
                )
            low, high = _INT_RANGES[datatype]
            if finite.min() < low or finite.max() > high:
                raise RequestError(422, f"{where}: values outside the range of {datatype}")
        return values

    def _strings(self, where: str, data: list[Any], types: set[type]) -> np.ndarray:
        if not types <= _STRING_TYPES:
            bad = [v for v in data if type(v) not in _STRING_TYPES]
            raise RequestError(
                422, f"{where}: datatype BYTES needs strings, got {_type_name(bad[0])} ({_examples(bad)})"
            )
        text = data if _NONE not in types else [v for v in data if v is not None]
        # ASCII text (nearly all) is valid; the per-value search runs only when some is not.
        if not all(map(str.isascii, text)):
            for i, value in enumerate(data):
                # JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8 consumer
                # (onnxruntime, Arrow, logs) accepts: refuse them here rather than crash further down.
                if value is not None and not value.isascii() and not _is_utf8(value):
                    raise RequestError(
                        400, f"{where}.data[{i}]: not valid Unicode text (a lone surrogate such as \\ud800)"
                    )
        values = np.empty(len(data), dtype=object)
        values[:] = data
        return values


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Maps every digit to "1" and any other byte to "0", to find runs of digits in one C pass.
_DIGIT_RUNS = bytes(0x31 if 0x30 <= i <= 0x39 else 0x30 for i in range(256))
# orjson reads integers outside the 64-bit range as floats where json gives the exact int;
# such a literal has at least 19 digits (-2**63 - 1 has 19, 2**64 has 20).
_LONG_NUMBER = b"1" * 19


def _parse_json(body: bytes) -> Any:
    r"""The request document, as :func:`json.loads` reads it.

    orjson parses 3-4x faster. Whatever it refuses (NaN literals, a lone surrogate such as
    ``"\ud800"``, a BOM or UTF-16, nesting past 1,024 levels, invalid JSON) and every
    body with a possibly out-of-range integer goes to :func:`json.loads`, which decides
    and words the error, so the result and the messages are those of the standard parser.
    """
    if body.translate(_DIGIT_RUNS).find(_LONG_NUMBER) < 0:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard parser reads it or names the problem
    try:
        # NaN literals decode to float('nan') and count as missing values.
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None


def _flatten(where: str, data: Any, shape: list[int]) -> tuple[list[Any], set[type]]:
    """The values of an input as a flat list, and their types; shape must be [n] or [n, 1]."""
    if not isinstance(data, list):
        raise RequestError(400, f"{where}.data: must be a list")
    if len(shape) == 2:
        if shape[1] != 1:
            raise RequestError(
                400, f"{where}.shape: {shape} has more than one column; send one input per column"
            )
        # Row-major data may be flat or nested one level ([[v], [v], ...]).
        if data and isinstance(data[0], list):
            if not all(isinstance(row, list) and len(row) == 1 for row in data):
                raise RequestError(400, f"{where}.data: nested rows must each hold exactly one value")
            data = [row[0] for row in data]
    if len(data) != shape[0]:
        raise RequestError(400, f"{where}: shape {shape} says {shape[0]} value(s) but data has {len(data)}")
    # One pass for the types (C speed), then a check per distinct type, not per value.
    types = set(map(type, data))
    if any(issubclass(kind, (list, dict)) for kind in types):
        raise RequestError(400, f"{where}.data: values must be scalars")
    return data, types


def _flatten_binary(
    where: str, values: list[Any] | np.ndarray, shape: list[int], fast_path_rows: int
) -> tuple[list[Any] | np.ndarray, set[type]]:
    """The values of a binary tensor (:func:`read_tensor`), checked as :func:`_flatten` checks JSON data.

    A fixed-width tensor stays an array (numpy converts it without a Python object per
    value), with the Python type its values would have as a list; a few values become
    that list, for the plain-Python fast path.
    """
    if isinstance(values, list) or len(values) <= fast_path_rows:
        return _flatten(where, values if isinstance(values, list) else values.tolist(), shape)
    if len(shape) == 2 and shape[1] != 1:
        raise RequestError(400, f"{where}.shape: {shape} has more than one column; send one input per column")
    if len(values) != shape[0]:
        raise RequestError(400, f"{where}: shape {shape} says {shape[0]} value(s) but data has {len(values)}")
    return values, {_PLAIN_TYPE[values.dtype.kind]}


def _shape(where: str, shape: Any) -> list[int]:
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int for d in shape)
        or any(d < 0 for d in shape)
    ):
        raise RequestError(400, f"{where}.shape: must be a non-empty list of non-negative integers")
    if len(shape) > 2:
        raise RequestError(400, f"{where}.shape: {shape} must be [n] or [n, 1]")
    return shape


class RequestDecoder:
    """Validates infer requests for one model; built once per loaded model.

    Args:
        spec: The model's serving spec (inputs in order, with contract rules).
        limits: Row and body size limits.
        output_names: The outputs this model returns, for the request's optional ``outputs``.
    """

    def __init__(self, spec: ServingSpec, limits: Limits, output_names: list[str]) -> None:
        self.limits = limits
        self.columns = {inp.name: _Column(inp.name, inp.rules, limits.fast_path_rows) for inp in spec.inputs}
        self.order = [inp.name for inp in spec.inputs]
        self.output_names = output_names

    def decode(self, body: bytes, header_length: str | None = None) -> DecodedRequest:
        """Decode and validate a request body.

        Args:
            body: The request body.
            header_length: The ``Inference-Header-Content-Length`` header, when the body
                carries binary tensor data after its JSON (:mod:`tabpipe.serving.binary`).

        Raises:
            RequestError: naming the field at fault.
        """
        if len(body) > self.limits.max_body_bytes:
            raise RequestError(413, f"request body exceeds {self.limits.max_body_bytes} bytes")
        binary: memoryview | None = None
        if header_length is not None:
            body, binary = split_body(body, header_length)
        return self.decode_request(_parse_json(body), binary)

    def decode_request(self, request: Any, binary: memoryview | None = None) -> DecodedRequest:
        """Validate a parsed request (the JSON document, or what the gRPC endpoint built from its message).

        Args:
            request: The request object.
            binary: The binary tensor data its inputs' ``binary_data_size`` parameters refer to.

        Raises:
            RequestError: naming the field at fault.
        """
        try:
            return self._decode_request(request, binary)
        except RequestError as exc:
            error = exc
        # The error leaves without a traceback or chained error: their frames would hold the parsed
        # body (Python objects several times its size, 200 MB for a 30 MB body), and asyncio's
        # futures put tracebacks in reference cycles that only a full collection frees, long after
        # the answer. (Every error raised inside an except block here is "from None": nothing shown.)
        del request, binary
        error.__context__ = error.__cause__ = None
        raise error.with_traceback(None)

    def _decode_request(self, request: Any, binary: memoryview | None) -> DecodedRequest:
        if not isinstance(request, dict):
            raise RequestError(400, "request body must be a JSON object")
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise RequestError(400, "id: must be a string")
        all_binary = self._check_parameters(request.get("parameters"))
        outputs, binary_outputs = self._requested_outputs(request.get("outputs"), all_binary)
        inputs = request.get("inputs")
        if inputs is None:
            raise RequestError(400, "inputs: missing")
        if not isinstance(inputs, list):
            raise RequestError(400, "inputs: must be a list of tensors")
        if not inputs:
            raise RequestError(400, "inputs: must not be empty")

        raw: dict[str, tuple[str, list[Any] | np.ndarray, set[type]]] = {}
        n_rows: int | None = None
        offset = 0
        for i, tensor in enumerate(inputs):
            if not isinstance(tensor, dict):
                raise RequestError(400, f"inputs[{i}]: must be an object with name, shape, datatype, data")
            name = tensor.get("name")
            if not isinstance(name, str):
                raise RequestError(400, f"inputs[{i}].name: missing or not a string")
            where = f"inputs[{name!r}]"
            if name not in self.columns:
                raise RequestError(422, f"{where}: unknown input; the model takes {self.order}")
            if name in raw:
                raise RequestError(400, f"{where}: given more than once")
            datatype = tensor.get("datatype")
            if not isinstance(datatype, str) or datatype not in KNOWN_DATATYPES:
                raise RequestError(
                    400, f"{where}.datatype: {datatype!r} is not an Open Inference Protocol datatype"
                )
            if "shape" not in tensor:
                raise RequestError(400, f"{where}.shape: missing")
            shape = _shape(where, tensor["shape"])
            if shape[0] > self.limits.max_rows:
                raise RequestError(
                    413, f"{where}: {shape[0]} rows exceed the limit of {self.limits.max_rows}"
                )
            if "data" in tensor:
                if binary is not None and binary_size(where, tensor) is not None:
                    raise RequestError(400, f"{where}: has both data and parameters.binary_data_size")
                data, types = _flatten(where, tensor["data"], shape)
            else:
                size = binary_size(where, tensor)
                if size is None:
                    raise RequestError(400, f"{where}.data: missing")
                if binary is None:
                    raise RequestError(
                        400,
                        f"{where}.parameters.binary_data_size: binary data needs the "
                        "Inference-Header-Content-Length header",
                    )
                count = shape[0] * (shape[1] if len(shape) == 2 else 1)
                values, offset = read_tensor(where, datatype, count, size, binary, offset)
                data, types = _flatten_binary(where, values, shape, self.limits.fast_path_rows)
            if n_rows is None:
                n_rows = len(data)
            elif len(data) != n_rows:
                raise RequestError(
                    400, f"{where}: has {len(data)} row(s) but earlier inputs have {n_rows}; all must match"
                )
            raw[name] = (datatype, data, types)

        if binary is not None and offset != len(binary):
            raise RequestError(
                400,
                f"binary data: {len(binary)} bytes after the JSON header, but the inputs' "
                f"binary_data_size add up to {offset}",
            )
        missing = [name for name in self.order if name not in raw]
        if missing:
            raise RequestError(422, f"inputs: missing column(s) {missing}")
        if not n_rows:
            raise RequestError(400, "inputs: no rows to predict")
        columns: dict[str, np.ndarray] = {}
        violations: list[Violation] = []
        for name in self.order:
            columns[name], broken = self.columns[name].convert(*raw[name])
            violations += broken
        rejected = errors(violations)
        if rejected:
            # Every broken row rule at once, worded as validation and batch scoring word it.
            broken = [v.message for v in rejected]
            raise RequestError(422, "; ".join(broken), violations=broken)
        return DecodedRequest(
            id=request_id,
            columns=columns,
            n_rows=n_rows,
            outputs=outputs,
            warnings=tuple(warnings_of(violations)),
            binary_outputs=binary_outputs,
        )

    @staticmethod
    def _check_parameters(parameters: Any) -> bool:
        """Check the request's parameters; return its ``binary_data_output`` (False when absent)."""
        if parameters is None:
            return False
        if not isinstance(parameters, dict):
            raise RequestError(400, "parameters: must be an object")
        content_type = parameters.get("content_type")
        # Other keys (tritonclient's binary_data_output, priorities, ...) do not change the answer.
        if content_type is not None and content_type != "pd":
            raise RequestError(
                400,
                f"parameters.content_type: {content_type!r} is not supported; "
                "send 'pd' (one input per column)",
            )
        return wants_binary(parameters.get("binary_data_output"), "parameters.binary_data_output")

    def _requested_outputs(self, outputs: Any, all_binary: bool) -> tuple[list[str] | None, frozenset[str]]:
        """The requested outputs (None: all) and those to answer in binary."""
        if outputs is None:
            return None, frozenset(self.output_names) if all_binary else frozenset()
        if not isinstance(outputs, list):
            raise RequestError(400, "outputs: must be a list")
        names: list[str] = []
        binary: set[str] = set()
        for i, output in enumerate(outputs):
            name = output.get("name") if isinstance(output, dict) else None
            if not isinstance(name, str):
                raise RequestError(400, f"outputs[{i}].name: missing or not a string")
            if name not in self.output_names:
                raise RequestError(
                    400, f"outputs[{i}].name: unknown output {name!r}; have {self.output_names}"
                )
            names.append(name)
            parameters = output.get("parameters")
            if parameters is None:
                wanted = all_binary
            elif not isinstance(parameters, dict):
                raise RequestError(400, f"outputs[{i}].parameters: must be an object")
            else:
                given = parameters.get("binary_data")
                wanted = (
                    all_binary
                    if given is None
                    else wants_binary(given, f"outputs[{i}].parameters.binary_data")
                )
            if wanted:
                binary.add(name)
        return names, frozenset(binary)
