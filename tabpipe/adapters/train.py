"""Train adapter: search the candidates, save the best bundle and its ONNX export, log to MLflow."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabpipe.adapters.files import PathLike, read_frame
from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.tracking import RunContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainInputs:
    """The clean splits and the fitted preprocessor (with the checksum transform recorded)."""

    train: PathLike
    validation: PathLike
    preprocessor: PathLike
    preprocessor_sha256: str


@dataclass(frozen=True)
class TrainOutputs:
    """Where the model bundle and its ONNX export go."""

    model: PathLike
    onnx_model: PathLike


@dataclass(frozen=True)
class TrainResult:
    """The winning model: its files' checksums, where MLflow has it, and how it scored."""

    sha256: str
    classes_json: str
    mlflow_run_id: str
    mlflow_model_uri: str
    estimator: str
    best_params: dict[str, Any]
    metric: str
    cv_score: float
    validation_score: float
    onnx_sha256: str | None
    onnx_reason: str | None
    #: sha256 of the logged bundle's manifest (every bundle file with its sha256); the registry records it.
    bundle_digest: str = ""

    def metadata(self) -> dict[str, Any]:
        """Artifact metadata, keyed by :class:`tabpipe.artifacts.Meta`."""
        meta: dict[str, Any] = {
            Meta.SHA256: self.sha256,
            Meta.CLASSES_JSON: self.classes_json,
            Meta.MLFLOW_RUN_ID: self.mlflow_run_id,
            Meta.MLFLOW_MODEL_URI: self.mlflow_model_uri,
            Meta.ESTIMATOR: self.estimator,
            # JSON: KFP metadata would turn None into null-less structs and ints into floats.
            Meta.BEST_PARAMS_JSON: json.dumps(self.best_params, default=str),
            f"cv_{self.metric}": self.cv_score,
            f"validation_{self.metric}": self.validation_score,
            Meta.BUNDLE_DIGEST: self.bundle_digest,
        }
        meta.update(self.onnx_metadata())
        return meta

    def onnx_metadata(self) -> dict[str, Any]:
        """The ONNX export's checksum, or why there is none."""
        if self.onnx_sha256:
            return {Meta.ONNX_SHA256: self.onnx_sha256}
        return {Meta.ONNX_REASON: self.onnx_reason or ""}


def run(config: PipelineConfig, ctx: RunContext, inputs: TrainInputs, out: TrainOutputs) -> TrainResult:
    """Search, save the best model (skops) and its ONNX export, and log everything to MLflow.

    When the model cannot be exported, ``out.onnx_model`` is left empty (KFP expects
    the file) and the reason is recorded in the serving spec and the result.
    """
    from tabpipe.bundle import assemble_bundle, bundle_digest
    from tabpipe.features import split_xy
    from tabpipe.io import sha256_bytes, write_atomic
    from tabpipe.modelio import load_model, save_model
    from tabpipe.onnx.export import convert_bundle
    from tabpipe.serving_spec import SERVING_SPEC_FILENAME, build_serving_spec
    from tabpipe.stages.evaluate.fingerprint import model_row_hashes, training_row_set
    from tabpipe.stages.train import train as search
    from tabpipe.tracking import client, close_stale_runs, ensure_experiment, log_training

    # The first stage that creates MLflow runs closes those a killed task left RUNNING.
    mlflow_client = client(ctx.tracking_uri)
    experiment_id = ensure_experiment(mlflow_client, config.experiment_name)
    closed = close_stale_runs(mlflow_client, experiment_id, ctx.kfp_run_id)
    log.info("closed %d MLflow run(s) left RUNNING by killed tasks: %s", len(closed), closed or "none")
    train_frame = read_frame(inputs.train)
    validation_frame = read_frame(inputs.validation)
    preprocessor = load_model(inputs.preprocessor, inputs.preprocessor_sha256)
    result = search(config, train_frame, validation_frame, preprocessor)
    best = result.best
    sha = save_model(best.model, out.model)
    spec = build_serving_spec(config, list(getattr(best.model, "classes_", [])), sha)
    conversion = convert_bundle(best.model, spec)
    if conversion.onnx_bytes is not None:
        write_atomic(out.onnx_model, conversion.onnx_bytes)
        spec = spec.model_copy(update={"onnx_sha256": sha256_bytes(conversion.onnx_bytes)})
    else:
        write_atomic(out.onnx_model, b"")
        spec = spec.model_copy(update={"onnx_reason": conversion.reason})
    features, _ = split_xy(train_frame, config)
    onnx_path = Path(out.onnx_model) if spec.onnx_sha256 else None
    # The rows this model was fitted on and selected with: a later evaluation leaves them
    # out when it scores this model as the champion, so it is not graded on its own training data.
    seen = training_row_set(*(model_row_hashes(frame, config) for frame in (train_frame, validation_frame)))
    with tempfile.TemporaryDirectory(prefix="tabpipe-bundle-") as tmp:
        # The run's bundle folder with its manifest: the digest the registry will record.
        bundle = Path(tmp) / "bundle"
        assemble_bundle(bundle, spec, out.model, onnx_path, spec_filename=SERVING_SPEC_FILENAME)
        digest = bundle_digest(bundle)
        run_id, model_uri = log_training(
            ctx,
            config,
            result,
            Path(out.model),
            sha,
            features.head(5),
            spec,
            onnx_path,
            training_rows=seen,
            bundle_dir=bundle,
        )
    return TrainResult(
        sha256=sha,
        # JSON, because KFP metadata turns integer labels into floats.
        classes_json=json.dumps(spec.classes),
        mlflow_run_id=run_id,
        mlflow_model_uri=model_uri,
        estimator=best.estimator,
        best_params=dict(best.best_params),
        metric=result.metric.value,
        cv_score=best.cv_score,
        validation_score=best.validation_score,
        onnx_sha256=spec.onnx_sha256,
        onnx_reason=spec.onnx_reason,
        bundle_digest=digest,
    )
