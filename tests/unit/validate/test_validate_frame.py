"""validate_frame and its JSON/Markdown report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from validate_support import config

from tabpipe.errors import DataValidationError
from tabpipe.stages.validate import (
    ValidationReport,
    raise_for_report,
    validate_frame,
)

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
    cfg = config(CONTRACT_DOC, drift={"max_drifted_share": 0.4, "critical_columns": []})
    current = _demo_frame(shift=2.0, seed=1)
    current.loc[0, "c"] = "zzz"
    report = validate_frame(current, cfg, _demo_frame(seed=2), "demo")
    assert not report.passed
    assert report.violations[0] == "column 'c': 1 value(s) not in allowed set ['a', 'b'] (e.g. 'zzz')"
    assert report.violations[-1] == (
        "drift: 1 of 2 column(s) drifted ['x'] (significant and effect size >= min_effect), share 0.500 "
        "exceeds max_drifted_share 0.4"
    )
    assert report.drift is not None
    assert [c.column for c in report.drift.columns] == ["x", "c"]  # target and PII column excluded

    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["drift"]["columns"][0]["drifted"] is True
    assert data["passed"] is False and data["violations"] == report.violations
    md = report.to_markdown()
    assert "**FAIL**" in md
    assert (
        "| column | test | statistic | effect size | min effect | p | adjusted p | critical | drifted |" in md
    )
    assert "| x | ks |" in md and "**yes**" in md

    with pytest.raises(DataValidationError) as info:
        raise_for_report(report)
    assert info.value.violations == report.violations
    assert "zzz" in str(info.value)


def test_validate_frame_drift_within_limit_is_a_warning():
    cfg = config(CONTRACT_DOC, drift={"max_drifted_share": 0.5, "critical_columns": []})
    report = validate_frame(_demo_frame(shift=2.0, seed=1), cfg, _demo_frame(seed=2), "demo")
    assert report.passed
    assert report.warnings == [
        "drift: 1 of 2 column(s) drifted ['x'] (significant and effect size >= min_effect), share 0.500 "
        "within max_drifted_share 0.5"
    ]


def test_by_default_a_drifted_model_feature_stops_the_run():
    """Defaults: every model feature is critical, whatever max_drifted_share allows."""
    cfg = config(CONTRACT_DOC, drift={"max_drifted_share": 0.9})
    report = validate_frame(_demo_frame(shift=2.0, seed=1), cfg, _demo_frame(seed=2), "demo")
    assert not report.passed
    assert report.violations[-1].endswith("critical column(s) drifted: ['x']")
    assert report.drift is not None and report.drift.critical_drifted == ["x"]
    assert report.to_dict()["drift"]["drifted_columns"] == ["x"]


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
        "leakage": {},
        "drift": None,
        "drift_skipped_reason": None,
    }


# --------------------------------------------------------------------------- leakage across the splits


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    n = len(frame)
    return frame.iloc[: n // 2], frame.iloc[n // 2 : 3 * n // 4], frame.iloc[3 * n // 4 :]


def test_test_rows_copied_from_train_fail_with_the_count():
    frame = _demo_frame(seed=4)
    train, validation, test = _split(frame)
    test = pd.concat([test.iloc[:10], train.iloc[:40]], ignore_index=True)  # 40 copies of training rows
    whole = pd.concat([train, validation, test], ignore_index=True)
    report = validate_frame(whole, config(CONTRACT_DOC), None, "demo", splits=(train, validation, test))
    assert report.leakage["test_rows_in_train"] == 40
    assert report.leakage["test_share_in_train"] == 0.8
    assert (
        "leakage: 40 of 50 test row(s) (80.0%) are copies of training rows, above "
        "leakage.max_test_share_in_train 0.0" in report.violations
    )


def test_a_feature_equal_to_the_target_is_a_proxy():
    frame = _demo_frame(seed=5)
    frame["x"] = frame["y"].astype(float)  # the target in disguise
    train, validation, test = _split(frame)
    report = validate_frame(frame, config(CONTRACT_DOC), None, "demo", splits=(train, validation, test))
    proxies = [v for v in report.violations if "alone predicts the target" in v]
    assert proxies == [
        "leakage: feature 'x' alone predicts the target (balanced accuracy 1.000 on the test split), "
        "at or above leakage.max_single_feature_score 0.99: is it the target in disguise?"
    ]
    assert report.leakage["strongest_single_feature"] == "x (1.000)"


def test_conflicting_labels_are_counted_and_limited():
    frame = _demo_frame(seed=6)
    twins = frame.iloc[:30].copy()
    twins["y"] = 1 - twins["y"]  # same features, the other label
    frame = pd.concat([frame, twins], ignore_index=True)
    train, validation, test = _split(frame)
    lenient = validate_frame(frame, config(CONTRACT_DOC), None, "demo", splits=(train, validation, test))
    assert lenient.leakage["conflicting_label_rows"] == 60
    strict = config(
        CONTRACT_DOC, leakage={"max_conflicting_label_share": 0.1, "max_test_share_in_train": 1.0}
    )
    report = validate_frame(frame, strict, None, "demo", splits=(train, validation, test))
    assert any("60 row(s) (26.1%) share their features" in v for v in report.violations)
