"""How closely an ONNX export reproduces scikit-learn, and the verdict the blessing gate uses.

:func:`check_parity` runs both on the same rows through the serving path;
:func:`parity_verdict` turns a conversion into a plain pass/fail with a
sentence. The evaluate stage wraps that verdict in its own gate check, so this
package does not depend on the stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.onnx.export import ConversionResult
    from tabpipe.serving_spec import ServingSpec


@dataclass(frozen=True)
class ParityResult:
    """How closely the ONNX model reproduces scikit-learn on the same rows.

    Attributes:
        n_rows: Rows compared.
        tolerance: The tolerance used (absolute for probabilities; relative and
            absolute for regression predictions).
        passed: Whether every row agreed within the tolerance.
        max_abs_proba_diff: Largest absolute probability difference (classification).
        mismatch_count: Rows whose predicted label differs. A mismatch fails the check
            unless scikit-learn's probabilities of the two labels are within the tolerance (a tie).
        max_abs_pred_diff: Largest absolute prediction difference (regression).
        max_rel_pred_diff: Largest relative prediction difference (regression).
    """

    n_rows: int
    tolerance: float
    passed: bool
    max_abs_proba_diff: float | None = None
    mismatch_count: int | None = None
    max_abs_pred_diff: float | None = None
    max_rel_pred_diff: float | None = None

    @property
    def detail(self) -> str:
        """One readable sentence with the numbers, for a gate check."""
        verdict = "within" if self.passed else "NOT within"
        if self.max_abs_proba_diff is not None:
            return (
                f"ONNX vs scikit-learn on {self.n_rows} rows: max |Δproba| {self.max_abs_proba_diff:.3g}, "
                f"{self.mismatch_count} label mismatch(es); {verdict} tolerance {self.tolerance:g}"
            )
        return (
            f"ONNX vs scikit-learn on {self.n_rows} rows: max |Δpred| {self.max_abs_pred_diff:.3g}, "
            f"max relative {self.max_rel_pred_diff:.3g}; {verdict} tolerance {self.tolerance:g}"
        )


@dataclass(frozen=True)
class ParityVerdict:
    """Whether a model's ONNX export may be served, with the reason.

    Attributes:
        passed: Whether the check passed.
        detail: A readable sentence with the numbers or the reason.
    """

    passed: bool
    detail: str


def check_parity(
    model: Any, onnx_bytes: bytes, frame: pd.DataFrame, spec: ServingSpec, tolerance: float = 1e-4
) -> ParityResult:
    """Run scikit-learn and the ONNX model on the same rows and compare.

    The ONNX side goes through :class:`~tabpipe.onnx.predictor.OnnxPredictor`
    with the columns built as the server builds them, so the check covers the
    serving path, not just the graph.

    Args:
        model: The fitted scikit-learn pipeline.
        onnx_bytes: Its conversion.
        frame: Rows to compare on (e.g. the test split); extra columns are ignored.
        spec: The serving spec.
        tolerance: Classification: absolute probability tolerance. Regression:
            ``|onnx - sklearn| <= tolerance * (1 + |sklearn|)`` (relative, absolute near 0).

    Returns:
        The differences and whether they are within the tolerance.
    """
    from tabpipe.onnx.predictor import OnnxPredictor, columns_from_frame

    names = [column.name for column in spec.inputs]
    features = frame[names]
    pred, proba = OnnxPredictor(onnx_bytes, spec).predict(columns_from_frame(features, spec))
    n = len(features)
    if spec.task.is_classification:
        expected = np.asarray(model.predict_proba(features), dtype=np.float64)
        expected_pred = np.asarray(model.predict(features))
        diff = float(np.max(np.abs(proba - expected))) if n else 0.0
        mismatched = np.flatnonzero(pred != expected_pred)
        classes = list(spec.classes)
        # A flipped label is explained only by a tie in scikit-learn's own probabilities.
        unexplained = [
            i
            for i in mismatched
            if abs(expected[i, classes.index(pred[i])] - expected[i, classes.index(expected_pred[i])])
            > tolerance
        ]
        passed = bool(diff <= tolerance and not unexplained)
        return ParityResult(
            n_rows=n,
            tolerance=tolerance,
            passed=passed,
            max_abs_proba_diff=diff,
            mismatch_count=len(mismatched),
        )
    expected = np.asarray(model.predict(features), dtype=np.float64)
    got = np.asarray(pred, dtype=np.float64)
    abs_diff = np.abs(got - expected)
    rel_diff = abs_diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    passed = bool(np.all(abs_diff <= tolerance * (1.0 + np.abs(expected))))
    return ParityResult(
        n_rows=n,
        tolerance=tolerance,
        passed=passed,
        max_abs_pred_diff=float(abs_diff.max()) if n else 0.0,
        max_rel_pred_diff=float(rel_diff.max()) if n else 0.0,
    )


def parity_verdict(
    model: Any,
    conversion: ConversionResult,
    frame: pd.DataFrame,
    spec: ServingSpec,
    tolerance: float = 1e-4,
    require_onnx: bool = False,
) -> ParityVerdict:
    """Whether the blessing gate's ``onnx parity`` check passes.

    A model without a conversion passes unless ``require_onnx``: it is served by
    the verified scikit-learn bundle. A converted model that disagrees with
    scikit-learn, or cannot run on the rows, fails, because serving would prefer
    the wrong graph.

    Args:
        model: The fitted scikit-learn pipeline.
        conversion: What :func:`~tabpipe.onnx.export.convert_bundle` returned for it.
        frame: Rows to compare on, e.g. the test split.
        spec: The serving spec.
        tolerance: See :func:`check_parity`.
        require_onnx: Fail when there is no ONNX model.

    Returns:
        The verdict and a sentence with the numbers or the reason.
    """
    if conversion.onnx_bytes is None:
        return ParityVerdict(
            passed=not require_onnx, detail=f"no ONNX model ({conversion.reason}); scikit-learn serves it"
        )
    try:
        parity = check_parity(model, conversion.onnx_bytes, frame, spec, tolerance)
    except Exception as exc:  # noqa: BLE001 (a graph that cannot run on the test rows fails the check)
        return ParityVerdict(
            passed=False, detail=f"ONNX model failed on the test rows: {type(exc).__name__}: {exc}"
        )
    return ParityVerdict(passed=parity.passed, detail=parity.detail)
