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
