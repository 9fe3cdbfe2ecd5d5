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
        "drift": None,
        "drift_skipped_reason": None,
    }
