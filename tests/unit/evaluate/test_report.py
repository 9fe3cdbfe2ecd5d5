"""The markdown report and the frozen blessing."""

from __future__ import annotations

import pytest
from evaluate_support import (
    eval_config,
)

from tabpipe.config import Metric
from tabpipe.stages.evaluate import (
    Blessing,
    bless,
    render_markdown,
)


def test_render_markdown_blessed_with_champion():
    metrics = {"roc_auc": 0.95, "f1": 0.81}
    blessing = bless(metrics, eval_config(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9}), {"roc_auc": 0.94})
    slices = [{"column": "region", "value": "a|b", "n": 12, "roc_auc": None, "f1": 0.5}]
    text = render_markdown(metrics, slices, blessing, {"roc_auc": 0.94})
    assert text.startswith("# Evaluation: BLESSED\n")
    assert "| metric | candidate | champion |" in text
    assert "| roc_auc | 0.950 | 0.940 |" in text
    assert "| f1 | 0.810 | n/a |" in text
    assert "| threshold roc_auc | pass | roc_auc 0.950 >= 0.900 |" in text
    assert "| region | a\\|b | 12 | n/a | 0.500 |" in text


def test_render_markdown_not_blessed_without_champion():
    metrics = {"rmse": 3.0}
    blessing = bless(metrics, eval_config(Metric.RMSE, {Metric.RMSE: 2.0}), None)
    text = render_markdown(metrics, [], blessing, None)
    assert text.startswith("# Evaluation: NOT BLESSED\n")
    assert "- rmse 3.000 is above the threshold 2.000" in text
    assert "| metric | candidate |\n" in text and "champion |" not in text.split("## Gate checks")[0]
    assert "| threshold rmse | FAIL |" in text
    assert "No slices." in text


def test_blessing_is_frozen():
    blessing = Blessing(blessed=True, checks=[])
    with pytest.raises(AttributeError):
        blessing.blessed = False  # type: ignore[misc]
