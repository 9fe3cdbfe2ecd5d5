"""Every path that checks rows against a contract gives the same verdict and the same messages.

The same random rows go to: validation (a DataFrame, whole-table path), batch scoring
(one chunk), serving's vectorised decoder and serving's plain-Python fast path. The
row-rule messages of all four must be identical, including when there is none.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabpipe.contract import DataContract
from tabpipe.contract.frame import check_frame, row_messages
from tabpipe.contract.rules import ROW_RULES
from tabpipe.errors import DataValidationError
from tabpipe.serving.batch import check_chunk
from tabpipe.serving.validation import Limits, RequestDecoder, RequestError
from tabpipe.serving_spec import ServingInput, ServingSpec

CONTRACT = DataContract.model_validate(
    {
        "name": "agreement",
        "columns": {
            "code": {"dtype": "integer", "allowed": [-1, 0, 1]},
            "age": {"dtype": "integer", "nullable": True, "min": 0, "max": 120},
            "ratio": {"dtype": "float", "nullable": True, "min": -1.5, "max": 2.5},
            "score": {"dtype": "float"},
            "flag": {"dtype": "boolean", "nullable": True},
            "color": {"dtype": "string", "allowed": ["red", "blue"]},
            "note": {"dtype": "string", "nullable": True},
        },
    }
)
SPEC = ServingSpec(
    model_name="agreement",
    task="binary_classification",
    target="y",
    inputs=[ServingInput(name=name, rules=rules) for name, rules in CONTRACT.columns.items()],
    sha256="0" * 64,
)
VECTORISED = RequestDecoder(SPEC, Limits(fast_path_rows=0), ["predict"])
FAST_FIRST = RequestDecoder(SPEC, Limits(fast_path_rows=10**6), ["predict"])


def _mostly(valid: list[Any], edges: list[Any], *extra: Any) -> Any:
    """Values that are mostly valid, so a whole column often passes and the fast path decides.

    ``edges`` sit on and just past each rule's boundary, where two paths are most
    likely to disagree.
    """
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(edges), *extra)


_INF, _NAN = float("inf"), float("nan")
COLUMNS = {
    "code": _mostly([-1, 0, 1, 1.0], [2, -2, 0.5, None]),
    "age": _mostly([0, 30, 120, None, 120.0], [-1, 121, 120.5, 0.5, _INF, _NAN, -1e-9]),
    "ratio": _mostly(
        [-1.5, 0.0, 2.5, 1.25, None, _NAN],
        [-1.5000001, 2.5000001, 3, _INF, -_INF, 2.5 + 1e-15],
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    "score": _mostly([1.0, -1e6, 0, 3.5], [None, _NAN, _INF], st.floats(allow_nan=True)),
    "color": _mostly(["red", "blue"], ["Red", "green", "", " blue", None]),
    "note": _mostly([None, "x", ""], ["y"]),
}


@st.composite
def tables(draw: Any) -> dict[str, list[Any]]:
    """Columns of JSON-typed values, some breaking rules, some not."""
    n = draw(st.integers(1, 20))
    table = {name: draw(st.lists(values, min_size=n, max_size=n)) for name, values in COLUMNS.items()}
    # A boolean column arrives as JSON booleans or as 0/1 integers, never mixed (serving refuses that).
    flags = _mostly([True, False, None], [None]) if draw(st.booleans()) else _mostly([0, 1, None], [2, -1])
    table["flag"] = draw(st.lists(flags, min_size=n, max_size=n))
    return {name: table[name] for name in CONTRACT.columns}


def _datatype(values: list[Any], kind: str) -> str:
    if kind == "string":
        return "BYTES"
    if kind == "boolean" and any(isinstance(v, bool) for v in values):
        return "BOOL"
    return "FP64" if any(isinstance(v, float) for v in values) else "INT64"


def _serving_messages(decoder: RequestDecoder, table: dict[str, list[Any]]) -> list[str]:
    inputs = [
        {
            "name": name,
            "shape": [len(values)],
            "datatype": _datatype(values, CONTRACT.columns[name].dtype.value),
            "data": values,
        }
        for name, values in table.items()
    ]
    body = json.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}}).encode()
    try:
        decoder.decode(body)
    except RequestError as exc:
        assert exc.status == 422, exc.message
        assert exc.message == "; ".join(exc.violations)
        return exc.violations
    return []


def _batch_messages(frame: pd.DataFrame) -> list[str]:
    try:
        check_chunk(frame, SPEC, first_row=0)
    except DataValidationError as exc:
        return exc.violations
    return []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_validation_batch_and_both_serving_paths_agree(table: dict[str, list[Any]]) -> None:
    frame = pd.DataFrame(table)
    validation = row_messages(check_frame(frame, CONTRACT))
    batch = _batch_messages(frame)
    vectorised = _serving_messages(VECTORISED, table)
    fast = _serving_messages(FAST_FIRST, table)
    assert validation == batch == vectorised == fast


def test_every_rule_in_the_table_is_exercised_by_the_agreement_contract() -> None:
    """A rule added to the table without a column here would escape the agreement test."""
    applied = {rule.name for rule in ROW_RULES for col in CONTRACT.columns.values() if rule.applies(col)}
    untested = {rule.name for rule in ROW_RULES} - applied - {"date"}  # dates are never model inputs
    assert not untested, f"add a column using {sorted(untested)} to CONTRACT"


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("code", [7, 1], "column 'code': 1 value(s) not in allowed set [-1, 0, 1] (e.g. 7)"),
        ("age", [-2, 500, 3], "column 'age': 1 value(s) below min 0 (e.g. -2)"),
        ("ratio", [float("inf"), 1.0], "column 'ratio': 1 infinite value(s) (e.g. inf)"),
        ("code", [0.5, 1], "column 'code': 1 non-integer value(s) (e.g. 0.5)"),
        ("score", [None, 1.0], "column 'score': 1 null value(s) but nullable is false"),
        ("flag", [2, 1], "column 'flag': 1 value(s) other than true/false/0/1 (e.g. 2)"),
    ],
)
def test_each_rule_fires_with_its_message_on_every_path(column: str, values: list[Any], message: str) -> None:
    good = {"code": 1, "age": 30, "ratio": 0.5, "score": 1.0, "flag": True, "color": "red", "note": None}
    table = {name: [good[name]] * len(values) for name in CONTRACT.columns}
    table[column] = values
    frame = pd.DataFrame(table)
    validation = row_messages(check_frame(frame, CONTRACT))
    assert message in validation
    assert _batch_messages(frame) == validation
    assert _serving_messages(VECTORISED, table) == validation
    assert _serving_messages(FAST_FIRST, table) == validation
