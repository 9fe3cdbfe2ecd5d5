"""The test-split fingerprint: equal for the same rows, different for any change."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabpipe.stages.evaluate import frame_fingerprint


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"], "c": [0.5, np.nan, -0.0]})


def test_same_rows_same_fingerprint_whatever_the_index():
    frame = _frame()
    moved = frame.set_axis([10, 11, 12])
    assert frame_fingerprint(frame) == frame_fingerprint(moved) == frame_fingerprint(_frame())
    assert frame_fingerprint(frame).startswith("sha256:")


def test_any_change_changes_the_fingerprint():
    base = frame_fingerprint(_frame())
    changed = _frame()
    changed.loc[1, "a"] = 5
    reordered = _frame().iloc[[1, 0, 2]].reset_index(drop=True)
    renamed = _frame().rename(columns={"a": "A"})
    retyped = _frame().astype({"a": "float64"})
    fewer = _frame().head(2)
    others = [changed, reordered, renamed, retyped, fewer]
    prints = {frame_fingerprint(f) for f in others}
    assert base not in prints and len(prints) == len(others)
