"""The vectorised batch paths decide, decode and count exactly as the per-value reference.

Large requests are decoded column at a time with numpy (one type pass per column, numpy
conversion, the rule table evaluated on whole arrays), parsed by orjson, and counted in
the metrics per distinct value. The reference here is the per-value implementation they
replaced, kept verbatim: the standard ``json`` parser, an ``isinstance`` per value, a
conversion per value, one index and copy per rule, ``np.isin`` for allowed sets, and one
metric increment per row. On hypothesis-generated batches (boundary values, NaN, None,
infinities, strings and bools in numeric columns, big ints, lone surrogates, nested rows)
both must give the same status and message, or the same decoded arrays (bit for bit) and
the same warnings.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabpipe.contract import ColumnContract, ColumnType, DataContract
from tabpipe.contract import rules as rules_module
from tabpipe.contract.rules import (
    BOOLEAN_TOKENS,
    NULLABLE_RULE,
    RuleScope,
    Severity,
    ValueKind,
    Violation,
    applicable_rules,
    boolean_token,
    check_values,
    errors,
    missing_mask,
    normalize_values,
    value_kind,
    warnings_of,
)
from tabpipe.serving import validation
from tabpipe.serving.binary import FIXED_DTYPES
from tabpipe.serving.metrics import ModelMetrics, ServingMetrics
from tabpipe.serving.validation import KNOWN_DATATYPES, Limits, RequestDecoder, RequestError
from tabpipe.serving_spec import ServingInput, ServingSpec

CONTRACT = DataContract.model_validate(
    {
        "name": "equivalence",
        "columns": {
            "code": {"dtype": "integer", "allowed": [-1, 0, 1]},
            "age": {
                "dtype": "integer",
                "nullable": True,
                "min": 0,
                "max": 120,
                "soft_min": 5,
                "soft_max": 90,
            },
            "ratio": {"dtype": "float", "nullable": True, "min": -1.5, "max": 2.5},
            "score": {"dtype": "float"},
            "flag": {"dtype": "boolean", "nullable": True},
            # More allowed values than the comparison shortcut takes: np.isin decides.
            "digit": {"dtype": "integer", "nullable": True, "allowed": list(range(10))},
            "color": {"dtype": "string", "allowed": ["red", "blue"]},
            "shade": {"dtype": "string", "normalize": ["strip", "casefold"], "allowed": ["light", "dark"]},
            "note": {"dtype": "string", "nullable": True},
            "when": {"dtype": "datetime", "nullable": True},
        },
    }
)
SPEC = ServingSpec(
    model_name="equivalence",
    task="binary_classification",
    target="y",
    inputs=[ServingInput(name=name, rules=rules) for name, rules in CONTRACT.columns.items()],
    classes=[0, 1],
    sha256="0" * 64,
)
NATURAL = {"integer": "INT64", "float": "FP64", "boolean": "BOOL", "string": "BYTES", "datetime": "BYTES"}
#: The vectorised path for every size, and the server's default (plain Python up to 16 rows).
DECODERS = {
    "vectorised": RequestDecoder(SPEC, Limits(fast_path_rows=0), ["predict"]),
    "default": RequestDecoder(SPEC, Limits(), ["predict"]),
}


# --------------------------------------------------------------------------- the reference


def _reference_find_allowed(col: ColumnContract, values: np.ndarray) -> np.ndarray:
    if col.dtype is ColumnType.DATETIME:
        return rules_module._find_allowed(col, values)
    if values.dtype.kind == "f":
        allowed = np.asarray([float(v) for v in col.allowed or []], dtype=np.float64)
        return ~np.isin(values, allowed)
    members = rules_module._members(col)
    outside = {v for v in set(values.tolist()) if v not in members}
    return np.fromiter((v in outside for v in values), dtype=bool, count=len(values))


def reference_check_values(name: str, col: ColumnContract, values: np.ndarray) -> list[Violation]:
    """check_values as it was: one index and copy of the remaining values per rule."""
    violations: list[Violation] = []
    missing = missing_mask(values)
    if not col.nullable and missing.any():
        n_null = int(missing.sum())
        violations.append(
            rules_module._violation(name, NULLABLE_RULE, n_null, "null value(s) but nullable is false", None)
        )
    ok = ~missing
    if not ok.any():
        return violations
    hard_ok = ok.copy()
    for rule in applicable_rules(col):
        if rule.soft:
            positions = np.flatnonzero(hard_ok)
            if not len(positions):
                continue
        else:
            positions = np.flatnonzero(ok)
        find = _reference_find_allowed if rule.name == "allowed" else rule.find
        with np.errstate(invalid="ignore"):
            bad = np.asarray(find(col, values[positions]), dtype=bool)
        if bad.any():
            offending = values[positions[bad]] if rule.quote else None
            severity = Severity.WARNING if rule.soft else Severity.ERROR
            violations.append(
                rules_module._violation(
                    name, rule.name, int(bad.sum()), rule.describe(col), offending, severity
                )
            )
            if rule.shape:
                ok[positions[bad]] = False
            if not rule.soft:
                hard_ok[positions[bad]] = False
    return violations


_NONE = type(None)


class ReferenceColumn:
    """The per-value decoding of one column, as it was before the vectorised batch path."""

    def __init__(self, name: str, rules: ColumnContract) -> None:
        self.name = name
        self.rules = rules
        self.accepted = validation._ACCEPTED[rules.dtype]
        self.is_numeric = value_kind(rules.dtype) is ValueKind.NUMBER

    def convert(self, datatype: str, data: list[Any]) -> tuple[np.ndarray, list[Violation]]:
        where = f"inputs[{self.name!r}]"
        if datatype not in self.accepted:
            raise RequestError(
                422,
                f"{where}: datatype {datatype} does not fit the contract dtype {self.rules.dtype.value} "
                f"(accepted: {', '.join(sorted(self.accepted))})",
            )
        if self.is_numeric and datatype == "BYTES":
            values = self._boolean_tokens(where, data)
        elif self.is_numeric:
            values = self._numeric(where, datatype, data)
        else:
            values = normalize_values(self.rules, self._strings(where, data))
        return values, reference_check_values(self.name, self.rules, values)

    def _boolean_tokens(self, where: str, data: list[Any]) -> np.ndarray:
        strings = self._strings(where, data)
        mapped = [None if v is None else boolean_token(v) for v in strings]
        bad = [v for v, m in zip(data, mapped, strict=True) if v is not None and m is None]
        if bad:
            raise RequestError(
                422,
                f"{where}: datatype BYTES for a boolean column needs one of "
                f"{', '.join(sorted(BOOLEAN_TOKENS))} (any case), got {validation._examples(bad)}",
            )
        return np.array([math.nan if m is None else m for m in mapped], dtype=np.float64)

    def _numeric(self, where: str, datatype: str, data: list[Any]) -> np.ndarray:
        bool_types, number_types = {bool, _NONE}, {int, float, _NONE}
        if datatype == "BOOL":
            bad = [v for v in data if type(v) not in bool_types]
            if bad:
                raise RequestError(
                    422, f"{where}: datatype BOOL needs true/false values, got {validation._examples(bad)}"
                )
        else:
            bad = [v for v in data if type(v) not in number_types]
            if bad:
                raise RequestError(
                    422,
                    f"{where}: datatype {datatype} needs numbers, got "
                    f"{validation._type_name(bad[0])} ({validation._examples(bad)})",
                )
        try:
            values = np.array([math.nan if v is None else v for v in data], dtype=np.float64)
        except OverflowError:
            raise RequestError(422, f"{where}: a value is too large for a 64-bit float") from None
        finite = values[np.isfinite(values)]
        if datatype in validation._INT_RANGES and finite.size:
            if not (finite == np.floor(finite)).all():
                raise RequestError(
                    422,
                    f"{where}: datatype {datatype} needs whole numbers, got "
                    f"{validation._examples(finite.tolist())}",
                )
            low, high = validation._INT_RANGES[datatype]
            if finite.min() < low or finite.max() > high:
                raise RequestError(422, f"{where}: values outside the range of {datatype}")
        return values

    def _strings(self, where: str, data: list[Any]) -> np.ndarray:
        bad = [v for v in data if type(v) not in (str, _NONE)]
        if bad:
            raise RequestError(
                422,
                f"{where}: datatype BYTES needs strings, got "
                f"{validation._type_name(bad[0])} ({validation._examples(bad)})",
            )
        for i, value in enumerate(data):
            if value is not None and not value.isascii() and not validation._is_utf8(value):
                raise RequestError(
                    400, f"{where}.data[{i}]: not valid Unicode text (a lone surrogate such as \\ud800)"
                )
        values = np.empty(len(data), dtype=object)
        values[:] = data
        return values


def reference_flatten(where: str, data: Any, shape: list[int]) -> list[Any]:
    if not isinstance(data, list):
        raise RequestError(400, f"{where}.data: must be a list")
    if len(shape) == 2:
        if shape[1] != 1:
            raise RequestError(
                400, f"{where}.shape: {shape} has more than one column; send one input per column"
            )
        if data and isinstance(data[0], list):
            if not all(isinstance(row, list) and len(row) == 1 for row in data):
                raise RequestError(400, f"{where}.data: nested rows must each hold exactly one value")
            data = [row[0] for row in data]
    if len(data) != shape[0]:
        raise RequestError(400, f"{where}: shape {shape} says {shape[0]} value(s) but data has {len(data)}")
    if any(isinstance(v, (list, dict)) for v in data):
        raise RequestError(400, f"{where}.data: values must be scalars")
    return data


REFERENCE_COLUMNS = {inp.name: ReferenceColumn(inp.name, inp.rules) for inp in SPEC.inputs}


def reference_decode(body: bytes) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode one of the well-formed requests generated here, value by value (json.loads)."""
    try:
        request = json.loads(body)
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None
    raw = {}
    for tensor in request["inputs"]:
        where = f"inputs[{tensor['name']!r}]"
        raw[tensor["name"]] = (tensor["datatype"], reference_flatten(where, tensor["data"], tensor["shape"]))
    columns: dict[str, np.ndarray] = {}
    violations: list[Violation] = []
    for name, column in REFERENCE_COLUMNS.items():
        columns[name], broken = column.convert(*raw[name])
        violations += broken
    rejected = [v.message for v in errors(violations)]
    if rejected:
        raise RequestError(422, "; ".join(rejected), violations=rejected)
    return columns, [w.message for w in warnings_of(violations)]


def _exactly(values: np.ndarray) -> tuple[str, list[str]]:
    """An array compared bit for bit: dtype, and each value's repr (NaN is NaN, -0.0 is not 0.0)."""
    return values.dtype.str, [repr(v) for v in values.tolist()]


def _outcome(decode: Any) -> tuple[Any, ...]:
    try:
        columns, warnings = decode()
    except RequestError as exc:
        return ("rejected", exc.status, exc.message, tuple(exc.violations))
    return ("accepted", {name: _exactly(values) for name, values in columns.items()}, tuple(warnings))


def _decoded(decoder: RequestDecoder, body: bytes, header: str | None = None) -> Any:
    def run() -> tuple[dict[str, np.ndarray], list[str]]:
        decoded = decoder.decode(body, header)
        return decoded.columns, [w.message for w in decoded.warnings]

    return run


# --------------------------------------------------------------------------- generated requests

_BOUNDARIES = [0, 1, -1, 2, -2, 5, 4, 90, 91, 120, 121, 9, 10, 127, 128, -128, -129, 255, 256, 2**15, 2**16]
_BIG = [2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, 10**400]
_FLOATS = [0.0, -0.0, 0.5, 1.0, -1.5, 2.5, -1.5000001, 2.5000001, 1e-9, 4.5, 90.5, 1e308, 5e-324]
_SPECIAL = [math.nan, math.inf, -math.inf]
_TEXT = ["red", "blue", "Red ", " LIGHT", "dark", "grey", "", "yes", "No", " t ", "x", "2024-01-01", "é"]
_ODD = [True, False, "1", "\ud800", "a\udfffb", [1], {"a": 1}, [[1]]]

numbers = st.one_of(
    st.sampled_from(_BOUNDARIES), st.integers(-3, 3), st.sampled_from(_FLOATS), st.sampled_from(_BIG)
)
special = st.sampled_from(_SPECIAL)
#: How one column's values are drawn: mostly clean (so whole batches pass), or mixed with anything.
column_kinds = {
    "ints": st.one_of(st.integers(-1, 1), st.integers(-1, 1), st.sampled_from(_BOUNDARIES)),
    "numbers": numbers,
    "numbers and nulls": st.one_of(numbers, st.none()),
    "floats": st.one_of(st.floats(allow_nan=True, allow_infinity=True), special, st.sampled_from(_FLOATS)),
    "bools": st.one_of(st.booleans(), st.none()),
    "text": st.one_of(st.sampled_from(_TEXT), st.none()),
    "anything": st.one_of(numbers, special, st.none(), st.sampled_from(_TEXT), st.sampled_from(_ODD)),
}
_GOOD = {
    "integer": ("ints", "numbers", "numbers and nulls"),
    "float": ("floats", "numbers", "numbers and nulls"),
    "boolean": ("bools", "ints", "text"),
    "string": ("text",),
    "datetime": ("text",),
}


@st.composite
def requests(draw: Any, min_rows: int = 1, max_rows: int = 40) -> bytes:
    """A well-formed OIP request: every column, one row count; datatypes and values vary."""
    n = draw(st.integers(min_rows, max_rows))
    inputs = []
    for inp in SPEC.inputs:
        dtype = inp.rules.dtype.value
        kind = draw(st.sampled_from([*_GOOD[dtype], *_GOOD[dtype], "anything"]))
        data = draw(st.lists(column_kinds[kind], min_size=n, max_size=n))
        natural = NATURAL[dtype]
        if dtype == "boolean" and kind == "text":
            natural = "BYTES"
        elif dtype == "boolean" and kind == "ints":
            natural = "INT64"
        datatype = draw(
            st.one_of(st.just(natural), st.just(natural), st.sampled_from(sorted(KNOWN_DATATYPES)))
        )
        shape = [n]
        if draw(st.integers(0, 5)) == 0:  # [n, 1], flat or nested one level
            shape = [n, 1]
            if draw(st.booleans()):
                data = [[v] for v in data]
        inputs.append({"name": inp.name, "shape": shape, "datatype": datatype, "data": data})
    return json.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}}).encode()


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_json_requests_decode_as_the_per_value_reference(body: bytes) -> None:
    expected = _outcome(lambda: reference_decode(body))
    for decoder in DECODERS.values():
        assert _outcome(_decoded(decoder, body)) == expected


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(requests(min_rows=200, max_rows=600))
def test_large_json_requests_decode_as_the_per_value_reference(body: bytes) -> None:
    assert _outcome(_decoded(DECODERS["default"], body)) == _outcome(lambda: reference_decode(body))


def test_a_clean_large_batch_is_accepted_with_the_same_arrays() -> None:
    """The common case, not left to chance: every column clean, a thousand rows."""
    rng = np.random.default_rng(7)
    n = 1000
    table = {
        "code": rng.integers(-1, 2, n).tolist(),
        "age": [None if i % 7 == 0 else int(v) for i, v in enumerate(rng.integers(0, 121, n))],
        "ratio": rng.uniform(-1.5, 2.5, n).tolist(),
        "score": rng.normal(size=n).tolist(),
        "flag": [bool(v) for v in rng.integers(0, 2, n)],
        "digit": rng.integers(0, 10, n).tolist(),
        "color": rng.choice(["red", "blue"], n).tolist(),
        "shade": rng.choice(["Light ", "DARK", "dark"], n).tolist(),
        "note": [None if i % 3 else "x" for i in range(n)],
        "when": ["2024-01-02"] * n,
    }
    inputs = [
        {"name": name, "shape": [n], "datatype": NATURAL[CONTRACT.columns[name].dtype.value], "data": data}
        for name, data in table.items()
    ]
    body = json.dumps({"inputs": inputs}).encode()
    expected = _outcome(lambda: reference_decode(body))
    assert expected[0] == "accepted" and expected[2], "soft bounds of age should warn"
    assert _outcome(_decoded(DECODERS["default"], body)) == expected


# --------------------------------------------------------------------------- binary tensors

NUMERIC_SPEC = ServingSpec(
    model_name="binary-equivalence",
    task="binary_classification",
    target="y",
    inputs=[
        ServingInput(name=name, rules=CONTRACT.columns[name])
        for name in ("code", "age", "ratio", "score", "flag", "digit")
    ],
    classes=[0, 1],
    sha256="0" * 64,
)
BINARY_DECODERS = [
    RequestDecoder(NUMERIC_SPEC, Limits(fast_path_rows=0), ["predict"]),
    RequestDecoder(NUMERIC_SPEC, Limits(), ["predict"]),
]


def _dtype_values(datatype: str) -> st.SearchStrategy[Any]:
    if datatype == "BOOL":
        return st.booleans()
    dtype = FIXED_DTYPES[datatype]
    if dtype.kind == "f":
        width = {2: 16, 4: 32, 8: 64}[dtype.itemsize]
        edges = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 120.0, 121.0, math.nan, math.inf, -math.inf])
        return st.one_of(edges, edges, st.floats(width=width, allow_nan=True, allow_infinity=True))
    info = np.iinfo(dtype)
    edges = st.sampled_from(
        [v for v in (-1, 0, 1, 2, 5, 90, 91, 120, 121, info.min, info.max) if info.min <= v <= info.max]
    )
    return st.one_of(edges, edges, st.integers(int(info.min), int(info.max)))


@st.composite
def binary_requests(draw: Any) -> tuple[bytes, str, bytes]:
    """The same tensors as a binary request and as its JSON twin (the values' tolist())."""
    n = draw(st.integers(1, 60))
    json_inputs, binary_inputs, chunks = [], [], []
    for inp in NUMERIC_SPEC.inputs:
        datatype = draw(st.sampled_from(sorted(FIXED_DTYPES)))
        values = np.asarray(
            draw(st.lists(_dtype_values(datatype), min_size=n, max_size=n)),
            dtype=bool if datatype == "BOOL" else FIXED_DTYPES[datatype],
        )
        data = values.astype("u1" if datatype == "BOOL" else FIXED_DTYPES[datatype]).tobytes()
        chunks.append(data)
        binary_inputs.append(
            {
                "name": inp.name,
                "shape": [n],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        )
        json_inputs.append({"name": inp.name, "shape": [n], "datatype": datatype, "data": values.tolist()})
    header = json.dumps({"inputs": binary_inputs}).encode()
    return header + b"".join(chunks), str(len(header)), json.dumps({"inputs": json_inputs}).encode()


def reference_numeric_decode(body: bytes) -> tuple[dict[str, np.ndarray], list[str]]:
    """The reference decoding of NUMERIC_SPEC's requests."""
    request = json.loads(body)
    raw = {
        t["name"]: (t["datatype"], reference_flatten(f"inputs[{t['name']!r}]", t["data"], t["shape"]))
        for t in request["inputs"]
    }
    columns: dict[str, np.ndarray] = {}
    violations: list[Violation] = []
    for inp in NUMERIC_SPEC.inputs:
        columns[inp.name], broken = REFERENCE_COLUMNS[inp.name].convert(*raw[inp.name])
        violations += broken
    rejected = [v.message for v in errors(violations)]
    if rejected:
        raise RequestError(422, "; ".join(rejected), violations=rejected)
    return columns, [w.message for w in warnings_of(violations)]


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(binary_requests())
def test_binary_tensors_decode_as_their_values_sent_as_json_lists(case: tuple[bytes, str, bytes]) -> None:
    """Before, a binary tensor became a Python list and took the JSON path; now it stays an array."""
    body, header, twin = case
    expected = _outcome(lambda: reference_numeric_decode(twin))
    for decoder in BINARY_DECODERS:
        assert _outcome(_decoded(decoder, body, header)) == expected


# --------------------------------------------------------------------------- the rule table


def _messages(violations: list[Violation]) -> list[tuple[str, str, int, str, str]]:
    return [(v.column or "", v.rule, v.count, v.message, v.severity.value) for v in violations]


float_arrays = st.lists(
    st.one_of(
        st.sampled_from(_BOUNDARIES + _FLOATS + _SPECIAL), st.floats(allow_nan=True, allow_infinity=True)
    ),
    max_size=80,
).map(lambda values: np.asarray(values, dtype=np.float64))
text_arrays = st.lists(st.one_of(st.sampled_from(_TEXT), st.none()), max_size=80).map(
    lambda values: np.array(values + [object()], dtype=object)[:-1]
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(CONTRACT.columns)), st.data())
def test_check_values_finds_what_the_per_rule_copies_found(name: str, data: Any) -> None:
    col = CONTRACT.columns[name]
    values = data.draw(float_arrays if value_kind(col.dtype) is ValueKind.NUMBER else text_arrays)
    expected = _messages(reference_check_values(name, col, values))
    assert _messages(check_values(name, col, values)) == expected
    assert _messages(check_values(name, col, values, applicable_rules(col))) == expected


@pytest.mark.parametrize("allowed", [[0], [-1, 0, 1], list(range(8)), list(range(9)), [0.5, 2, -3]])
def test_allowed_numbers_match_np_isin(allowed: list[Any]) -> None:
    col = ColumnContract(dtype="float", allowed=allowed)
    values = np.array([-0.0, 0.0, 0.5, 1.0, -1.0, 2.0, -3.0, 8.0, 9.0, math.nan, math.inf, 1e-300])
    np.testing.assert_array_equal(
        rules_module._find_allowed(col, values), ~np.isin(values, np.asarray(allowed, dtype=np.float64))
    )


# --------------------------------------------------------------------------- the JSON parser


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (1 is not 1.0), NaN equal to NaN, -0.0 not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a == b


def _parsed(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", validation._parse_json(body)
    except RequestError as exc:
        return "error", (exc.status, exc.message)


def _reference_parsed(body: bytes) -> tuple[str, Any]:
    try:
        return "ok", json.loads(body)
    except RecursionError:
        return "error", (400, "request body is nested too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        return "error", (400, f"request body is not valid JSON: {exc}")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(_BIG + [-(10**19), 10**19 - 1, 10**18, -(10**18)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.sampled_from(["\ud800", "\udc00x", "é", "\x00", "\u2028"]),
)
json_documents = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(json_documents, st.booleans())
def test_orjson_first_reads_what_json_reads(document: Any, ascii_only: bool) -> None:
    """Big ints stay exact ints, NaN and Infinity still parse, lone surrogates survive to be refused."""
    try:
        body = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written raw is not UTF-8: send the bytes json would
        body = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    status, parsed = _parsed(body)
    ref_status, expected = _reference_parsed(body)
    assert status == ref_status
    assert _same(parsed, expected) if status == "ok" else parsed == expected


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.binary(max_size=60) | st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_orjson_first_refuses_what_json_refuses(body: bytes) -> None:
    status, parsed = _parsed(body)
    ref_status, expected = _reference_parsed(body)
    assert status == ref_status
    assert _same(parsed, expected) if status == "ok" else parsed == expected


@pytest.mark.parametrize(
    "body",
    [
        b"[NaN, Infinity, -Infinity]",
        b"[18446744073709551616, -9223372036854775809, 9223372036854775808]",
        b"[1e400, -1e400, 5e-324, 1.7976931348623157e308]",
        b'"\\ud800"',
        b'{"a": 1, "a": 2}',
        b"\xef\xbb\xbf[1]",
        "[1]".encode("utf-16"),
        b"[" * 1100 + b"]" * 1100,
        b"[" * 100_000 + b"]" * 100_000,
        b'"\xff"',
        b"[1,]",
        b"",
    ],
)
def test_orjson_first_on_the_edges(body: bytes) -> None:
    status, parsed = _parsed(body)
    ref_status, expected = _reference_parsed(body)
    assert status == ref_status
    assert _same(parsed, expected) if status == "ok" else parsed == expected


GOOD_ROW = {
    "code": 1,
    "age": 30,
    "ratio": 0.5,
    "score": 1.0,
    "flag": True,
    "digit": 3,
    "color": "red",
    "shade": "dark",
    "note": None,
    "when": None,
}


@pytest.mark.parametrize(
    ("column", "datatype", "value", "status"),
    [
        ("note", "BYTES", "\ud800", 400),
        ("code", "INT64", 2**64, 422),
        ("code", "INT64", -(2**63) - 1, 422),
        ("code", "BOOL", 2**70, 422),
        ("color", "BYTES", 10**20, 422),
        ("score", "FP64", 10**400, 422),
        ("score", "FP64", math.nan, 422),
    ],
)
def test_lone_surrogates_big_ints_and_nan_answer_as_before(
    column: str, datatype: str, value: Any, status: int
) -> None:
    inputs = [
        {
            "name": name,
            "shape": [1],
            "datatype": datatype if name == column else NATURAL[CONTRACT.columns[name].dtype.value],
            "data": [value if name == column else good],
        }
        for name, good in GOOD_ROW.items()
    ]
    body = json.dumps({"inputs": inputs}).encode()
    expected = _outcome(lambda: reference_decode(body))
    assert expected[:2] == ("rejected", status)
    for decoder in DECODERS.values():
        assert _outcome(_decoded(decoder, body)) == expected


def test_a_shape_of_2_to_the_64_rows_is_too_many_not_malformed() -> None:
    """json reads 2**64 as an int (413, over the row limit); orjson would read a float (400)."""
    body = b'{"inputs": [{"name": "code", "shape": [18446744073709551616], "datatype": "INT64", "data": []}]}'
    with pytest.raises(RequestError) as excinfo:
        DECODERS["default"].decode(body)
    assert excinfo.value.status == 413


# --------------------------------------------------------------------------- metrics


def _samples(metrics: ServingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


METRICS_CONTRACT = DataContract.model_validate(
    {
        "name": "metrics",
        "columns": {
            "code": {"dtype": "integer", "allowed": [-1, 0, 1], "nullable": True},
            "level": {"dtype": "integer", "nullable": True},
            "ratio": {"dtype": "float", "nullable": True, "soft_max": 2.0},
            "flag": {"dtype": "boolean", "nullable": True},
            "color": {"dtype": "string", "nullable": True},
            "shade": {"dtype": "string", "allowed": ["light", "dark"], "nullable": True},
        },
    }
)


def _metrics_spec(task: str) -> ServingSpec:
    return ServingSpec(
        model_name="metrics",
        task=task,
        target="y",
        inputs=[ServingInput(name=n, rules=r) for n, r in METRICS_CONTRACT.columns.items()],
        classes=["a", "b", 3] if task != "regression" else [],
        sha256="0" * 64,
    )


@st.composite
def metric_batches(draw: Any) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    n = draw(st.integers(65, 200))  # above the value-by-value threshold
    floats = st.one_of(st.sampled_from([-1.0, 0.0, -0.0, 1.0, math.nan, 2.0, 0.5]), st.floats(-1e6, 1e6))
    # Many distinct strings: more than MAX_CATEGORY_LABELS, so the first-seen order decides labels.
    text = st.one_of(st.none(), st.sampled_from(["light", "dark", "x"]), st.text(max_size=3))

    def column(values: st.SearchStrategy[Any], dtype: Any) -> np.ndarray:
        drawn = draw(st.lists(values, min_size=n, max_size=n))
        if dtype is object:
            out = np.empty(n, dtype=object)
            out[:] = drawn
            return out
        return np.asarray(drawn, dtype=np.float64)

    columns = {
        "code": column(floats, float),
        "level": column(floats, float),
        "ratio": column(floats, float),
        "flag": column(st.sampled_from([0.0, 1.0, math.nan]), float),
        "color": column(text, object),
        "shade": column(text, object),
    }
    task = draw(st.sampled_from(["regression", "multiclass_classification"]))
    if task == "regression":
        pred = np.asarray(
            draw(
                st.lists(
                    st.one_of(st.integers(-(10**10), 10**10).map(float), st.just(math.nan)),
                    min_size=n,
                    max_size=n,
                )
            )
        )
    else:
        labels = draw(st.lists(st.sampled_from(["a", "b", 3, "unknown"]), min_size=n, max_size=n))
        pred = np.empty(n, dtype=object)
        pred[:] = labels
    return columns, pred, task


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(metric_batches())
def test_a_batch_counts_what_its_rows_count_one_by_one(case: Any) -> None:
    """Counts per label, per class, per bucket and per null are exact; sums agree to rounding."""
    columns, pred, task = case
    spec = _metrics_spec(task)
    whole, rows = ServingMetrics(), ServingMetrics()
    ModelMetrics(whole, spec, "1").observe(columns, pred, len(pred))
    one_by_one = ModelMetrics(rows, spec, "1")
    for i in range(len(pred)):
        one_by_one.observe({k: v[i : i + 1] for k, v in columns.items()}, pred[i : i + 1], 1)
    got, expected = _samples(whole), _samples(rows)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key[0].endswith("_sum") or key[0].startswith("tabpipe_serving_feature_sum"):
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-6, nan_ok=True), key
        else:
            assert got[key] == value, key


def test_rule_scope_of_the_reference_is_row() -> None:
    """The reference builds its violations with the rule table's own constructor."""
    (violation,) = reference_check_values("age", CONTRACT.columns["age"], np.array([130.0]))
    assert violation.scope is RuleScope.ROW and violation.rule == "max"
