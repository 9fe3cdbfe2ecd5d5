"""Unit tests of the validate stage's pure logic, on small real DataFrames."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from tabpipe.config import PipelineConfig, TaskType
from tabpipe.contract import DataContract, dump_contract, parse_contract
from tabpipe.errors import DataValidationError
from tabpipe.stages.validate import (
    DriftColumn,
    DriftResult,
    ValidationReport,
    apply_pii,
    check_contract,
    check_drift,
    check_quality,
    infer_contract,
    raise_for_report,
    validate_frame,
)

PHISHING = Path(__file__).resolve().parents[2] / "data" / "phishing" / "phishing_websites.csv"


def contract(columns: dict, **extra) -> DataContract:
    return DataContract.model_validate({"name": "t", "columns": columns, **extra})


def config(
    contract_doc: dict, task: str = "binary_classification", target: str = "y", **extra
) -> PipelineConfig:
    metric = "mae" if task == "regression" else "accuracy"
    estimator = "ridge" if task == "regression" else "logistic_regression"
    return PipelineConfig.model_validate(
        {
            "name": "demo",
            "task": task,
            "target": target,
            "source": {"uri": "/tmp/demo.csv"},
            "contract": contract_doc,
            "models": [{"estimator": estimator}],
            "evaluation": {"primary_metric": metric},
            "registry": {"model_name": "demo"},
            **extra,
        }
    )


# --------------------------------------------------------------------------- check_contract


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
    assert msg == "column 'n' expected dtype integer, found float64 with 1 non-integer value(s) (e.g. 2.5)"
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
    assert msg == (
        "column 'b' expected dtype boolean, found int64 with value(s) other than True/False/0/1 (e.g. 2, 3)"
    )

    c = contract({"d": {"dtype": "datetime"}})
    assert check_contract(pd.DataFrame({"d": pd.to_datetime(["2024-01-01"])}), c) == []
    # Mixed formats parse value by value.
    assert check_contract(pd.DataFrame({"d": ["2024-01-01", "2024-02-03 10:00", "03/04/2024"]}), c) == []
    (msg,) = check_contract(pd.DataFrame({"d": ["2024-01-01", "not a date", "31/31/2024"]}), c)
    assert msg.startswith("column 'd' expected dtype datetime, found str with 2 value(s) that do not parse")
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


# --------------------------------------------------------------------------- check_quality


def test_quality_stats_and_clean_table():
    df = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    c = contract(
        {"x": {"dtype": "float", "nullable": True}, "c": {"dtype": "string"}, "y": {"dtype": "integer"}}
    )
    violations, warnings, quality = check_quality(df, c, "y", TaskType.BINARY)
    assert violations == [] and warnings == []
    assert quality["missing_ratio"] == {"x": 0.25, "c": 0.0, "y": 0.0}
    assert quality["duplicate_rows"] == 0 and quality["duplicate_ratio"] == 0.0
    assert quality["constant_columns"] == []
    assert quality["class_balance"] == {"0": 0.5, "1": 0.5}
    json.dumps(quality, allow_nan=False)


def test_missing_ratio_and_duplicate_ratio_violations():
    df = pd.DataFrame({"x": [None, None, None, 1.0, 2.0], "k": [1, 1, 1, 2, 3], "y": [0, 0, 0, 1, 1]})
    c = contract(
        {"x": {"dtype": "float", "nullable": True}, "k": {"dtype": "integer"}, "y": {"dtype": "integer"}},
        quality={"max_missing_ratio": 0.5, "max_duplicate_ratio": 0.2},
    )
    violations, _, quality = check_quality(df, c, "y", TaskType.BINARY)
    assert violations == [
        "column 'x': missing ratio 0.600 exceeds max_missing_ratio 0.5",
        "table: 2 duplicate row(s), ratio 0.400 exceeds max_duplicate_ratio 0.2",
    ]
    assert quality["duplicate_rows"] == 2


def test_constant_columns_violation_or_warning():
    df = pd.DataFrame({"const": [7, 7, 7, None], "x": [1, 2, 3, 4], "y": [0, 1, 0, 1]})
    doc = {
        "const": {"dtype": "integer", "nullable": True},
        "x": {"dtype": "integer"},
        "y": {"dtype": "integer"},
    }
    violations, warnings, quality = check_quality(df, contract(doc), "y", TaskType.BINARY)
    assert violations == ["column 'const' is constant (only value 7); forbid_constant_columns is true"]
    assert warnings == [] and quality["constant_columns"] == ["const"]
    relaxed = contract(doc, quality={"forbid_constant_columns": False})
    violations, warnings, _ = check_quality(df, relaxed, "y", TaskType.BINARY)
    assert violations == [] and warnings == ["column 'const' is constant (only value 7)"]


def test_classification_target_rules():
    doc = {"x": {"dtype": "integer"}, "y": {"dtype": "string", "nullable": True}}
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["spam", "spam", "spam"]})
    violations, _, _ = check_quality(df, contract(doc), "y", TaskType.BINARY)
    assert violations == [
        "target 'y' has a single class ('spam' in 3 row(s)); a classifier needs at least two"
    ]

    df = pd.DataFrame({"x": range(20), "y": ["a"] * 19 + ["b"]})
    strict = contract(doc, quality={"min_class_ratio": 0.1})
    violations, _, quality = check_quality(df, strict, "y", TaskType.MULTICLASS)
    assert violations == ["target 'y': smallest class 'b' has share 0.050, below min_class_ratio 0.1"]
    assert quality["class_balance"] == {"a": 0.95, "b": 0.05}

    df = pd.DataFrame({"x": [1, 2, 3, 4], "y": ["a", None, "b", "a"]})
    violations, _, _ = check_quality(df, contract(doc), "y", TaskType.BINARY)
    assert violations == ["target 'y': 1 missing value(s)"]


def test_regression_constant_target():
    doc = {"x": {"dtype": "float"}, "y": {"dtype": "float"}}
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.5, 2.5, 2.5]})
    violations, _, quality = check_quality(df, contract(doc), "y", TaskType.REGRESSION)
    assert violations == ["target 'y' is constant (only value 2.5)"]
    assert quality["class_balance"] is None
    df["y"] = [1.0, 2.0, 3.0]
    assert check_quality(df, contract(doc), "y", TaskType.REGRESSION)[0] == []


# --------------------------------------------------------------------------- check_drift

NUM_CONTRACT = {"a": {"dtype": "float"}, "b": {"dtype": "float"}, "y": {"dtype": "integer"}}


def _normal_frames(shift: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(0, 1, 500), "y": rng.integers(0, 2, 500)})
    cur = pd.DataFrame(
        {"a": rng.normal(shift, 1, 500), "b": rng.normal(0, 1, 500), "y": rng.integers(0, 2, 500) + 5}
    )
    return cur, ref


def test_ks_flags_shifted_normal_only():
    cur, ref = _normal_frames(shift=1.0)
    result = check_drift(cur, ref, contract(NUM_CONTRACT), exclude=["y"], alpha=0.05, max_drifted_share=0.3)
    by_col = {c.column: c for c in result.columns}
    assert set(by_col) == {"a", "b"}  # the target is excluded although it drifted
    assert by_col["a"].test == "ks" and by_col["a"].drifted and by_col["a"].p_value < 1e-10
    assert not by_col["b"].drifted
    raw = stats.ks_2samp(cur["a"], ref["a"])
    assert by_col["a"].statistic == pytest.approx(raw.statistic)
    assert by_col["a"].p_value == pytest.approx(raw.pvalue)
    assert result.drifted_share == 0.5 and result.failed

    cur, ref = _normal_frames(shift=0.0)
    result = check_drift(cur, ref, contract(NUM_CONTRACT), exclude=["y"], alpha=0.05, max_drifted_share=0.3)
    assert [c.drifted for c in result.columns] == [False, False]
    assert result.drifted_share == 0.0 and not result.failed


def test_bh_adjusted_p_values():
    rng = np.random.default_rng(1)
    cols = {f"c{i}": {"dtype": "float"} for i in range(6)}
    ref = pd.DataFrame({f"c{i}": rng.normal(0, 1, 200) for i in range(6)})
    cur = pd.DataFrame({f"c{i}": rng.normal(0.1 * i, 1, 200) for i in range(6)})
    result = check_drift(cur, ref, contract(cols), exclude=[], alpha=0.05, max_drifted_share=1.0)
    raw = np.array([c.p_value for c in result.columns])
    adjusted = np.array([c.p_adjusted for c in result.columns])
    assert np.all(adjusted >= raw) and np.all(adjusted <= 1.0)
    # Benjamini-Hochberg by hand: p_(i) * m / i, made monotone from the largest p down.
    m = len(raw)
    order = np.argsort(raw)
    scaled = raw[order] * m / np.arange(1, m + 1)
    expected = np.empty(m)
    expected[order] = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    np.testing.assert_allclose(adjusted, expected)
    assert [c.drifted for c in result.columns] == [bool(p < 0.05) for p in adjusted]
    assert not result.failed  # max_drifted_share 1.0 never fails


def test_chi2_flags_changed_category_mix():
    c = contract({"color": {"dtype": "string"}, "flag": {"dtype": "boolean"}})
    ref = pd.DataFrame({"color": ["red"] * 100 + ["blue"] * 100, "flag": [True, False] * 100})
    cur = pd.DataFrame({"color": ["red"] * 160 + ["blue"] * 30 + ["green"] * 10, "flag": [True, False] * 100})
    result = check_drift(cur, ref, c, exclude=[], alpha=0.05, max_drifted_share=0.5)
    color, flag = result.columns
    assert (color.column, color.test, color.drifted) == ("color", "chi2", True)
    expected = stats.chi2_contingency(np.array([[160, 30, 10], [100, 100, 0]]))
    assert color.statistic == pytest.approx(expected.statistic)
    assert color.p_value == pytest.approx(expected.pvalue)
    assert (flag.test, flag.drifted) == ("chi2", False)
    assert result.drifted_share == 0.5 and not result.failed


def test_chi2_single_category_and_skipped_columns():
    c = contract(
        {
            "only": {"dtype": "string"},
            "when": {"dtype": "datetime"},
            "email": {"dtype": "string", "pii": "hash"},
            "absent": {"dtype": "float"},
            "empty": {"dtype": "float", "nullable": True},
        }
    )
    frame = pd.DataFrame(
        {
            "only": ["x"] * 5,
            "when": pd.date_range("2024-01-01", periods=5),
            "email": list("abcde"),
            "empty": [np.nan] * 5,
        }
    )
    result = check_drift(frame, frame, c, exclude=["email"], alpha=0.05, max_drifted_share=0.3)
    assert result.columns == [DriftColumn("only", "chi2", 0.0, 1.0, 1.0, False)]

    nothing = contract({"when": {"dtype": "datetime"}})
    result = check_drift(frame, frame, nothing, exclude=[], alpha=0.05, max_drifted_share=0.0)
    assert result.columns == [] and result.drifted_share == 0.0 and not result.failed


def test_drift_result_failed_is_share_above_limit():
    col = DriftColumn("a", "ks", 0.5, 0.001, 0.002, True)
    assert DriftResult([col], 0.05, 1.0, 0.99).failed
    assert not DriftResult([col], 0.05, 1.0, 1.0).failed


# --------------------------------------------------------------------------- apply_pii


def test_apply_pii_hashes_and_drops():
    df = pd.DataFrame({"email": ["a@x.org", None, "a@x.org"], "ssn": ["1", "2", "3"], "age": [1, 2, 3]})
    c = contract(
        {
            "email": {"dtype": "string", "nullable": True, "pii": "hash"},
            "ssn": {"dtype": "string", "pii": "drop"},
            "age": {"dtype": "integer"},
            "phone": {"dtype": "string", "pii": "drop"},  # absent from the frame: ignored
        }
    )
    out = apply_pii(df, c)
    assert list(out.columns) == ["email", "age"]
    digest = hashlib.sha256(b"a@x.org").hexdigest()
    assert out["email"].iloc[0] == digest and out["email"].iloc[2] == digest
    assert pd.isna(out["email"].iloc[1])
    assert out["age"].tolist() == [1, 2, 3]
    assert df["email"].iloc[0] == "a@x.org" and "ssn" in df.columns  # input untouched
    assert apply_pii(df, c).equals(out)  # deterministic: no salt


# --------------------------------------------------------------------------- validate_frame / report

CONTRACT_DOC = {
    "name": "demo",
    "columns": {
        "x": {"dtype": "float"},
        "c": {"dtype": "string", "allowed": ["a", "b"]},
        "email": {"dtype": "string", "pii": "hash"},
        "y": {"dtype": "integer", "allowed": [0, 1]},
    },
}


def _demo_frame(n: int = 200, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1, n),
            "c": rng.choice(["a", "b"], n),
            "email": [f"user{i}@example.org" for i in range(n)],
            "y": rng.integers(0, 2, n),
        }
    )


def test_validate_frame_passes_without_reference():
    report = validate_frame(_demo_frame(), config(CONTRACT_DOC), None, "demo")
    assert report.passed and report.violations == []
    assert report.drift is None
    assert report.drift_skipped_reason == "no reference data set configured (drift.reference_uri)"
    assert (report.n_rows, report.n_columns) == (200, 4)
    raise_for_report(report)  # does not raise
    md = report.to_markdown()
    assert "**PASS**" in md and "Skipped: no reference data set configured" in md
    assert "| column | missing ratio | constant |" in md


def test_validate_frame_reports_drift_and_bad_data():
    cfg = config(CONTRACT_DOC, drift={"max_drifted_share": 0.4})
    current = _demo_frame(shift=2.0, seed=1)
    current.loc[0, "c"] = "zzz"
    report = validate_frame(current, cfg, _demo_frame(seed=2), "demo")
    assert not report.passed
    assert report.violations[0] == "column 'c': 1 value(s) not in allowed set ['a', 'b'] (e.g. 'zzz')"
    assert report.violations[-1] == (
        "drift: 1 of 2 column(s) drifted ['x'], share 0.500 exceeds max_drifted_share 0.4"
    )
    assert report.drift is not None
    assert [c.column for c in report.drift.columns] == ["x", "c"]  # target and PII column excluded

    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["drift"]["columns"][0]["drifted"] is True
    assert data["passed"] is False and data["violations"] == report.violations
    md = report.to_markdown()
    assert "**FAIL**" in md
    assert "| column | test | statistic | p | adjusted p | drifted |" in md
    assert "| x | ks |" in md and "**yes**" in md

    with pytest.raises(DataValidationError) as info:
        raise_for_report(report)
    assert info.value.violations == report.violations
    assert "zzz" in str(info.value)


def test_validate_frame_drift_within_limit_is_a_warning():
    cfg = config(CONTRACT_DOC, drift={"max_drifted_share": 0.5})
    report = validate_frame(_demo_frame(shift=2.0, seed=1), cfg, _demo_frame(seed=2), "demo")
    assert report.passed
    assert report.warnings == [
        "drift: 1 of 2 column(s) drifted ['x'], share 0.500 within max_drifted_share 0.5"
    ]


def test_validate_frame_never_raises_on_broken_data():
    broken = pd.DataFrame({"x": ["oops", None], "c": [[1, 2], [1, 2]], "extra": [np.inf, np.nan]})
    report = validate_frame(broken, config(CONTRACT_DOC), broken, "broken")
    assert not report.passed
    assert "missing column(s): ['email', 'y']" in report.violations
    assert "column 'x' expected dtype float, found str" in report.violations
    json.dumps(report.to_dict(), allow_nan=False)
    assert "**FAIL**" in report.to_markdown()


def test_report_to_dict_is_json_safe_with_numpy_values():
    report = ValidationReport(
        dataset="d",
        n_rows=np.int64(3),
        n_columns=2,
        violations=[],
        warnings=[],
        quality={"missing_ratio": {"a": np.float64("nan")}, "k": (np.int32(1), np.bool_(True))},
        drift=None,
        drift_skipped_reason=None,
    )
    data = report.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == {
        "dataset": "d",
        "passed": True,
        "n_rows": 3,
        "n_columns": 2,
        "violations": [],
        "warnings": [],
        "quality": {"missing_ratio": {"a": None}, "k": [1, True]},
        "drift": None,
        "drift_skipped_reason": None,
    }


# --------------------------------------------------------------------------- infer_contract


def test_infer_contract_drafts_rules_and_round_trips():
    df = pd.DataFrame(
        {
            "id": [10, 11, 12, 13],
            "count": [1.0, np.nan, 3.0, 3.0],  # int with NaN, as CSV reads it
            "score": [0.1, 0.2, 0.2, 0.9],
            "kind": ["a", "b", "a", None],
            "flag": [True, False, True, True],
            "when": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04 12:00"],
        }
    )
    c = infer_contract(df, "draft")
    cols = c.columns
    assert {k: v.dtype.value for k, v in cols.items()} == {
        "id": "integer",
        "count": "integer",
        "score": "float",
        "kind": "string",
        "flag": "boolean",
        "when": "datetime",
    }
    assert cols["id"].unique and cols["id"].allowed is None and (cols["id"].min, cols["id"].max) == (10, 13)
    assert cols["count"].nullable and cols["count"].allowed == [1, 3] and not cols["count"].unique
    assert cols["score"].allowed is None and (cols["score"].min, cols["score"].max) == (0.1, 0.9)
    assert cols["kind"].nullable and cols["kind"].allowed == ["a", "b"]
    assert cols["flag"].allowed == [False, True]
    assert all(type(v) is int for v in cols["count"].allowed)

    text = dump_contract(c)
    assert parse_contract(yaml.safe_load(text)) == c
    assert check_contract(df, c) == []


def test_infer_contract_many_categories_are_not_listed():
    df = pd.DataFrame({"k": [i % 30 for i in range(60)]})
    c = infer_contract(df, "draft", max_categories=20)
    assert c.columns["k"].allowed is None and not c.columns["k"].unique
    assert infer_contract(df, "draft", max_categories=30).columns["k"].allowed == list(range(30))


def test_infer_contract_on_phishing_data_validates_it():
    df = pd.read_csv(PHISHING)
    c = infer_contract(df, "phishing")
    assert len(c.columns) == 31 and c.columns["Result"].allowed == [-1, 1]
    assert all(col.dtype.value == "integer" for col in c.columns.values())
    assert parse_contract(yaml.safe_load(dump_contract(c))) == c
    assert check_contract(df, c) == []
