"""The evaluation plots are real PNG files."""

from __future__ import annotations

import pandas as pd
from evaluate_support import (
    PNG_MAGIC,
)

from tabpipe.config import TaskType
from tabpipe.stages.evaluate import (
    permutation_importance_table,
    predict,
    write_plots,
)


def _assert_pngs(paths: dict, names: set[str]) -> None:
    assert set(paths) == names
    for name, path in paths.items():
        assert path.name == f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_write_plots_binary(binary_str, tmp_path):
    import matplotlib.pyplot as plt

    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    importance = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=0, n_repeats=1)
    paths = write_plots(pred, importance, TaskType.BINARY, tmp_path / "plots")
    _assert_pngs(paths, {"confusion_matrix", "roc_curve", "pr_curve", "feature_importance"})
    assert plt.get_fignums() == []  # every figure closed


def test_write_plots_multiclass_and_regression(multiclass, regression, tmp_path):
    import matplotlib.pyplot as plt

    model, frame, y = multiclass
    pred = predict(model, frame, y, TaskType.MULTICLASS)
    empty = pd.DataFrame(columns=["feature", "importance_mean", "importance_std"])
    paths = write_plots(pred, empty, TaskType.MULTICLASS, tmp_path / "mc")
    _assert_pngs(paths, {"confusion_matrix", "roc_curve"})

    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    importance = permutation_importance_table(model, frame, y, TaskType.REGRESSION, seed=0, n_repeats=1)
    paths = write_plots(pred, importance, TaskType.REGRESSION, tmp_path / "reg")
    _assert_pngs(paths, {"residuals", "feature_importance"})
    assert plt.get_fignums() == []
