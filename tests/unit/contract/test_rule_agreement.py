"""Every path that checks rows against a contract gives the same verdict and the same messages.

The same random rows go to: validation (a DataFrame, whole-table path), batch scoring
(one chunk), serving's vectorised decoder and serving's plain-Python fast path. The
row-rule messages of all four must be identical, including when there is none, and so
must the soft rules' warnings whenever the rows are accepted (a rejected request has no
warnings to report). Boolean tokens and normalised text map to the same canonical values
on every path.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabpipe.contract import DataContract
from tabpipe.contract.frame import canonical_values, check_frame, row_messages
from tabpipe.contract.rules import ROW_RULES, RuleScope
from tabpipe.errors import DataValidationError
from tabpipe.serving.batch import check_chunk
from tabpipe.serving.validation import Limits, RequestDecoder, RequestError
from tabpipe.serving_spec import ServingInput, ServingSpec

CONTRACT = DataContract.model_validate(
    {
        "name": "agreement",
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
            "color": {"dtype": "string", "allowed": ["red", "blue"]},
            "note": {"dtype": "string", "nullable": True},
            "shade": {"dtype": "string", "normalize": ["strip", "casefold"], "allowed": ["light", "dark"]},
            "when": {"dtype": "datetime", "nullable": True},
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
    "age": _mostly(
        [0, 30, 120, None, 120.0, 5, 90], [-1, 121, 120.5, 0.5, _INF, _NAN, -1e-9, 4, 91, 90.5, 4.5]
    ),
    "ratio": _mostly(
        [-1.5, 0.0, 2.5, 1.25, None, _NAN],
        [-1.5000001, 2.5000001, 3, _INF, -_INF, 2.5 + 1e-15],
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    "score": _mostly([1.0, -1e6, 0, 3.5], [None, _NAN, _INF], st.floats(allow_nan=True)),
    "color": _mostly(["red", "blue"], ["Red", "green", "", " blue", None]),
    "note": _mostly([None, "x", ""], ["y"]),
    "shade": _mostly(["light", "dark", "Light ", " DARK"], ["grey", "", " ", "li ght", None]),
    "when": _mostly(["2024-01-01", "2024-03-05 12:30", None], ["not a date", "2024-13-01", ""]),
}


@st.composite
def tables(draw: Any) -> dict[str, list[Any]]:
    """Columns of JSON-typed values, some breaking rules, some not."""
    n = draw(st.integers(1, 20))
    table = {name: draw(st.lists(values, min_size=n, max_size=n)) for name, values in COLUMNS.items()}
    # A boolean column arrives as JSON booleans, 0/1 integers or text tokens, never mixed (serving
    # refuses that).
    flags = draw(
        st.sampled_from(
            [
                _mostly([True, False, None], [None]),
                _mostly([0, 1, None], [2, -1]),
                _mostly(["yes", "no", None], ["Y", "n", "TRUE", "f", " t ", "False"]),
            ]
        )
    )
    table["flag"] = draw(st.lists(flags, min_size=n, max_size=n))
    return {name: table[name] for name in CONTRACT.columns}


def _datatype(values: list[Any], kind: str) -> str:
    if kind in ("string", "datetime") or any(isinstance(v, str) for v in values):
        return "BYTES"
    if kind == "boolean" and any(isinstance(v, bool) for v in values):
        return "BOOL"
    return "FP64" if any(isinstance(v, float) for v in values) else "INT64"


def _serving(decoder: RequestDecoder, table: dict[str, list[Any]]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one request; a rejected request has no warnings."""
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
        decoded = decoder.decode(body)
    except RequestError as exc:
        assert exc.status == 422, exc.message
        assert exc.message == "; ".join(exc.violations)
        return exc.violations, []
    return [], [w.message for w in decoded.warnings]


def _serving_messages(decoder: RequestDecoder, table: dict[str, list[Any]]) -> list[str]:
    return _serving(decoder, table)[0]


def _batch_messages(frame: pd.DataFrame) -> list[str]:
    try:
        check_chunk(frame, SPEC, first_row=0)
    except DataValidationError as exc:
        return exc.violations
    return []


def _row_warnings(frame: pd.DataFrame, contract: DataContract, scope: RuleScope) -> list[str]:
    return [
        v.message for v in check_frame(frame, contract, scope) if v.is_warning and v.scope is RuleScope.ROW
    ]


# The contract batch scoring checks a chunk against (tabpipe.serving.batch.check_chunk builds the same).
BATCH_CONTRACT = DataContract(
    name=SPEC.model_name, allow_extra_columns=True, columns={i.name: i.rules for i in SPEC.inputs}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_validation_batch_and_both_serving_paths_agree(table: dict[str, list[Any]]) -> None:
    frame = pd.DataFrame(table)
    validation = row_messages(check_frame(frame, CONTRACT))
    batch = _batch_messages(frame)  # fails on errors only, never on warnings
    vectorised, vectorised_warnings = _serving(VECTORISED, table)
    fast, fast_warnings = _serving(FAST_FIRST, table)
    assert validation == batch == vectorised == fast
    validation_warnings = _row_warnings(frame, CONTRACT, RuleScope.DATASET)
    assert validation_warnings == _row_warnings(frame, BATCH_CONTRACT, RuleScope.ROW)
    if not validation:
        assert validation_warnings == vectorised_warnings == fast_warnings


def test_every_rule_in_the_table_is_exercised_by_the_agreement_contract() -> None:
    """A rule added to the table without a column here would escape the agreement test."""
    applied = {rule.name for rule in ROW_RULES for col in CONTRACT.columns.values() if rule.applies(col)}
    untested = {rule.name for rule in ROW_RULES} - applied
    assert not untested, f"add a column using {sorted(untested)} to CONTRACT"
    assert {rule.name for rule in ROW_RULES if rule.soft} >= {"soft_min", "soft_max"}


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("code", [7, 1], "column 'code': 1 value(s) not in allowed set [-1, 0, 1] (e.g. 7)"),
        ("age", [-2, 500, 3], "column 'age': 1 value(s) below min 0 (e.g. -2)"),
        ("ratio", [float("inf"), 1.0], "column 'ratio': 1 infinite value(s) (e.g. inf)"),
        ("code", [0.5, 1], "column 'code': 1 non-integer value(s) (e.g. 0.5)"),
        ("score", [None, 1.0], "column 'score': 1 null value(s) but nullable is false"),
        ("flag", [2, 1], "column 'flag': 1 value(s) other than true/false/0/1 (e.g. 2)"),
        (
            "shade",
            ["Grey ", "dark"],
            "column 'shade': 1 value(s) not in allowed set ['light', 'dark'] (e.g. 'grey')",
        ),
        (
            "when",
            ["2024-01-01", "soon"],
            "column 'when': 1 value(s) that do not parse as dates (e.g. 'soon')",
        ),
    ],
)
def test_each_rule_fires_with_its_message_on_every_path(column: str, values: list[Any], message: str) -> None:
    good = {
        "code": 1,
        "age": 30,
        "ratio": 0.5,
        "score": 1.0,
        "flag": True,
        "color": "red",
        "note": None,
        "shade": "dark",
        "when": "2024-01-01",
    }
    table = {name: [good[name]] * len(values) for name in CONTRACT.columns}
    table[column] = values
    frame = pd.DataFrame(table)
    validation = row_messages(check_frame(frame, CONTRACT))
    assert message in validation
    assert _batch_messages(frame) == validation
    assert _serving_messages(VECTORISED, table) == validation
    assert _serving_messages(FAST_FIRST, table) == validation


GOOD_ROW = {
    "code": 1,
    "age": 30,
    "ratio": 0.5,
    "score": 1.0,
    "flag": True,
    "color": "red",
    "note": None,
    "shade": "dark",
    "when": "2024-01-01",
}


def _one_column(column: str, values: list[Any]) -> dict[str, list[Any]]:
    table = {name: [GOOD_ROW[name]] * len(values) for name in CONTRACT.columns}
    table[column] = values
    return table


def test_soft_bounds_warn_on_every_path_and_reject_on_none() -> None:
    table = _one_column("age", [95, 3, 91, 30, 121])
    frame = pd.DataFrame(table)
    found = check_frame(frame, CONTRACT)
    # 121 breaks the hard max: an error, and not also a soft warning.
    assert row_messages(found) == ["column 'age': 1 value(s) above max 120 (e.g. 121)"]
    assert _row_warnings(frame, CONTRACT, RuleScope.DATASET) == [
        "column 'age': 1 value(s) below soft_min 5 (accepted, flagged) (e.g. 3)",
        "column 'age': 2 value(s) above soft_max 90 (accepted, flagged) (e.g. 91, 95)",
    ]
    accepted = _one_column("age", [95, 3, 91, 30])
    frame = pd.DataFrame(accepted)
    expected = [
        "column 'age': 1 value(s) below soft_min 5 (accepted, flagged) (e.g. 3)",
        "column 'age': 2 value(s) above soft_max 90 (accepted, flagged) (e.g. 91, 95)",
    ]
    assert row_messages(check_frame(frame, CONTRACT)) == []
    assert _batch_messages(frame) == []  # batch scoring does not fail on warnings
    assert _row_warnings(frame, BATCH_CONTRACT, RuleScope.ROW) == expected
    assert _serving(VECTORISED, accepted) == ([], expected)
    assert _serving(FAST_FIRST, accepted) == ([], expected)


def _decoded_columns(table: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    inputs = [
        {"name": n, "shape": [len(v)], "datatype": _datatype(v, CONTRACT.columns[n].dtype.value), "data": v}
        for n, v in table.items()
    ]
    body = json.dumps({"inputs": inputs}).encode()
    fast = FAST_FIRST.decode(body).columns
    vectorised = VECTORISED.decode(body).columns
    for name in table:
        np.testing.assert_array_equal(fast[name], vectorised[name])
    return vectorised


def test_boolean_tokens_and_normalised_text_have_one_canonical_value_on_every_path() -> None:
    table = _one_column("flag", ["Yes", "no", " T ", "f", None, "FALSE", "y", "N"])
    table["shade"] = [" Light", "DARK ", "dark", "light", "Light", "Dark", "light ", "dark"]
    frame = pd.DataFrame(table)
    assert row_messages(check_frame(frame, CONTRACT)) == []
    flag_problem, flag_values = canonical_values(frame["flag"], CONTRACT.columns["flag"])
    shade_problem, shade_values = canonical_values(frame["shade"], CONTRACT.columns["shade"])
    assert flag_problem is None and shade_problem is None
    decoded = _decoded_columns(table)
    expected_flags = [1.0, 0.0, 1.0, 0.0, np.nan, 0.0, 1.0, 0.0]
    np.testing.assert_array_equal(flag_values, expected_flags)
    np.testing.assert_array_equal(decoded["flag"], expected_flags)
    expected_shades = ["light", "dark", "dark", "light", "light", "dark", "light", "dark"]
    assert shade_values.tolist() == decoded["shade"].tolist() == expected_shades


def test_a_word_that_is_not_a_boolean_token_is_refused_by_validation_and_serving() -> None:
    table = _one_column("flag", ["yes", "maybe"])
    violations = check_frame(pd.DataFrame(table), CONTRACT)
    assert [v.rule for v in violations if v.column == "flag"] == ["dtype"]
    assert "holding non-boolean values (e.g. 'maybe')" in "; ".join(v.message for v in violations)
    for decoder in (VECTORISED, FAST_FIRST):
        with pytest.raises(RequestError) as caught:
            decoder.decode(
                json.dumps(
                    {
                        "inputs": [
                            {
                                "name": n,
                                "shape": [2],
                                "datatype": _datatype(v, CONTRACT.columns[n].dtype.value),
                                "data": v,
                            }
                            for n, v in table.items()
                        ]
                    }
                ).encode()
            )
        assert caught.value.status == 422 and "'maybe'" in caught.value.message
