"""The blessing gate: thresholds, the champion comparison and extra checks."""

from __future__ import annotations

import json
import math

from evaluate_support import (
    eval_config,
)

from tabpipe.config import Metric
from tabpipe.stages.evaluate import (
    GateCheck,
    bless,
)


def test_bless_passes_without_champion():
    blessing = bless({"roc_auc": 0.953, "f1": 0.8}, eval_config(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9}), None)
    assert blessing.blessed and blessing.reasons == []
    assert [c.name for c in blessing.checks] == ["threshold roc_auc", "champion roc_auc"]
    assert blessing.checks[0].detail == "roc_auc 0.953 >= 0.900"
    assert blessing.checks[1].detail == "no champion yet"


def test_bless_fails_on_missed_threshold_with_named_reason():
    config = eval_config(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9, Metric.F1: 0.85})
    blessing = bless({"roc_auc": 0.95, "f1": 0.8}, config, None)
    assert not blessing.blessed
    assert len(blessing.reasons) == 1 and "f1" in blessing.reasons[0] and "0.850" in blessing.reasons[0]
    failed = [c for c in blessing.checks if not c.passed]
    assert [c.name for c in failed] == ["threshold f1"]


def test_bless_champion_tolerance():
    config = eval_config(Metric.ROC_AUC, tolerance=0.02)
    champion = {"roc_auc": 0.92}
    within = bless({"roc_auc": 0.91}, config, champion)
    assert within.blessed and "within tolerance" in within.checks[-1].detail
    boundary = bless({"roc_auc": 0.90}, config, champion)  # exactly 0.02 worse
    assert boundary.blessed
    beyond = bless({"roc_auc": 0.89}, config, champion)
    assert not beyond.blessed
    assert beyond.reasons == ["roc_auc 0.890 vs champion 0.920: 0.030 worse, beyond tolerance 0.020"]
    better = bless({"roc_auc": 0.99}, eval_config(Metric.ROC_AUC), champion)
    assert better.blessed and "not worse" in better.checks[-1].detail


def test_bless_lower_is_better_rmse():
    config = eval_config(Metric.RMSE, {Metric.RMSE: 2.0}, tolerance=0.1)
    assert bless({"rmse": 1.5}, config, {"rmse": 1.45}).blessed  # 0.05 worse, within 0.1
    higher = bless({"rmse": 1.7}, config, {"rmse": 1.5})  # 0.2 worse: a higher rmse is worse
    assert not higher.blessed and "beyond tolerance" in higher.reasons[0]
    assert bless({"rmse": 1.0}, config, {"rmse": 1.5}).blessed  # lower rmse is better
    over = bless({"rmse": 2.5}, config, None)
    assert not over.blessed and over.reasons == ["rmse 2.500 is above the threshold 2.000"]
    assert bless({"rmse": 2.0}, config, None).blessed  # <= is inclusive


def test_bless_nan_metric_fails():
    config = eval_config(Metric.ROC_AUC, {Metric.ROC_AUC: 0.5})
    blessing = bless({"roc_auc": math.nan}, config, {"roc_auc": 0.8})
    assert not blessing.blessed
    assert [c.passed for c in blessing.checks] == [False, False]
    assert "NaN" in blessing.reasons[0]
    missing = bless({}, config, None)
    assert not missing.blessed and "not computed" in missing.reasons[0]


def test_bless_close_values_print_differently():
    blessing = bless({"roc_auc": 0.89991}, eval_config(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9}), None)
    assert not blessing.blessed
    value, bound = blessing.reasons[0].removeprefix("roc_auc ").split(" is below the threshold ")
    assert value != bound


def test_bless_extra_checks_and_to_dict():
    parity = GateCheck("onnx parity", False, "max abs diff 0.2 > 1e-4")
    blessing = bless({"accuracy": 0.9}, eval_config(Metric.ACCURACY), None, extra_checks=[parity])
    assert not blessing.blessed
    assert blessing.checks[-1] is parity
    assert blessing.reasons == ["max abs diff 0.2 > 1e-4"]
    as_dict = json.loads(json.dumps(blessing.to_dict()))
    assert as_dict["blessed"] is False
    expected = {"name": "onnx parity", "passed": False, "detail": "max abs diff 0.2 > 1e-4"}
    assert as_dict["checks"][-1] == expected
    assert as_dict["reasons"] == blessing.reasons
