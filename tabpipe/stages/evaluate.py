"""Evaluate: score the candidate on the test split and decide whether to bless it.

Pure logic only: no KFP and no MLflow. The component layer moves artifacts and
logs what these functions return (plain, JSON-safe Python values and PNG files).

The candidate is *blessed* when it meets every configured threshold, is not
worse than the current champion on the primary metric by more than the
configured tolerance, and passes any extra checks (for example ONNX parity).
The register and deploy stages read the blessing; nothing is registered
without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.config import EvaluationConfig, Metric, TaskType

#: Slice value used for missing values, so they form their own slice.
NULL_SLICE_VALUE = "<null>"

#: Absolute slack in gate comparisons, so that e.g. 0.92 - 0.02 is "within 0.02" despite float rounding.
_GATE_EPSILON = 1e-12

#: Plots are for a UI thumbnail, not print.
_DPI = 100
_TOP_FEATURES = 20
_MAX_ANNOTATED_CLASSES = 20


@dataclass(frozen=True)
class Predictions:
    """A model's predictions on one data set, aligned with the true values.

    Attributes:
        y_true: True targets, shape (n,).
        y_pred: Predicted targets, shape (n,).
        proba: Class probabilities, shape (n, n_classes), for classifiers; None for regression.
        classes: Class labels in ``proba`` column order (the model's ``classes_``, sorted
            ascending by scikit-learn); empty for regression.

    """

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: list

    def subset(self, mask: np.ndarray) -> Predictions:
        """Return the predictions of the rows where ``mask`` is True."""
        return Predictions(
            y_true=self.y_true[mask],
            y_pred=self.y_pred[mask],
            proba=None if self.proba is None else self.proba[mask],
            classes=self.classes,
        )


def _plain(value: Any) -> Any:
    """Turn a numpy scalar into the equivalent Python value (JSON-safe); leave anything else."""
    return value.item() if isinstance(value, np.generic) else value


def predict(model: Any, features: pd.DataFrame, y_true: pd.Series, task: TaskType) -> Predictions:
    """Run a fitted model on raw features.

    Args:
        model: A fitted scikit-learn ``Pipeline`` taking the raw feature columns.
        features: Raw feature frame (named columns).
        y_true: True targets, one per row of ``features``.
        task: Learning task; classifiers must have ``predict_proba`` and ``classes_``.

    Returns:
        The predictions; for classifiers also the class probabilities.

    Raises:
        ValueError: ``features`` and ``y_true`` differ in length.

    """
    if len(features) != len(y_true):
        raise ValueError(f"features has {len(features)} rows but y_true has {len(y_true)}")
    y_pred = np.asarray(model.predict(features))
    if not task.is_classification:
        return Predictions(
            y_true=np.asarray(y_true, dtype=float),
            y_pred=y_pred.astype(float),
            proba=None,
            classes=[],
        )
    proba = np.asarray(model.predict_proba(features), dtype=float)
    classes = [_plain(c) for c in model.classes_]
    return Predictions(y_true=np.asarray(y_true), y_pred=y_pred, proba=proba, classes=classes)


def _positive_class(pred: Predictions) -> Any:
    """Return the positive class of a binary problem: the greater label, ``classes[-1]``.

    scikit-learn sorts ``classes_``, so this is "yes" for "no"/"yes", 1 for 0/1 and -1/1,
    True for booleans, and it is the class of ``proba[:, 1]``.
    """
    if len(pred.classes) != 2:
        raise ValueError(f"a binary task needs exactly 2 classes, the model has {len(pred.classes)}")
    return pred.classes[-1]


def _binary_roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, or NaN when y_true holds only one class (AUC is undefined then)."""
    from sklearn.metrics import roc_auc_score

    if is_positive.all() or not is_positive.any():
        return math.nan
    return float(roc_auc_score(is_positive, score))


def _ovr_macro_roc_auc(pred: Predictions) -> float:
    """One-vs-rest macro ROC AUC over the classes present in y_true.

    Equals ``roc_auc_score(multi_class="ovr", average="macro")`` when every class is present;
    classes absent from y_true (common in slices) are left out instead of making the score
    undefined. NaN when no class has both positives and negatives.
    """
    assert pred.proba is not None
    scores = [_binary_roc_auc(pred.y_true == label, pred.proba[:, k]) for k, label in enumerate(pred.classes)]
    defined = [s for s in scores if not math.isnan(s)]
    return float(np.mean(defined)) if defined else math.nan


def compute_metrics(pred: Predictions, task: TaskType) -> dict[str, float]:
    """Compute the task's metrics.

    Classification: accuracy, precision, recall, f1, roc_auc. For a binary task precision,
    recall and f1 are those of the positive class, which is ``classes[-1]`` (the greater label,
    e.g. "yes" over "no", 1 over -1), and roc_auc scores ``proba[:, 1]``. For a multiclass task
    they are macro averages and roc_auc is one-vs-rest macro. A ratio with a zero denominator
    is 0; roc_auc is NaN when y_true holds a single class.

    Regression: mae, rmse, r2. r2 is NaN when y_true is constant (it is undefined then).

    Args:
        pred: Predictions to score (at least one row).
        task: Learning task.

    Returns:
        ``{Metric value: float}``, plain Python floats (possibly NaN).

    Raises:
        ValueError: ``pred`` is empty, or a binary task's model does not have two classes.

    """
    from sklearn.metrics import (
        accuracy_score,
        mean_absolute_error,
        mean_squared_error,
        precision_recall_fscore_support,
    )

    if len(pred.y_true) == 0:
        raise ValueError("cannot compute metrics on zero rows")

    if not task.is_classification:
        y_true = pred.y_true.astype(float)
        y_pred = pred.y_pred.astype(float)
        ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
        ss_res = float(np.sum((y_true - y_pred) ** 2))
        return {
            Metric.MAE.value: float(mean_absolute_error(y_true, y_pred)),
            Metric.RMSE.value: float(math.sqrt(mean_squared_error(y_true, y_pred))),
            Metric.R2.value: 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        }

    if pred.proba is None:
        raise ValueError("classification metrics need class probabilities")
    if task is TaskType.BINARY:
        positive = _positive_class(pred)
        # labels=[positive] with average=None works on any subset (even one class only),
        # where average="binary" refuses some label sets.
        p, r, f, _ = precision_recall_fscore_support(
            pred.y_true, pred.y_pred, labels=[positive], average=None, zero_division=0
        )
        precision, recall, f1 = p[0], r[0], f[0]
        roc_auc = _binary_roc_auc(pred.y_true == positive, pred.proba[:, 1])
    else:
        precision, recall, f1, _ = precision_recall_fscore_support(
            pred.y_true, pred.y_pred, labels=pred.classes, average="macro", zero_division=0
        )
        roc_auc = _ovr_macro_roc_auc(pred)
    return {
        Metric.ACCURACY.value: float(accuracy_score(pred.y_true, pred.y_pred)),
        Metric.PRECISION.value: float(precision),
        Metric.RECALL.value: float(recall),
        Metric.F1.value: float(f1),
        Metric.ROC_AUC.value: float(roc_auc),
    }


def confusion(pred: Predictions) -> tuple[list[str], list[list[int]]]:
    """Compute the confusion matrix of a classifier.

    Args:
        pred: Classification predictions.

    Returns:
        ``(categories, matrix)``: class labels as strings in ``classes`` order, and counts with
        rows = true class and columns = predicted class.

    Raises:
        ValueError: ``pred`` has no classes (regression).

    """
    from sklearn.metrics import confusion_matrix

    if not pred.classes:
        raise ValueError("a confusion matrix needs classification predictions")
    matrix = confusion_matrix(pred.y_true, pred.y_pred, labels=pred.classes)
    return [str(c) for c in pred.classes], [[int(v) for v in row] for row in matrix]


def roc_curve_points(
    pred: Predictions, max_points: int = 200
) -> tuple[list[float], list[float], list[float]] | None:
    """Compute the ROC curve of a binary classifier for its positive class (``classes[-1]``).

    scikit-learn's first threshold is +inf (no row predicted positive). It is replaced by
    1.0, or by the maximum score + 1e-6 when a score reaches 1.0, so that it stays finite and
    still predicts no row positive.

    Args:
        pred: Binary classification predictions.
        max_points: Most points to keep (at least 2); the first and last are always kept.

    Returns:
        ``(fpr, tpr, thresholds)`` as plain floats, or None when the predictions are not binary
        or y_true holds a single class (the curve is undefined).

    """
    from sklearn.metrics import roc_curve

    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if pred.proba is None or len(pred.classes) != 2:
        return None
    is_positive = pred.y_true == pred.classes[-1]
    if is_positive.all() or not is_positive.any():
        return None
    score = pred.proba[:, 1]
    fpr, tpr, thresholds = roc_curve(is_positive, score)
    thresholds = thresholds.copy()
    thresholds[~np.isfinite(thresholds)] = max(1.0, float(score.max()) + 1e-6)
    if len(fpr) > max_points:
        # Evenly spaced indices keep the curve's shape and its monotone order.
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return [float(v) for v in fpr], [float(v) for v in tpr], [float(v) for v in thresholds]


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if v is None or math.isnan(v) else float(v)) for k, v in metrics.items()}


def slice_metrics(
    features: pd.DataFrame,
    pred: Predictions,
    task: TaskType,
    columns: Sequence[str],
    max_values: int,
) -> list[dict]:
    """Metrics per value of each slice column.

    For each column, its ``max_values`` most frequent values (ties broken by the value's
    string) each give one slice; missing values form the slice ``"<null>"``. Slices with
    fewer than 2 rows are skipped.

    Args:
        features: The feature frame ``pred`` was computed on (rows aligned by position).
        pred: Predictions on ``features``.
        task: Learning task.
        columns: Columns of ``features`` to slice on.
        max_values: Most values per column.

    Returns:
        One flat dict per slice: ``column``, ``value`` (str), ``n`` (rows) and the metrics of
        :func:`compute_metrics`, with undefined (NaN) metrics as None so it is JSON-safe.

    Raises:
        ValueError: a slice column is not in ``features``, or the lengths differ.

    """
    if len(features) != len(pred.y_true):
        raise ValueError(f"features has {len(features)} rows but the predictions have {len(pred.y_true)}")
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"slice column(s) not in the evaluation data: {missing}")

    out: list[dict] = []
    for column in columns:
        values = features[column]
        is_null = values.isna().to_numpy(dtype=bool)
        # (label, n, value); value None stands for the null slice.
        candidates: list[tuple[str, int, Any]] = [
            (str(_plain(v)), int(n), v) for v, n in values.value_counts(dropna=True).items()
        ]
        if is_null.any():
            candidates.append((NULL_SLICE_VALUE, int(is_null.sum()), None))
        candidates.sort(key=lambda item: (-item[1], item[0]))
        for label, n, value in candidates[:max_values]:
            if n < 2:
                continue
            mask = is_null if value is None else (values == value).fillna(False).to_numpy(dtype=bool)
            metrics = compute_metrics(pred.subset(mask), task)
            out.append({"column": column, "value": label, "n": n, **_json_safe(metrics)})
    return out


@dataclass(frozen=True)
class GateCheck:
    """One check of the blessing gate.

    Attributes:
        name: What was checked, e.g. ``"threshold roc_auc"``.
        passed: Whether it passed.
        detail: A readable sentence with the numbers, e.g. ``"roc_auc 0.953 >= 0.900"``.

    """

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Blessing:
    """The gate's verdict: blessed only when every check passed.

    Attributes:
        blessed: Whether the candidate may be registered and deployed.
        checks: Every check made, in order.

    """

    blessed: bool
    checks: list[GateCheck]

    def to_dict(self) -> dict:
        """JSON-safe form: ``blessed``, ``checks`` (name, passed, detail) and ``reasons``."""
        return {
            "blessed": self.blessed,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "reasons": self.reasons,
        }

    @property
    def reasons(self) -> list[str]:
        """Details of the failed checks (empty when blessed)."""
        return [c.detail for c in self.checks if not c.passed]


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:.3f}"
    return f"{value:.4g}"


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers so that different numbers never print the same."""
    sa, sb = _fmt(a), _fmt(b)
    digits = 4
    while sa == sb and a != b and digits <= 17:
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        digits += 1
    return sa, sb


def _threshold_check(metric: Metric, value: float | None, bound: float) -> GateCheck:
    name = f"threshold {metric.value}"
    if value is None:
        return GateCheck(name, False, f"{metric.value} was not computed (threshold {_fmt(bound)})")
    if math.isnan(value):
        return GateCheck(name, False, f"{metric.value} is undefined (NaN); threshold {_fmt(bound)}")
    v, b = _fmt_pair(value, bound)
    if metric.higher_is_better:
        passed = value >= bound - _GATE_EPSILON
        detail = f"{metric.value} {v} >= {b}" if passed else f"{metric.value} {v} is below the threshold {b}"
    else:
        passed = value <= bound + _GATE_EPSILON
        detail = f"{metric.value} {v} <= {b}" if passed else f"{metric.value} {v} is above the threshold {b}"
    return GateCheck(name, passed, detail)


def _champion_check(
    metric: Metric, value: float | None, champion_metrics: dict[str, float] | None, tolerance: float
) -> GateCheck:
    name = f"champion {metric.value}"
    if champion_metrics is None:
        return GateCheck(name, True, "no champion yet")
    if value is None or math.isnan(value):
        detail = f"candidate {metric.value} is undefined; cannot compare with the champion"
        return GateCheck(name, False, detail)
    champion = champion_metrics.get(metric.value)
    if champion is None or math.isnan(champion):
        # An older champion may predate this metric; there is nothing to be worse than.
        return GateCheck(name, True, f"champion has no {metric.value}; nothing to compare")
    # How much worse the candidate is, in the metric's own direction (negative = better).
    worse_by = champion - value if metric.higher_is_better else value - champion
    v, c = _fmt_pair(value, champion)
    head = f"{metric.value} {v} vs champion {c}"
    if worse_by <= 0:
        return GateCheck(name, True, f"{head}: not worse")
    passed = worse_by <= tolerance + _GATE_EPSILON
    verdict = "within" if passed else "beyond"
    return GateCheck(name, passed, f"{head}: {_fmt(worse_by)} worse, {verdict} tolerance {_fmt(tolerance)}")


def bless(
    metrics: dict[str, float],
    evaluation: EvaluationConfig,
    champion_metrics: dict[str, float] | None,
    extra_checks: Sequence[GateCheck] = (),
) -> Blessing:
    """Decide whether the candidate is blessed.

    Checks, in order: one per configured threshold (``>=`` for metrics where higher is better,
    ``<=`` for error metrics; a NaN or missing metric fails), then the champion check on the
    primary metric (the candidate may be worse than the champion by at most
    ``champion_tolerance``, an absolute difference in the metric's own direction; it passes
    with "no champion yet" when there is none), then ``extra_checks`` as given.

    Args:
        metrics: The candidate's metrics (:func:`compute_metrics`).
        evaluation: Thresholds, primary metric and tolerance.
        champion_metrics: The current champion's metrics, or None when there is no champion.
        extra_checks: Further checks to include, e.g. ONNX parity.

    Returns:
        The blessing, with every check and its detail.

    """
    checks = [
        _threshold_check(metric, metrics.get(metric.value), bound)
        for metric, bound in evaluation.thresholds.items()
    ]
    primary = evaluation.primary_metric
    checks.append(
        _champion_check(primary, metrics.get(primary.value), champion_metrics, evaluation.champion_tolerance)
    )
    checks.extend(extra_checks)
    return Blessing(blessed=all(c.passed for c in checks), checks=checks)


def permutation_importance_table(
    model: Any,
    features: pd.DataFrame,
    y_true: pd.Series,
    task: TaskType,
    seed: int,
    n_repeats: int = 3,
    max_rows: int = 2000,
) -> pd.DataFrame:
    """Permutation importance of the raw feature columns.

    The model pipeline does its own preprocessing, so whole raw columns are shuffled. Scoring
    is accuracy for classification and r2 for regression, which are defined on every task.
    At most ``max_rows`` rows are used, sampled with ``seed``.

    Args:
        model: A fitted scikit-learn pipeline taking the raw features.
        features: Raw feature frame.
        y_true: True targets, aligned by position with ``features``.
        task: Learning task.
        seed: Seed for the row sample and the shuffles.
        n_repeats: Shuffles per column.
        max_rows: Most rows to use.

    Returns:
        Columns ``feature``, ``importance_mean``, ``importance_std``; one row per feature,
        most important first.

    """
    from sklearn.inspection import permutation_importance

    if len(features) != len(y_true):
        raise ValueError(f"features has {len(features)} rows but y_true has {len(y_true)}")
    if len(features) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), size=max_rows, replace=False))
        features, y_true = features.iloc[rows], y_true.iloc[rows]
    result = permutation_importance(
        model,
        features,
        y_true,
        scoring="accuracy" if task.is_classification else "r2",
        n_repeats=n_repeats,
        random_state=seed,
        n_jobs=1,
    )
    table = pd.DataFrame(
        {
            "feature": [str(c) for c in features.columns],
            "importance_mean": result.importances_mean.astype(float),
            "importance_std": result.importances_std.astype(float),
        }
    )
    return table.sort_values(
        ["importance_mean", "feature"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def write_plots(
    pred: Predictions, importance: pd.DataFrame, task: TaskType, out_dir: Path
) -> dict[str, Path]:
    """Write the evaluation plots as small PNG files.

    Classification: ``confusion_matrix.png``; binary also ``roc_curve.png`` and
    ``pr_curve.png`` (when y_true holds both classes); multiclass also ``roc_curve.png`` with
    one one-vs-rest curve per class present. Regression: ``residuals.png`` (predicted vs
    actual). Always ``feature_importance.png`` (top 20) when ``importance`` has rows.

    Args:
        pred: Predictions to plot.
        importance: Table from :func:`permutation_importance_table`.
        task: Learning task.
        out_dir: Folder to write into (created if missing).

    Returns:
        ``{name: path}`` where name is the file's stem, e.g. ``"roc_curve"``.

    """
    import matplotlib

    matplotlib.use("Agg")  # headless: components run without a display
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def save(fig: Any, name: str) -> None:
        path = out_dir / f"{name}.png"
        try:
            fig.tight_layout()
            fig.savefig(path, dpi=_DPI)
        finally:
            plt.close(fig)
        written[name] = path

    if task.is_classification:
        save(_plot_confusion(plt, pred), "confusion_matrix")
        roc = _plot_roc(plt, pred, task)
        if roc is not None:
            save(roc, "roc_curve")
        if task is TaskType.BINARY:
            pr = _plot_pr(plt, pred)
            if pr is not None:
                save(pr, "pr_curve")
    else:
        save(_plot_residuals(plt, pred), "residuals")
    if len(importance) > 0:
        save(_plot_importance(plt, importance), "feature_importance")
    return written


def _plot_confusion(plt: Any, pred: Predictions) -> Any:
    categories, matrix = confusion(pred)
    k = len(categories)
    size = min(10.0, 3.0 + 0.4 * k)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    counts = np.array(matrix)
    image = ax.imshow(counts, cmap="Blues", vmin=0)  # vmin=0: shades compare counts, not their spread
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(k), labels=categories, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=categories)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    if k <= _MAX_ANNOTATED_CLASSES:
        half = counts.max() / 2 if counts.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if counts[i, j] > half else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    return fig


def _plot_roc(plt: Any, pred: Predictions, task: TaskType) -> Any | None:
    from sklearn.metrics import roc_curve

    assert pred.proba is not None
    curves: list[tuple[str, np.ndarray, np.ndarray]] = []
    if task is TaskType.BINARY:
        points = roc_curve_points(pred)
        if points is not None:
            auc = _binary_roc_auc(pred.y_true == pred.classes[-1], pred.proba[:, 1])
            curves.append((f"{pred.classes[-1]} (AUC {auc:.3f})", np.array(points[0]), np.array(points[1])))
    else:
        for k, label in enumerate(pred.classes):
            is_positive = pred.y_true == label
            if is_positive.all() or not is_positive.any():
                continue
            fpr, tpr, _ = roc_curve(is_positive, pred.proba[:, k])
            auc = _binary_roc_auc(is_positive, pred.proba[:, k])
            curves.append((f"{label} vs rest (AUC {auc:.3f})", fpr, tpr))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, fpr, tpr in curves:
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _plot_pr(plt: Any, pred: Predictions) -> Any | None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    assert pred.proba is not None
    is_positive = pred.y_true == pred.classes[-1]
    if is_positive.all() or not is_positive.any():
        return None
    precision, recall, _ = precision_recall_curve(is_positive, pred.proba[:, 1])
    ap = average_precision_score(is_positive, pred.proba[:, 1])
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(recall, precision, label=f"{pred.classes[-1]} (AP {ap:.3f})")
    ax.axhline(is_positive.mean(), linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curve")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def _plot_residuals(plt: Any, pred: Predictions) -> Any:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(pred.y_true, pred.y_pred, s=8, alpha=0.5)
    low = float(min(pred.y_true.min(), pred.y_pred.min()))
    high = float(max(pred.y_true.max(), pred.y_pred.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual")
    return fig


def _plot_importance(plt: Any, importance: pd.DataFrame) -> Any:
    top = importance.head(_TOP_FEATURES).iloc[::-1]  # barh draws bottom-up; most important on top
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.3 * len(top)))
    ax.barh(top["feature"].astype(str), top["importance_mean"], xerr=top["importance_std"], color="tab:blue")
    ax.set_xlabel("mean score drop when shuffled")
    ax.set_title("Permutation feature importance")
    return fig


def _cell(value: Any) -> str:
    """Format a markdown table cell: numbers rounded, undefined as n/a, pipes escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _fmt(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(
    metrics: dict[str, float],
    slices: list[dict],
    blessing: Blessing,
    champion_metrics: dict[str, float] | None,
) -> str:
    """Render the human-readable evaluation report shown in the KFP UI.

    Args:
        metrics: The candidate's metrics.
        slices: Output of :func:`slice_metrics`.
        blessing: Output of :func:`bless`.
        champion_metrics: The champion's metrics, or None (then no champion column).

    Returns:
        Markdown: a BLESSED / NOT BLESSED headline, then metrics, gate checks and slices tables.

    """
    verdict = "BLESSED" if blessing.blessed else "NOT BLESSED"
    lines = [f"# Evaluation: {verdict}", ""]
    if not blessing.blessed:
        lines += ["Failed checks:", ""] + [f"- {_cell(r)}" for r in blessing.reasons] + [""]

    lines += ["## Metrics", ""]
    if champion_metrics is None:
        lines += _table(["metric", "candidate"], [[k, v] for k, v in metrics.items()])
    else:
        lines += _table(
            ["metric", "candidate", "champion"],
            [[k, v, champion_metrics.get(k)] for k, v in metrics.items()],
        )

    lines += ["", "## Gate checks", ""]
    lines += _table(
        ["check", "result", "detail"],
        [[c.name, "pass" if c.passed else "FAIL", c.detail] for c in blessing.checks],
    )

    lines += ["", "## Slices", ""]
    if not slices:
        lines.append("No slices.")
    else:
        metric_keys: list[str] = []
        for row in slices:
            for key in row:
                if key not in ("column", "value", "n") and key not in metric_keys:
                    metric_keys.append(key)
        header = ["column", "value", "n", *metric_keys]
        lines += _table(header, [[row.get(k) for k in header] for row in slices])
    return "\n".join(lines) + "\n"
