"""Unit tests of the evaluate stage's pure logic, on small real sklearn pipelines."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tabpipe.config import EvaluationConfig, Metric, TaskType
from tabpipe.stages.evaluate import (
    NULL_SLICE_VALUE,
    Blessing,
    GateCheck,
    Predictions,
    bless,
    compute_metrics,
    confusion,
    permutation_importance_table,
    predict,
    render_markdown,
    roc_curve_points,
    slice_metrics,
    write_plots,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
REGRESSION_KEYS = {"mae", "rmse", "r2"}


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Two informative numeric features, one pure-noise feature, and a slice column with nulls."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    region[rng.random(n) < 0.1] = None
    return pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "region": region,
        }
    )


def _pipeline(estimator) -> Pipeline:
    # The model only uses the numeric columns; "region" is there to slice on.
    pre = ColumnTransformer([("num", StandardScaler(), ["x1", "x2", "noise"])], remainder="drop")
    return Pipeline([("pre", pre), ("model", estimator)])


def _binary_target(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logit = 2.0 * frame["x1"] - 1.5 * frame["x2"] + rng.normal(scale=1.0, size=len(frame))
    return (logit > 0).to_numpy()


@pytest.fixture(scope="module")
def binary_str():
    frame = _frame(400, 0)
    y = pd.Series(np.where(_binary_target(frame, 1), "yes", "no"), name="target")
    model = _pipeline(LogisticRegression()).fit(frame, y)
    return model, frame, y


@pytest.fixture(scope="module")
def binary_pm1():
    frame = _frame(400, 2)
    y = pd.Series(np.where(_binary_target(frame, 3), 1, -1), name="target")
    model = _pipeline(LogisticRegression()).fit(frame, y)
    return model, frame, y


@pytest.fixture(scope="module")
def multiclass():
    frame = _frame(450, 4)
    score = frame["x1"] + 0.3 * np.random.default_rng(5).normal(size=len(frame))
    y = pd.Series(np.select([score < -0.5, score < 0.5], ["a", "b"], "c"), name="target")
    model = _pipeline(LogisticRegression()).fit(frame, y)
    return model, frame, y


@pytest.fixture(scope="module")
def regression():
    frame = _frame(300, 6)
    rng = np.random.default_rng(7)
    y = pd.Series(3.0 * frame["x1"] - 2.0 * frame["x2"] + rng.normal(scale=0.5, size=len(frame)), name="y")
    model = _pipeline(LinearRegression()).fit(frame, y)
    return model, frame, y


def _all_plain_floats(metrics: dict) -> bool:
    return all(type(v) is float for v in metrics.values())


# ---------------------------------------------------------------- predict


def test_predict_binary_string_labels(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    assert pred.classes == ["no", "yes"]
    assert all(type(c) is str for c in pred.classes)
    assert pred.proba is not None and pred.proba.shape == (len(frame), 2)
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0)
    assert set(pred.y_pred) <= {"no", "yes"}
    # predict's labels agree with the probability columns
    np.testing.assert_array_equal(pred.y_pred, np.array(pred.classes)[pred.proba.argmax(axis=1)])


def test_predict_regression_has_no_proba(regression):
    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    assert pred.proba is None and pred.classes == []
    assert pred.y_pred.shape == (len(frame),)


def test_predict_rejects_misaligned_lengths(binary_str):
    model, frame, y = binary_str
    with pytest.raises(ValueError, match="rows"):
        predict(model, frame, y.iloc[:-1], TaskType.BINARY)


# ---------------------------------------------------------------- compute_metrics


def _by_hand_binary(y_true: np.ndarray, y_pred: np.ndarray, positive) -> tuple[float, float, float, float]:
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p == positive)
    fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != positive and p == positive)
    fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p != positive)
    accuracy = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p) / len(y_true)
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    return accuracy, precision, recall, f1


def test_binary_string_metrics_match_hand_computation(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert set(metrics) == CLASSIFICATION_KEYS and _all_plain_floats(metrics)
    accuracy, precision, recall, f1 = _by_hand_binary(pred.y_true, pred.y_pred, "yes")
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(pred.y_true == "yes", pred.proba[:, 1]))
    assert 0.8 < metrics["roc_auc"] <= 1.0  # the signal is strong


def test_binary_minus_one_one_positive_is_one(binary_pm1):
    model, frame, y = binary_pm1
    pred = predict(model, frame, y, TaskType.BINARY)
    assert pred.classes == [-1, 1] and all(type(c) is int for c in pred.classes)
    metrics = compute_metrics(pred, TaskType.BINARY)
    accuracy, precision, recall, f1 = _by_hand_binary(pred.y_true, pred.y_pred, 1)
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(pred.y_true == 1, pred.proba[:, 1]))


def test_perfect_binary_predictor_scores_one():
    y = np.array(["no", "yes", "yes", "no", "yes"])
    score = np.array([0.1, 0.9, 0.8, 0.3, 0.6])
    pred = Predictions(y, y.copy(), np.column_stack([1 - score, score]), ["no", "yes"])
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert metrics == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "roc_auc": 1.0}


def test_roc_auc_is_nan_when_one_class_present():
    y = np.array(["yes", "yes", "yes"])
    y_pred = np.array(["yes", "no", "yes"])
    score = np.array([0.9, 0.4, 0.7])
    pred = Predictions(y, y_pred, np.column_stack([1 - score, score]), ["no", "yes"])
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert math.isnan(metrics["roc_auc"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["precision"] == 1.0 and metrics["recall"] == pytest.approx(2 / 3)


def test_zero_division_gives_zero():
    # Nothing predicted positive and nothing positive: precision, recall, f1 are 0/0 -> 0.
    y = np.array(["no", "no"])
    pred = Predictions(y, y.copy(), np.array([[0.8, 0.2], [0.7, 0.3]]), ["no", "yes"])
    metrics = compute_metrics(pred, TaskType.BINARY)
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["accuracy"] == 1.0


def test_multiclass_macro_metrics(multiclass):
    model, frame, y = multiclass
    pred = predict(model, frame, y, TaskType.MULTICLASS)
    assert pred.classes == ["a", "b", "c"]
    metrics = compute_metrics(pred, TaskType.MULTICLASS)
    assert set(metrics) == CLASSIFICATION_KEYS and _all_plain_floats(metrics)
    per_class = [_by_hand_binary(pred.y_true, pred.y_pred, c) for c in pred.classes]
    assert metrics["accuracy"] == pytest.approx(np.mean(pred.y_true == pred.y_pred))
    assert metrics["precision"] == pytest.approx(np.mean([p for _, p, _, _ in per_class]))
    assert metrics["recall"] == pytest.approx(np.mean([r for _, _, r, _ in per_class]))
    assert metrics["f1"] == pytest.approx(np.mean([f for _, _, _, f in per_class]))
    expected_auc = roc_auc_score(
        pred.y_true, pred.proba, multi_class="ovr", average="macro", labels=pred.classes
    )
    assert metrics["roc_auc"] == pytest.approx(expected_auc)


def test_multiclass_roc_auc_averages_present_classes():
    # Class "c" is absent from y_true: ovr AUC averages over "a" and "b" only.
    y = np.array(["a", "a", "b", "b"])
    proba = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1]])
    pred = Predictions(y, np.array(["a", "b", "b", "b"]), proba, ["a", "b", "c"])
    metrics = compute_metrics(pred, TaskType.MULTICLASS)
    auc_a = roc_auc_score(y == "a", proba[:, 0])
    auc_b = roc_auc_score(y == "b", proba[:, 1])
    assert metrics["roc_auc"] == pytest.approx((auc_a + auc_b) / 2)


def test_regression_metrics_match_formulas(regression):
    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    metrics = compute_metrics(pred, TaskType.REGRESSION)
    assert set(metrics) == REGRESSION_KEYS and _all_plain_floats(metrics)
    err = pred.y_true - pred.y_pred
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    r2 = 1 - np.sum(err**2) / np.sum((pred.y_true - pred.y_true.mean()) ** 2)
    assert metrics["r2"] == pytest.approx(r2)
    assert metrics["r2"] > 0.9


def test_regression_small_example_and_constant_target():
    pred = Predictions(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0]), None, [])
    metrics = compute_metrics(pred, TaskType.REGRESSION)
    assert metrics["mae"] == pytest.approx(1.0)  # |1-2| + 0 + |4-2| = 3, / 3
    assert metrics["rmse"] == pytest.approx(math.sqrt(5 / 3))
    constant = Predictions(np.array([3.0, 3.0]), np.array([3.0, 2.0]), None, [])
    assert math.isnan(compute_metrics(constant, TaskType.REGRESSION)["r2"])


def test_compute_metrics_rejects_empty():
    empty = Predictions(np.array([]), np.array([]), None, [])
    with pytest.raises(ValueError, match="zero rows"):
        compute_metrics(empty, TaskType.REGRESSION)


# ---------------------------------------------------------------- confusion


def test_confusion_small_example():
    y_true = np.array(["a", "b", "a"])
    y_pred = np.array(["a", "a", "b"])
    pred = Predictions(y_true, y_pred, np.full((3, 2), 0.5), ["a", "b"])
    categories, matrix = confusion(pred)
    assert categories == ["a", "b"]
    assert matrix == [[1, 1], [1, 0]]  # rows true, columns predicted


def test_confusion_sums_to_n(multiclass, binary_pm1):
    for (model, frame, y), task in ((multiclass, TaskType.MULTICLASS), (binary_pm1, TaskType.BINARY)):
        pred = predict(model, frame, y, task)
        categories, matrix = confusion(pred)
        assert categories == [str(c) for c in pred.classes]
        assert sum(map(sum, matrix)) == len(frame)
        assert all(type(v) is int for row in matrix for v in row)
        diagonal = sum(matrix[i][i] for i in range(len(matrix)))
        assert diagonal == int(np.sum(pred.y_true == pred.y_pred))
    json.dumps(matrix)


def test_confusion_rejects_regression():
    with pytest.raises(ValueError, match="classification"):
        confusion(Predictions(np.array([1.0]), np.array([1.0]), None, []))


# ---------------------------------------------------------------- roc_curve_points


def test_roc_curve_points_finite_and_thinned(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    full = roc_curve_points(pred, max_points=10_000)
    thin = roc_curve_points(pred, max_points=10)
    assert full is not None and thin is not None
    assert len(full[0]) > 10
    for fpr, tpr, thresholds in (full, thin):
        assert len(fpr) == len(tpr) == len(thresholds)
        assert all(math.isfinite(t) for t in thresholds)
        assert all(type(v) is float for v in fpr + tpr + thresholds)
        assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
        assert fpr == sorted(fpr) and tpr == sorted(tpr)
        assert thresholds == sorted(thresholds, reverse=True)
    assert len(thin[0]) <= 10
    # The +inf first threshold becomes 1.0 (no score reaches 1.0 here).
    assert full[2][0] == 1.0
    json.dumps(full)


def test_roc_first_threshold_above_a_score_of_one():
    y = np.array([0, 1, 1, 0])
    score = np.array([0.2, 1.0, 0.7, 0.4])
    pred = Predictions(y, (score > 0.5).astype(int), np.column_stack([1 - score, score]), [0, 1])
    _, _, thresholds = roc_curve_points(pred)
    assert math.isfinite(thresholds[0]) and thresholds[0] > 1.0


def test_roc_curve_points_none_when_not_binary(multiclass, regression):
    model, frame, y = multiclass
    assert roc_curve_points(predict(model, frame, y, TaskType.MULTICLASS)) is None
    model, frame, y = regression
    assert roc_curve_points(predict(model, frame, y, TaskType.REGRESSION)) is None
    one_class = Predictions(np.array([1, 1]), np.array([1, 1]), np.array([[0.2, 0.8], [0.3, 0.7]]), [0, 1])
    assert roc_curve_points(one_class) is None


# ---------------------------------------------------------------- slice_metrics


def test_slice_metrics_equal_metrics_on_subset(binary_str):
    model, frame, y = binary_str
    pred = predict(model, frame, y, TaskType.BINARY)
    slices = slice_metrics(frame, pred, TaskType.BINARY, ["region"], max_values=10)
    by_value = {s["value"]: s for s in slices}
    assert set(by_value) == {"north", "south", "east", NULL_SLICE_VALUE}
    assert sum(s["n"] for s in slices) == len(frame)
    for value, row in by_value.items():
        mask = frame["region"].isna() if value == NULL_SLICE_VALUE else frame["region"] == value
        sub = frame[mask]
        expected = compute_metrics(predict(model, sub, y[mask], TaskType.BINARY), TaskType.BINARY)
        assert row["column"] == "region" and row["n"] == len(sub)
        for key, v in expected.items():
            assert row[key] == pytest.approx(v)
    # Most frequent value first.
    assert slices[0]["value"] == "north"
    json.dumps(slices, allow_nan=False)


def test_slice_metrics_limits_values_and_skips_tiny_slices():
    features = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"], "h": [1] * 11})
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    score = np.linspace(0.05, 0.95, 11)
    pred = Predictions(y, (score > 0.5).astype(int), np.column_stack([1 - score, score]), [0, 1])
    limited = slice_metrics(features, pred, TaskType.BINARY, ["g"], max_values=2)
    assert [(s["value"], s["n"]) for s in limited] == [("a", 5), ("b", 3)]
    everything = slice_metrics(features, pred, TaskType.BINARY, ["g", "h"], max_values=10)
    # "d" has one row: skipped; "h" has one value: the whole set.
    assert [(s["column"], s["value"]) for s in everything] == [("g", "a"), ("g", "b"), ("g", "c"), ("h", "1")]
    assert everything[-1]["accuracy"] == pytest.approx(compute_metrics(pred, TaskType.BINARY)["accuracy"])


def test_slice_metrics_undefined_metric_is_none():
    features = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    y = np.array(["yes", "yes", "no", "yes"])  # slice "a" has one class only
    score = np.array([0.9, 0.6, 0.2, 0.7])
    proba = np.column_stack([1 - score, score])
    pred = Predictions(y, np.where(score > 0.5, "yes", "no"), proba, ["no", "yes"])
    slices = slice_metrics(features, pred, TaskType.BINARY, ["g"], max_values=5)
    by_value = {s["value"]: s for s in slices}
    assert by_value["a"]["roc_auc"] is None
    assert by_value["b"]["roc_auc"] == 1.0
    json.dumps(slices, allow_nan=False)


def test_slice_metrics_regression_and_unknown_column(regression):
    model, frame, y = regression
    pred = predict(model, frame, y, TaskType.REGRESSION)
    slices = slice_metrics(frame, pred, TaskType.REGRESSION, ["region"], max_values=3)
    assert len(slices) == 3 and all(set(s) == {"column", "value", "n", *REGRESSION_KEYS} for s in slices)
    with pytest.raises(ValueError, match="nope"):
        slice_metrics(frame, pred, TaskType.REGRESSION, ["nope"], max_values=3)


# ---------------------------------------------------------------- bless


def _eval(primary: Metric, thresholds: dict | None = None, tolerance: float = 0.0) -> EvaluationConfig:
    return EvaluationConfig(primary_metric=primary, thresholds=thresholds or {}, champion_tolerance=tolerance)


def test_bless_passes_without_champion():
    blessing = bless({"roc_auc": 0.953, "f1": 0.8}, _eval(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9}), None)
    assert blessing.blessed and blessing.reasons == []
    assert [c.name for c in blessing.checks] == ["threshold roc_auc", "champion roc_auc"]
    assert blessing.checks[0].detail == "roc_auc 0.953 >= 0.900"
    assert blessing.checks[1].detail == "no champion yet"


def test_bless_fails_on_missed_threshold_with_named_reason():
    config = _eval(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9, Metric.F1: 0.85})
    blessing = bless({"roc_auc": 0.95, "f1": 0.8}, config, None)
    assert not blessing.blessed
    assert len(blessing.reasons) == 1 and "f1" in blessing.reasons[0] and "0.850" in blessing.reasons[0]
    failed = [c for c in blessing.checks if not c.passed]
    assert [c.name for c in failed] == ["threshold f1"]


def test_bless_champion_tolerance():
    config = _eval(Metric.ROC_AUC, tolerance=0.02)
    champion = {"roc_auc": 0.92}
    within = bless({"roc_auc": 0.91}, config, champion)
    assert within.blessed and "within tolerance" in within.checks[-1].detail
    boundary = bless({"roc_auc": 0.90}, config, champion)  # exactly 0.02 worse
    assert boundary.blessed
    beyond = bless({"roc_auc": 0.89}, config, champion)
    assert not beyond.blessed
    assert beyond.reasons == ["roc_auc 0.890 vs champion 0.920: 0.030 worse, beyond tolerance 0.020"]
    better = bless({"roc_auc": 0.99}, _eval(Metric.ROC_AUC), champion)
    assert better.blessed and "not worse" in better.checks[-1].detail


def test_bless_lower_is_better_rmse():
    config = _eval(Metric.RMSE, {Metric.RMSE: 2.0}, tolerance=0.1)
    assert bless({"rmse": 1.5}, config, {"rmse": 1.45}).blessed  # 0.05 worse, within 0.1
    higher = bless({"rmse": 1.7}, config, {"rmse": 1.5})  # 0.2 worse: a higher rmse is worse
    assert not higher.blessed and "beyond tolerance" in higher.reasons[0]
    assert bless({"rmse": 1.0}, config, {"rmse": 1.5}).blessed  # lower rmse is better
    over = bless({"rmse": 2.5}, config, None)
    assert not over.blessed and over.reasons == ["rmse 2.500 is above the threshold 2.000"]
    assert bless({"rmse": 2.0}, config, None).blessed  # <= is inclusive


def test_bless_nan_metric_fails():
    config = _eval(Metric.ROC_AUC, {Metric.ROC_AUC: 0.5})
    blessing = bless({"roc_auc": math.nan}, config, {"roc_auc": 0.8})
    assert not blessing.blessed
    assert [c.passed for c in blessing.checks] == [False, False]
    assert "NaN" in blessing.reasons[0]
    missing = bless({}, config, None)
    assert not missing.blessed and "not computed" in missing.reasons[0]


def test_bless_close_values_print_differently():
    blessing = bless({"roc_auc": 0.89991}, _eval(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9}), None)
    assert not blessing.blessed
    value, bound = blessing.reasons[0].removeprefix("roc_auc ").split(" is below the threshold ")
    assert value != bound


def test_bless_extra_checks_and_to_dict():
    parity = GateCheck("onnx parity", False, "max abs diff 0.2 > 1e-4")
    blessing = bless({"accuracy": 0.9}, _eval(Metric.ACCURACY), None, extra_checks=[parity])
    assert not blessing.blessed
    assert blessing.checks[-1] is parity
    assert blessing.reasons == ["max abs diff 0.2 > 1e-4"]
    as_dict = json.loads(json.dumps(blessing.to_dict()))
    assert as_dict["blessed"] is False
    expected = {"name": "onnx parity", "passed": False, "detail": "max abs diff 0.2 > 1e-4"}
    assert as_dict["checks"][-1] == expected
    assert as_dict["reasons"] == blessing.reasons


# ---------------------------------------------------------------- permutation importance


def test_permutation_importance_ranks_informative_features(binary_str):
    model, frame, y = binary_str
    table = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=0, n_repeats=3)
    assert list(table.columns) == ["feature", "importance_mean", "importance_std"]
    assert set(table["feature"]) == set(frame.columns)
    assert table["importance_mean"].is_monotonic_decreasing
    assert set(table["feature"].iloc[:2]) == {"x1", "x2"}
    # The model ignores "region": shuffling it changes nothing.
    assert table.set_index("feature").loc["region", "importance_mean"] == 0.0
    again = permutation_importance_table(model, frame, y, TaskType.BINARY, seed=0, n_repeats=3)
    pd.testing.assert_frame_equal(table, again)


def test_permutation_importance_samples_rows_for_regression(regression):
    model, frame, y = regression
    table = permutation_importance_table(
        model, frame, y, TaskType.REGRESSION, seed=1, n_repeats=2, max_rows=50
    )
    assert table["feature"].iloc[0] == "x1"  # coefficient 3 beats 2
    assert table["importance_mean"].is_monotonic_decreasing


# ---------------------------------------------------------------- plots


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


# ---------------------------------------------------------------- markdown


def test_render_markdown_blessed_with_champion():
    metrics = {"roc_auc": 0.95, "f1": 0.81}
    blessing = bless(metrics, _eval(Metric.ROC_AUC, {Metric.ROC_AUC: 0.9}), {"roc_auc": 0.94})
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
    blessing = bless(metrics, _eval(Metric.RMSE, {Metric.RMSE: 2.0}), None)
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
