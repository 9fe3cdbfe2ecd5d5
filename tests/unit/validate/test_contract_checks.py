"""Contract checks on whole tables (the vectorised pandas path of the rule engine)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from validate_support import contract

from tabpipe.stages.validate import (
    check_contract,
)


def test_conforming_frame_has_no_violations():
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "score": [0.5, 1.5, 2.0],
            "name": ["a", "b", None],
            "flag": [True, False, True],
            "when": ["2024-01-01", "2024-02-01", "2024-03-01"],
        }
    )
    c = contract(
        {
            "id": {"dtype": "integer", "unique": True, "min": 1, "max": 3},
            "score": {"dtype": "float", "min": 0, "max": 2},
            "name": {"dtype": "string", "nullable": True, "allowed": ["a", "b"]},
            "flag": {"dtype": "boolean"},
            "when": {"dtype": "datetime"},
        }
    )
    assert check_contract(df, c) == []


def test_missing_and_unexpected_columns():
    df = pd.DataFrame({"a": [1], "zzz": [2]})
    c = contract({"a": {"dtype": "integer"}, "b": {"dtype": "integer"}, "c": {"dtype": "string"}})
    assert check_contract(df, c) == ["missing column(s): ['b', 'c']", "unexpected column(s): ['zzz']"]
    relaxed = contract({"a": {"dtype": "integer"}}, allow_extra_columns=True)
    assert check_contract(df, relaxed) == []


def test_integer_accepts_whole_floats_from_csv_but_not_fractions():
    c = contract({"n": {"dtype": "integer", "nullable": True}})
    assert check_contract(pd.DataFrame({"n": [1.0, np.nan, 3.0]}), c) == []
    assert check_contract(pd.DataFrame({"n": pd.array([1, None], dtype="Int64")}), c) == []
    (msg,) = check_contract(pd.DataFrame({"n": [1.0, 2.5, np.nan]}), c)
    assert msg == "column 'n': 1 non-integer value(s) (e.g. 2.5)"
    (msg,) = check_contract(pd.DataFrame({"n": [True, False]}), c)
    assert msg == "column 'n' expected dtype integer, found bool"


def test_wrong_dtype_reports_dtype_only_and_skips_value_checks():
    df = pd.DataFrame({"age": ["x", "y", None]})
    c = contract({"age": {"dtype": "integer", "min": 0, "max": 120, "unique": True, "allowed": [1]}})
    assert check_contract(df, c) == ["column 'age' expected dtype integer, found str"]


def test_float_string_boolean_datetime_dtypes():
    c = contract({"f": {"dtype": "float"}})
    assert check_contract(pd.DataFrame({"f": [1, 2]}), c) == []
    assert check_contract(pd.DataFrame({"f": [True, False]}), c) == [
        "column 'f' expected dtype float, found bool"
    ]

    c = contract({"s": {"dtype": "string"}})
    assert check_contract(pd.DataFrame({"s": pd.Series(["a", "b"], dtype=object)}), c) == []
    assert check_contract(pd.DataFrame({"s": pd.Series(["a", "b"], dtype="category")}), c) == []
    assert check_contract(pd.DataFrame({"s": [1.5, 2.5]}), c) == [
        "column 's' expected dtype string, found float64"
    ]

    c = contract({"b": {"dtype": "boolean", "nullable": True}})
    assert check_contract(pd.DataFrame({"b": [0, 1, 1]}), c) == []
    # CSV reads a bool column with nulls as object.
    assert check_contract(pd.DataFrame({"b": pd.Series([True, None, False], dtype=object)}), c) == []
    (msg,) = check_contract(pd.DataFrame({"b": [0, 1, 2, 3]}), c)
    assert msg == ("column 'b': 2 value(s) other than true/false/0/1 (e.g. 2, 3)")

    c = contract({"d": {"dtype": "datetime"}})
    assert check_contract(pd.DataFrame({"d": pd.to_datetime(["2024-01-01"])}), c) == []
    # Mixed formats parse value by value.
    assert check_contract(pd.DataFrame({"d": ["2024-01-01", "2024-02-03 10:00", "03/04/2024"]}), c) == []
    (msg,) = check_contract(pd.DataFrame({"d": ["2024-01-01", "not a date", "31/31/2024"]}), c)
    assert msg == "column 'd': 2 value(s) that do not parse as dates (e.g. '31/31/2024', 'not a date')"
    assert "'not a date'" in msg


def test_nulls_and_entirely_null_columns():
    df = pd.DataFrame({"a": [1.0, None, None], "b": [None, None, None], "c": [None, None, None]})
    c = contract(
        {"a": {"dtype": "integer"}, "b": {"dtype": "float", "nullable": True}, "c": {"dtype": "string"}}
    )
    assert check_contract(df, c) == [
        "column 'a': 2 null value(s) but nullable is false",
        "column 'b' is entirely null",
        "column 'c' is entirely null",
        "column 'c': 3 null value(s) but nullable is false",
    ]


def test_allowed_values_report_unexpected_examples():
    df = pd.DataFrame({"URL_Length": [-1, 0, 1, 9, 7, 1, np.nan]})
    c = contract({"URL_Length": {"dtype": "integer", "nullable": True, "allowed": [-1, 0, 1]}})
    assert check_contract(df, c) == [
        "column 'URL_Length': 2 value(s) not in allowed set [-1, 0, 1] (e.g. 7, 9)"
    ]

    df = pd.DataFrame({"color": ["red", "blue", "pink", "pink", "teal"]})
    (msg,) = check_contract(df, contract({"color": {"dtype": "string", "allowed": ["red", "blue"]}}))
    assert msg == "column 'color': 3 value(s) not in allowed set ['red', 'blue'] (e.g. 'pink', 'teal')"


def test_allowed_examples_are_capped_at_five():
    df = pd.DataFrame({"k": list(range(10))})
    (msg,) = check_contract(df, contract({"k": {"dtype": "integer", "allowed": [0]}}))
    assert msg == "column 'k': 9 value(s) not in allowed set [0] (e.g. 1, 2, 3, 4, 5)"


def test_min_max_report_counts_and_examples():
    df = pd.DataFrame({"age": [30, 150, -2, 200, 150, 40]})
    c = contract({"age": {"dtype": "integer", "min": 0, "max": 120}})
    assert check_contract(df, c) == [
        "column 'age': 1 value(s) below min 0 (e.g. -2)",
        "column 'age': 3 value(s) above max 120 (e.g. 150, 200)",
    ]
    (msg,) = check_contract(pd.DataFrame({"p": [0.5, 1.25]}), contract({"p": {"dtype": "float", "max": 1}}))
    assert msg == "column 'p': 1 value(s) above max 1 (e.g. 1.25)"


def test_unique_reports_duplicated_values():
    df = pd.DataFrame({"id": [1, 2, 2, 3, 3, 3, 4, None]})
    c = contract({"id": {"dtype": "integer", "unique": True, "nullable": True}})
    assert check_contract(df, c) == [
        "column 'id': 2 duplicated value(s) in 5 row(s) but unique is true (e.g. 2, 3)"
    ]


def test_min_rows():
    df = pd.DataFrame({"a": [1, 2]})
    assert check_contract(df, contract({"a": {"dtype": "integer"}}, min_rows=5)) == [
        "table has 2 row(s), fewer than min_rows 5"
    ]


def test_every_rule_is_reported_not_just_the_first():
    df = pd.DataFrame(
        {
            "id": [1, 1, 2],
            "age": [10, 500, None],
            "kind": ["a", "b", "z"],
            "extra": [0, 0, 0],
        }
    )
    c = contract(
        {
            "id": {"dtype": "integer", "unique": True},
            "age": {"dtype": "integer", "max": 120},
            "kind": {"dtype": "string", "allowed": ["a", "b"]},
            "gone": {"dtype": "float"},
        },
        min_rows=10,
    )
    violations = check_contract(df, c)
    assert len(violations) == 7
    joined = "\n".join(violations)
    for fragment in (
        "min_rows 10",
        "missing column(s): ['gone']",
        "unexpected column(s): ['extra']",
        "column 'id': 1 duplicated value(s)",
        "column 'age': 1 null value(s)",
        "column 'age': 1 value(s) above max 120 (e.g. 500)",
        "column 'kind': 1 value(s) not in allowed set ['a', 'b'] (e.g. 'z')",
    ):
        assert fragment in joined
