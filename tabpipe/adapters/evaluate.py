"""Evaluate adapter: test metrics, slices, plots and the blessing gate (thresholds, champion, ONNX parity)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabpipe.adapters.files import PathLike, read_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig

#: The gate check that compares the ONNX export with scikit-learn.
ONNX_PARITY_CHECK = "onnx parity"


@dataclass(frozen=True)
class EvaluateInputs:
    """The trained model's files with their recorded checksums, and the clean test split."""

    model: PathLike
    model_sha256: str
    mlflow_run_id: str
    test: PathLike
    onnx_model: PathLike
    onnx_sha256: str | None


@dataclass(frozen=True)
class EvaluateOutputs:
    """Where the Markdown report and the blessing record go."""

    report_markdown: PathLike
    blessing_json: PathLike


@dataclass
class EvaluateResult:
    """What evaluate produced, for the component to publish."""

    metrics: dict[str, float]
    blessed: bool
    reasons: list[str]
    confusion: tuple[list[str], list[list[int]]] | None
    roc: tuple[list[float], list[float], list[float]] | None
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    slices: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        """The blessing artifact's metadata, keyed by :class:`tabpipe.artifacts.Meta`."""
        return {
            Meta.BLESSED: self.blessed,
            Meta.REASONS: self.reasons,
            Meta.CHAMPION_VERSION: self.champion_version or "",
        }


def _onnx_conversion(inputs: EvaluateInputs) -> Any:
    """The ONNX export train recorded, verified against its checksum (or the fact there is none)."""
    from tabpipe.errors import ArtifactIntegrityError
    from tabpipe.io import sha256_file
    from tabpipe.onnx.export import ConversionResult

    if not inputs.onnx_sha256:
        return ConversionResult(None, "train recorded no ONNX model", {})
    if sha256_file(inputs.onnx_model) != inputs.onnx_sha256:
        raise ArtifactIntegrityError("evaluate: model.onnx does not match its recorded sha256")
    return ConversionResult(Path(inputs.onnx_model).read_bytes(), None, {})


def _champion_rows(champion: Any) -> str | None:
    """Which test rows the champion was compared on, as a phrase for the gate and the report."""
    if champion is None:
        return None
    if champion.skipped is not None:
        return f"no rows: {champion.skipped}"
    if champion.mask is None and champion.rows == 0:
        return "its own test split (recorded metrics)"
    if champion.mask is None:
        return f"all {champion.test_rows} test rows"
    return f"{champion.rows} of {champion.test_rows} test rows it was not trained on"


def run(
    config: PipelineConfig, tracking_uri: str, inputs: EvaluateInputs, out: EvaluateOutputs
) -> EvaluateResult:
    """Score the model on the test split, compare it with the champion, and decide the blessing."""
    from tabpipe.champion import champion_score
    from tabpipe.features import split_xy
    from tabpipe.io import write_atomic
    from tabpipe.modelio import load_model
    from tabpipe.onnx.parity import parity_verdict
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.stages import evaluate as ev
    from tabpipe.tracking import log_evaluation

    fitted = load_model(inputs.model, inputs.model_sha256)
    test_frame = read_frame(inputs.test)
    features, target = split_xy(test_frame, config)
    task = config.task
    pred = ev.predict(fitted, features, target, task)
    metrics = ev.compute_metrics(pred, task)
    slices = ev.slice_metrics(
        test_frame, pred, task, config.evaluation.slices, config.evaluation.max_slice_values
    )
    fingerprint = ev.frame_fingerprint(test_frame)

    def score(model: Any, rows: Any | None) -> dict[str, float]:
        x, y = (features, target) if rows is None else (features[rows], target[rows])
        return ev.compute_metrics(ev.predict(model, x, y, task), task)

    champion = champion_score(
        tracking_uri,
        config.registry.model_name,
        score,
        ev.model_row_hashes(test_frame, config),
        fingerprint,
        tuple(metrics),
        min_rows=config.evaluation.champion_min_rows,
    )
    champion_metrics = champion.metrics if champion else None
    # The candidate is compared on the champion's rows; its full-split metrics stay for thresholds.
    comparison = None
    if champion is not None and champion.mask is not None and champion.skipped is None:
        comparison = score(fitted, champion.mask)
    champion_rows = _champion_rows(champion)
    spec = build_serving_spec(config, list(getattr(fitted, "classes_", [])), inputs.model_sha256)
    verdict = parity_verdict(
        fitted,
        _onnx_conversion(inputs),
        test_frame,
        spec,
        tolerance=config.evaluation.onnx_parity_tolerance,
        require_onnx=config.evaluation.require_onnx,
    )
    parity = ev.GateCheck(ONNX_PARITY_CHECK, verdict.passed, verdict.detail)
    blessing = ev.bless(
        metrics,
        config.evaluation,
        champion_metrics,
        extra_checks=[parity],
        comparison_metrics=comparison,
        champion_rows=champion_rows,
        champion_skipped=champion.skipped if champion else None,
    )
    importance = ev.permutation_importance_table(fitted, features, target, task, seed=config.split.seed)
    record = {
        **blessing.to_dict(),
        "metrics": metrics,
        "champion_version": champion.version if champion else None,
        "champion_metrics": champion_metrics,
        "champion_source": champion.source if champion else None,
        "champion_rows": champion.rows if champion else None,
        "champion_test_rows": champion.test_rows if champion else None,
        "candidate_metrics_on_champion_rows": comparison,
    }
    with tempfile.TemporaryDirectory() as tmp:
        plots = ev.write_plots(pred, importance, task, Path(tmp))
        log_evaluation(tracking_uri, inputs.mlflow_run_id, metrics, record, slices, plots, fingerprint)
    write_atomic(
        out.report_markdown,
        ev.render_markdown(metrics, slices, blessing, champion_metrics, champion_rows, comparison).encode(),
    )
    write_atomic(out.blessing_json, json.dumps(record, indent=2, default=str).encode())
    classification = task.is_classification
    return EvaluateResult(
        metrics=metrics,
        blessed=blessing.blessed,
        reasons=blessing.reasons,
        confusion=ev.confusion(pred) if classification else None,
        roc=ev.roc_curve_points(pred) if classification else None,
        champion_version=champion.version if champion else None,
        champion_metrics=champion_metrics,
        slices=slices,
    )
