"""One function per stage, on paths: what each KFP component calls.

These functions read their inputs from files, write their outputs to the
paths they are given and return the metadata the component attaches to its
artifacts. They know nothing about KFP, so the same stage code runs inside a
component, in one process for the benchmark, and in tests.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.io import write_atomic
from tabpipe.modelio import load_model, save_model
from tabpipe.tracking import RunContext

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | Path


def _read_parquet(path: PathLike) -> pd.DataFrame:
    # Imported here: register, deploy and record-outcome never touch a DataFrame.
    import pandas as pd

    return pd.read_parquet(path)


def run_train(
    config: PipelineConfig,
    ctx: RunContext,
    train: PathLike,
    validation: PathLike,
    preprocessor: PathLike,
    preprocessor_sha256: str,
    model: PathLike,
    onnx_model: PathLike,
) -> dict[str, Any]:
    """Search the candidates, save the best bundle and its ONNX export, and log everything to MLflow.

    When the model cannot be exported, ``onnx_model`` is left empty and the
    reason is recorded in the serving spec and the metadata.
    """
    from tabpipe.features import split_xy
    from tabpipe.io import sha256_bytes
    from tabpipe.onnx.export import convert_bundle
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.stages.train import train as search
    from tabpipe.tracking import log_training

    train_frame = _read_parquet(train)
    pre = load_model(preprocessor, preprocessor_sha256)
    result = search(config, train_frame, _read_parquet(validation), pre)
    sha = save_model(result.best.model, model)
    features, _ = split_xy(train_frame, config)
    classes = list(getattr(result.best.model, "classes_", []))
    spec = build_serving_spec(config, classes, sha)
    conversion = convert_bundle(result.best.model, spec)
    onnx_meta: dict[str, Any]
    if conversion.onnx_bytes is not None:
        write_atomic(onnx_model, conversion.onnx_bytes)
        spec = spec.model_copy(update={"onnx_sha256": sha256_bytes(conversion.onnx_bytes)})
        onnx_meta = {Meta.ONNX_SHA256: spec.onnx_sha256}
    else:
        write_atomic(onnx_model, b"")  # KFP expects the output file; the spec says there is no model
        spec = spec.model_copy(update={"onnx_reason": conversion.reason})
        onnx_meta = {Meta.ONNX_REASON: conversion.reason}
    onnx_path = Path(onnx_model) if spec.onnx_sha256 else None
    run_id, model_uri = log_training(ctx, config, result, Path(model), sha, features.head(5), spec, onnx_path)
    return {
        **onnx_meta,
        Meta.SHA256: sha,
        # JSON, because KFP metadata turns integer labels into floats.
        Meta.CLASSES_JSON: json.dumps(spec.classes),
        Meta.MLFLOW_RUN_ID: run_id,
        Meta.MLFLOW_MODEL_URI: model_uri,
        Meta.ESTIMATOR: result.best.estimator,
        f"cv_{result.metric.value}": result.best.cv_score,
        f"validation_{result.metric.value}": result.best.validation_score,
    }


@dataclass
class EvaluationOutput:
    """What evaluate produced, for the component to publish."""

    metrics: dict[str, float]
    blessed: bool
    reasons: list[str]
    confusion: tuple[list[str], list[list[int]]] | None
    roc: tuple[list[float], list[float], list[float]] | None
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    slices: list[dict[str, Any]] = field(default_factory=list)


def _champion_metrics(
    config: PipelineConfig,
    tracking_uri: str,
    test_frame: pd.DataFrame,
    test_fingerprint: str | None = None,
    metric_names: tuple[str, ...] = (),
) -> tuple[str, dict] | None:
    """Score the current champion on the same test split, so the comparison is fair.

    When the champion's run recorded ``metric_names`` on this very test split (its
    ``test_fingerprint`` tag matches), those numbers are used: scoring the same bundle on
    the same rows again would give the same ones, at the cost of a download and a load.
    When the champion's bundle cannot be fetched or fails verification, fall
    back to the test metrics recorded on its run rather than skip the gate.
    """
    from mlflow.exceptions import MlflowException

    from tabpipe import tracking
    from tabpipe.errors import ArtifactIntegrityError
    from tabpipe.features import split_xy
    from tabpipe.stages.evaluate import compute_metrics, predict

    mlflow_client = tracking.client(tracking_uri)
    current = tracking.champion(mlflow_client, config.registry.model_name)
    if current is None:
        return None
    if test_fingerprint and metric_names:
        recorded = tracking.recorded_test_metrics(
            mlflow_client, current.run_id, test_fingerprint, metric_names
        )
        if recorded is not None:
            return current.version, recorded
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = tracking.download_bundle(mlflow_client, current, Path(tmp))
            model = load_model(bundle, current.bundle_sha256)
    except (MlflowException, ArtifactIntegrityError, OSError) as exc:
        print(
            f"[tabpipe] champion v{current.version} bundle unusable ({exc}); using its recorded test metrics"
        )
        recorded = mlflow_client.get_run(current.run_id).data.metrics
        return current.version, {
            k.removeprefix("test_"): v for k, v in recorded.items() if k.startswith("test_")
        }
    features, target = split_xy(test_frame, config)
    return current.version, compute_metrics(predict(model, features, target, config.task), config.task)


def _onnx_parity_check(
    config: PipelineConfig,
    fitted: Any,
    model_sha256: str,
    test_frame: pd.DataFrame,
    onnx_model: PathLike,
    onnx_sha256: str | None,
) -> Any:
    """The gate's ``onnx parity`` check: the export must agree with scikit-learn on the test split."""
    from tabpipe.errors import ArtifactIntegrityError
    from tabpipe.io import sha256_file
    from tabpipe.onnx.export import ConversionResult
    from tabpipe.onnx.parity import parity_verdict
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.stages.evaluate import GateCheck

    spec = build_serving_spec(config, list(getattr(fitted, "classes_", [])), model_sha256)
    if onnx_sha256:
        if sha256_file(onnx_model) != onnx_sha256:
            raise ArtifactIntegrityError("evaluate: model.onnx does not match its recorded sha256")
        conversion = ConversionResult(Path(onnx_model).read_bytes(), None, {})
    else:
        conversion = ConversionResult(None, "train recorded no ONNX model", {})
    verdict = parity_verdict(
        fitted,
        conversion,
        test_frame,
        spec,
        tolerance=config.evaluation.onnx_parity_tolerance,
        require_onnx=config.evaluation.require_onnx,
    )
    return GateCheck("onnx parity", verdict.passed, verdict.detail)


def run_evaluate(
    config: PipelineConfig,
    tracking_uri: str,
    model: PathLike,
    model_sha256: str,
    mlflow_run_id: str,
    test: PathLike,
    report_markdown: PathLike,
    blessing_json: PathLike,
    onnx_model: PathLike,
    onnx_sha256: str | None,
) -> EvaluationOutput:
    """Test metrics, slices, plots and the blessing gate (thresholds, champion, ONNX parity)."""
    from tabpipe.features import split_xy
    from tabpipe.stages import evaluate as ev
    from tabpipe.tracking import log_evaluation

    fitted = load_model(model, model_sha256)
    test_frame = _read_parquet(test)
    features, target = split_xy(test_frame, config)
    pred = ev.predict(fitted, features, target, config.task)
    metrics = ev.compute_metrics(pred, config.task)
    slices = ev.slice_metrics(
        test_frame, pred, config.task, config.evaluation.slices, config.evaluation.max_slice_values
    )
    fingerprint = ev.frame_fingerprint(test_frame)
    champ = _champion_metrics(config, tracking_uri, test_frame, fingerprint, tuple(metrics))
    champion_version, champion_metrics = champ if champ else (None, None)
    parity = _onnx_parity_check(config, fitted, model_sha256, test_frame, onnx_model, onnx_sha256)
    blessing = ev.bless(metrics, config.evaluation, champion_metrics, extra_checks=[parity])
    importance = ev.permutation_importance_table(
        fitted, features, target, config.task, seed=config.split.seed
    )
    record = {
        **blessing.to_dict(),
        "metrics": metrics,
        "champion_version": champion_version,
        "champion_metrics": champion_metrics,
    }
    with tempfile.TemporaryDirectory() as tmp:
        plots = ev.write_plots(pred, importance, config.task, Path(tmp))
        log_evaluation(tracking_uri, mlflow_run_id, metrics, record, slices, plots, fingerprint)
    write_atomic(report_markdown, ev.render_markdown(metrics, slices, blessing, champion_metrics).encode())
    write_atomic(blessing_json, json.dumps(record, indent=2, default=str).encode())
    classification = config.task.is_classification
    return EvaluationOutput(
        metrics=metrics,
        blessed=blessing.blessed,
        reasons=blessing.reasons,
        confusion=ev.confusion(pred) if classification else None,
        roc=ev.roc_curve_points(pred) if classification else None,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        slices=slices,
    )
