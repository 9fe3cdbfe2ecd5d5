"""Drift tests (KS, chi-square) and Benjamini-Hochberg decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from validate_support import contract

from tabpipe.stages.validate import (
    DriftColumn,
    DriftResult,
    check_drift,
)

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
    assert result.columns == [DriftColumn("only", "chi2", 0.0, 0.0, 1.0, 1.0, False)]

    nothing = contract({"when": {"dtype": "datetime"}})
    result = check_drift(frame, frame, nothing, exclude=[], alpha=0.05, max_drifted_share=0.0)
    assert result.columns == [] and result.drifted_share == 0.0 and not result.failed


def test_drift_result_failed_is_share_above_limit():
    col = DriftColumn("a", "ks", 0.5, 0.5, 0.001, 0.002, True)
    assert DriftResult([col], 0.05, 1.0, 0.99).failed
    assert not DriftResult([col], 0.05, 1.0, 1.0).failed


def test_a_negligible_shift_on_a_large_table_is_significant_but_not_drift():
    """0.02 standard deviations on 1M rows: p is tiny, the effect is not."""
    rng = np.random.default_rng(7)
    n = 1_000_000
    ref = pd.DataFrame({"a": rng.normal(0.0, 1.0, n)})
    cur = pd.DataFrame({"a": rng.normal(0.02, 1.0, n)})
    (col,) = check_drift(
        cur, ref, contract({"a": {"dtype": "float"}}), [], alpha=0.05, max_drifted_share=0.0
    ).columns
    assert col.p_adjusted < 1e-10 and col.significant
    assert col.score == pytest.approx(stats.ks_2samp(cur["a"], ref["a"]).statistic)
    assert col.score < 0.02 and not col.drifted


def test_five_strongly_drifted_columns_of_thirty_stop_the_run_when_critical():
    rng = np.random.default_rng(3)
    cols = {f"c{i}": {"dtype": "float"} for i in range(30)}
    ref = pd.DataFrame({f"c{i}": rng.normal(0, 1, 2000) for i in range(30)})
    cur = pd.DataFrame({f"c{i}": rng.normal(1.0 if i < 5 else 0.0, 1, 2000) for i in range(30)})
    lenient = check_drift(cur, ref, contract(cols), [], alpha=0.05, max_drifted_share=0.3)
    assert lenient.drifted_columns == [f"c{i}" for i in range(5)]
    assert not lenient.failed  # the old decision: 5/30 is under the 0.3 share
    strict = check_drift(cur, ref, contract(cols), [], alpha=0.05, max_drifted_share=0.3, critical=list(cols))
    assert strict.failed and strict.critical_drifted == [f"c{i}" for i in range(5)]


def test_min_effect_per_column_and_total_variation_for_categories():
    c = contract({"color": {"dtype": "string"}, "size": {"dtype": "string"}})
    ref = pd.DataFrame({"color": ["red"] * 500 + ["blue"] * 500, "size": ["s"] * 500 + ["m"] * 500})
    cur = pd.DataFrame({"color": ["red"] * 560 + ["blue"] * 440, "size": ["s"] * 560 + ["m"] * 440})
    result = check_drift(
        cur,
        ref,
        c,
        [],
        alpha=0.05,
        max_drifted_share=1.0,
        min_effect=0.1,
        min_effect_by_column={"size": 0.05},
    )
    color, size = result.columns
    assert color.score == pytest.approx(0.06) and size.score == pytest.approx(0.06)  # 6% of rows moved
    assert color.significant and size.significant
    assert (color.drifted, color.min_effect) == (False, 0.1)
    assert (size.drifted, size.min_effect) == (True, 0.05)
