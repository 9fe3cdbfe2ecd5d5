"""Evaluate: score the candidate on the test split and decide whether to bless it.

Pure logic only: no KFP and no MLflow. The stage adapter moves artifacts and
logs what these functions return (plain, JSON-safe Python values and PNG files).

The candidate is *blessed* when it meets every configured threshold, is not
worse than the current champion on the primary metric by more than the
configured tolerance, and passes any extra checks (for example ONNX parity).
The register and deploy stages read the blessing; nothing is registered
without it.

Modules: :mod:`.predictions` (running the model), :mod:`.metrics` (metrics,
confusion matrix, ROC points), :mod:`.slices`, :mod:`.gate` (the blessing),
:mod:`.importance` (permutation importance), :mod:`.plots`, :mod:`.report` and
:mod:`.fingerprint` (of the test split, so a champion's recorded metrics can be reused).
"""

from tabpipe.stages.evaluate.fingerprint import (
    frame_fingerprint,
    model_row_hashes,
    row_hashes,
    training_row_set,
)
from tabpipe.stages.evaluate.gate import Blessing, GateCheck, bless
from tabpipe.stages.evaluate.importance import permutation_importance_table
from tabpipe.stages.evaluate.metrics import compute_metrics, confusion, roc_curve_points
from tabpipe.stages.evaluate.plots import write_plots
from tabpipe.stages.evaluate.predictions import Predictions, predict
from tabpipe.stages.evaluate.report import render_markdown
from tabpipe.stages.evaluate.slices import NULL_SLICE_VALUE, slice_metrics

__all__ = [
    "NULL_SLICE_VALUE",
    "Blessing",
    "GateCheck",
    "Predictions",
    "bless",
    "compute_metrics",
    "confusion",
    "frame_fingerprint",
    "model_row_hashes",
    "permutation_importance_table",
    "predict",
    "render_markdown",
    "roc_curve_points",
    "row_hashes",
    "slice_metrics",
    "training_row_set",
    "write_plots",
]
