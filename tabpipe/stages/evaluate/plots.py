"""The evaluation plots: small PNG files for a UI thumbnail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabpipe.config import TaskType
from tabpipe.stages.evaluate.metrics import binary_roc_auc, confusion, roc_curve_points
from tabpipe.stages.evaluate.predictions import Predictions

#: Plots are for a UI thumbnail, not print.
_DPI = 100
_TOP_FEATURES = 20
_MAX_ANNOTATED_CLASSES = 20


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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def save(fig: Any, name: str) -> None:
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=_DPI)
        written[name] = path

    if task.is_classification:
        save(_plot_confusion(pred), "confusion_matrix")
        roc = _plot_roc(pred, task)
        if roc is not None:
            save(roc, "roc_curve")
        if task is TaskType.BINARY:
            pr = _plot_pr(pred)
            if pr is not None:
                save(pr, "pr_curve")
    else:
        save(_plot_residuals(pred), "residuals")
    if len(importance) > 0:
        save(_plot_importance(importance), "feature_importance")
    return written


def _subplots(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure with one axes, drawn by Agg without pyplot: headless, and no global figure to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _plot_confusion(pred: Predictions) -> Any:
    categories, matrix = confusion(pred)
    k = len(categories)
    size = min(10.0, 3.0 + 0.4 * k)
    fig, ax = _subplots(figsize=(size + 1, size))
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


def _plot_roc(pred: Predictions, task: TaskType) -> Any | None:
    from sklearn.metrics import roc_curve

    assert pred.proba is not None
    curves: list[tuple[str, np.ndarray, np.ndarray]] = []
    if task is TaskType.BINARY:
        points = roc_curve_points(pred)
        if points is not None:
            auc = binary_roc_auc(pred.y_true == pred.classes[-1], pred.proba[:, 1])
            curves.append((f"{pred.classes[-1]} (AUC {auc:.3f})", np.array(points[0]), np.array(points[1])))
    else:
        for k, label in enumerate(pred.classes):
            is_positive = pred.y_true == label
            if is_positive.all() or not is_positive.any():
                continue
            fpr, tpr, _ = roc_curve(is_positive, pred.proba[:, k])
            auc = binary_roc_auc(is_positive, pred.proba[:, k])
            curves.append((f"{label} vs rest (AUC {auc:.3f})", fpr, tpr))
    if not curves:
        return None
    fig, ax = _subplots(figsize=(5, 4.5))
    for label, fpr, tpr in curves:
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _plot_pr(pred: Predictions) -> Any | None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    assert pred.proba is not None
    is_positive = pred.y_true == pred.classes[-1]
    if is_positive.all() or not is_positive.any():
        return None
    precision, recall, _ = precision_recall_curve(is_positive, pred.proba[:, 1])
    ap = average_precision_score(is_positive, pred.proba[:, 1])
    fig, ax = _subplots(figsize=(5, 4.5))
    ax.plot(recall, precision, label=f"{pred.classes[-1]} (AP {ap:.3f})")
    ax.axhline(is_positive.mean(), linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curve")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def _plot_residuals(pred: Predictions) -> Any:
    fig, ax = _subplots(figsize=(5, 4.5))
    ax.scatter(pred.y_true, pred.y_pred, s=8, alpha=0.5)
    low = float(min(pred.y_true.min(), pred.y_pred.min()))
    high = float(max(pred.y_true.max(), pred.y_pred.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual")
    return fig


def _plot_importance(importance: pd.DataFrame) -> Any:
    top = importance.head(_TOP_FEATURES).iloc[::-1]  # barh draws bottom-up; most important on top
    fig, ax = _subplots(figsize=(6, 1.5 + 0.3 * len(top)))
    ax.barh(top["feature"].astype(str), top["importance_mean"], xerr=top["importance_std"], color="tab:blue")
    ax.set_xlabel("mean score drop when shuffled")
    ax.set_title("Permutation feature importance")
    return fig
