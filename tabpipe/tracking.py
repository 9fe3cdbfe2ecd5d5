"""Everything that talks to MLflow: tracking, the Model Registry, aliases.

Nothing here runs at import time; every function takes the tracking URI or a
client explicitly. Registry stages are deprecated, so models move by alias:
``challenger`` for a newly registered blessed version, ``champion`` for the
one deployed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabpipe.errors import ServiceError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tabpipe.config import PipelineConfig
    from tabpipe.serving_spec import ServingSpec
    from tabpipe.stages.train import TrainResult

CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"
BUNDLE_ARTIFACT_DIR = "bundle"


class Tag:
    """Tag keys set on runs and model versions."""

    DATA_VERSION = "tabpipe.data_version"
    CONTRACT_HASH = "tabpipe.contract_hash"
    CONFIG_HASH = "tabpipe.config_hash"
    CODE_VERSION = "tabpipe.code_version"
    KFP_RUN_ID = "tabpipe.kfp_run_id"
    STAGE = "tabpipe.stage"
    OUTCOME = "tabpipe.outcome"
    FAILED_STAGE = "tabpipe.failed_stage"
    FAILURE_REASON = "tabpipe.failure_reason"
    BUNDLE_SHA256 = "tabpipe.bundle_sha256"
    BLESSED = "tabpipe.blessed"


@dataclass(frozen=True)
class RunContext:
    """Identity of one pipeline run, tagged on everything it logs."""

    tracking_uri: str
    data_version: str
    contract_hash: str
    config_hash: str
    code_version: str
    kfp_run_id: str

    def tags(self) -> dict[str, str]:
        """The run-identity tags."""
        return {
            Tag.DATA_VERSION: self.data_version,
            Tag.CONTRACT_HASH: self.contract_hash,
            Tag.CONFIG_HASH: self.config_hash,
            Tag.CODE_VERSION: self.code_version,
            Tag.KFP_RUN_ID: self.kfp_run_id,
        }


def client(tracking_uri: str) -> MlflowClient:
    """An MLflow client bound to ``tracking_uri``; fails clearly when the server is down."""
    import mlflow
    import requests

    if tracking_uri.startswith(("http://", "https://")):
        try:
            requests.get(tracking_uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise ServiceError(f"MLflow tracking server at {tracking_uri} is not reachable: {exc}") from None
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """Return the experiment id for ``name``, creating the experiment if needed."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(name)


def log_training(
    ctx: RunContext,
    config: PipelineConfig,
    result: TrainResult,
    bundle_path: Path,
    bundle_sha256: str,
    input_example: Any,
    serving_spec: ServingSpec,
    onnx_path: Path | None = None,
) -> tuple[str, str]:
    """Log the search (one nested run per trial) and the winning model.

    Returns:
        The parent run id and the logged model's URI.
    """
    import mlflow
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag
    from mlflow.models import infer_signature

    from tabpipe.modelio import MODEL_FILENAME, trusted_types
    from tabpipe.serving_spec import ONNX_FILENAME, SERVING_SPEC_FILENAME

    mlflow_client = client(ctx.tracking_uri)
    experiment_id = ensure_experiment(mlflow_client, config.experiment_name)
    best = result.best
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{best.estimator}") as parent:
        mlflow.set_tags({**ctx.tags(), Tag.STAGE: "train"})
        mlflow.log_params(
            {f"best.{k}": v for k, v in best.best_params.items()} | {"best.estimator": best.estimator}
        )
        mlflow.log_metrics(
            {
                f"cv_{result.metric.value}": best.cv_score,
                f"validation_{result.metric.value}": best.validation_score,
            }
        )
        for candidate in result.candidates:
            for i, trial in enumerate(candidate.trials):
                run = mlflow_client.create_run(
                    experiment_id,
                    run_name=f"{candidate.estimator}-trial-{i}",
                    tags={
                        "mlflow.parentRunId": parent.info.run_id,
                        **ctx.tags(),
                        "estimator": candidate.estimator,
                    },
                )
                mlflow_client.log_batch(
                    run.info.run_id,
                    metrics=[
                        MlflowMetric(f"cv_{result.metric.value}_mean", trial.cv_mean, 0, 0),
                        MlflowMetric(f"cv_{result.metric.value}_std", trial.cv_std, 0, 0),
                        MlflowMetric("fit_seconds", trial.fit_seconds, 0, 0),
                    ],
                    params=[Param("estimator", candidate.estimator)]
                    + [Param(k, str(v)) for k, v in trial.params.items()],
                    tags=[RunTag("tabpipe.trial", str(i))],
                )
                mlflow_client.set_terminated(run.info.run_id)
        leaderboard = [
            {
                "estimator": c.estimator,
                "cv_score": c.cv_score,
                "validation_score": c.validation_score,
                "search_seconds": round(c.search_seconds, 3),
                "best_params": c.best_params,
            }
            for c in result.candidates
        ]
        mlflow.log_dict({"metric": result.metric.value, "candidates": leaderboard}, "leaderboard.json")
        mlflow.log_dict(config.contract.model_dump(mode="json"), "contract.json")
        with tempfile.TemporaryDirectory() as tmp:
            # KFP names artifact files after the output ("model"); the registry copy gets its real name.
            named = Path(tmp) / MODEL_FILENAME
            shutil.copyfile(bundle_path, named)
            mlflow.log_artifact(str(named), artifact_path=BUNDLE_ARTIFACT_DIR)
            if onnx_path is not None:
                onnx_named = Path(tmp) / ONNX_FILENAME
                shutil.copyfile(onnx_path, onnx_named)
                mlflow.log_artifact(str(onnx_named), artifact_path=BUNDLE_ARTIFACT_DIR)
        mlflow.log_text(
            serving_spec.model_dump_json(indent=2), f"{BUNDLE_ARTIFACT_DIR}/{SERVING_SPEC_FILENAME}"
        )
        mlflow.set_tag(Tag.BUNDLE_SHA256, bundle_sha256)
        signature = infer_signature(input_example, best.model.predict(input_example))
        model_info = mlflow.sklearn.log_model(
            best.model,
            name="model",
            signature=signature,
            input_example=input_example,
            serialization_format="skops",
            skops_trusted_types=trusted_types(bundle_path.read_bytes(), str(bundle_path)),
        )
    return parent.info.run_id, model_info.model_uri


def log_evaluation(
    tracking_uri: str,
    run_id: str,
    metrics: dict[str, float],
    blessing: dict[str, Any],
    slices: list[dict[str, Any]],
    plots: dict[str, Path],
) -> None:
    """Attach test metrics, the blessing, slice metrics and plots to the training run."""
    import math

    mlflow_client = client(tracking_uri)
    from mlflow.entities import Metric as MlflowMetric

    finite = {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}
    mlflow_client.log_batch(run_id, metrics=[MlflowMetric(f"test_{k}", v, 0, 0) for k, v in finite.items()])
    mlflow_client.set_tag(run_id, Tag.BLESSED, str(bool(blessing["blessed"])).lower())
    mlflow_client.log_dict(run_id, blessing, "evaluation/blessing.json")
    mlflow_client.log_dict(run_id, {"slices": slices}, "evaluation/slices.json")
    for path in plots.values():
        mlflow_client.log_artifact(run_id, str(path), artifact_path="evaluation/plots")


@dataclass(frozen=True)
class RegisteredModel:
    """A model version and where its verified bundle is."""

    name: str
    version: str
    run_id: str
    bundle_sha256: str


def champion(mlflow_client: MlflowClient, model_name: str) -> RegisteredModel | None:
    """The version the ``champion`` alias points to, or None if there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow_client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    sha = version.tags.get(Tag.BUNDLE_SHA256)
    if not sha:
        return None
    return RegisteredModel(model_name, str(version.version), version.run_id, sha)


def download_bundle(mlflow_client: MlflowClient, model: RegisteredModel, dest: Path) -> Path:
    """Download a registered version's bundle file into ``dest``; the caller verifies it."""
    from tabpipe.modelio import MODEL_FILENAME

    local = mlflow_client.download_artifacts(
        model.run_id, f"{BUNDLE_ARTIFACT_DIR}/{MODEL_FILENAME}", str(dest)
    )
    return Path(local)


def register(
    tracking_uri: str, model_name: str, model_uri: str, run_id: str, bundle_sha256: str, tags: dict[str, str]
) -> str:
    """Register a blessed model as a new version and point ``challenger`` at it.

    Returns:
        The new version number.
    """
    mlflow_client = client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(model_name)
    except MlflowException:
        mlflow_client.create_registered_model(model_name, description="Registered by the tabpipe pipeline.")
    import mlflow

    # register_model resolves MLflow 3's logged-model URIs (models:/m-...) to their source.
    version = mlflow.register_model(
        model_uri, model_name, tags={**tags, Tag.BUNDLE_SHA256: bundle_sha256, Tag.BLESSED: "true"}
    )
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER_ALIAS, version.version)
    return str(version.version)


def promote(tracking_uri: str, model_name: str, version: str) -> str | None:
    """Move ``champion`` to ``version``; return the version it pointed to before, if any."""
    mlflow_client = client(tracking_uri)
    previous = champion(mlflow_client, model_name)
    mlflow_client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
    return previous.version if previous else None


def record_outcome(
    tracking_uri: str,
    experiment: str,
    kfp_run_id: str,
    outcome: str,
    failed_stage: str | None = None,
    reason: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Log a run that records how a pipeline run ended (and where and why it failed)."""
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(mlflow_client, experiment)
    tags = {Tag.KFP_RUN_ID: kfp_run_id, Tag.OUTCOME: outcome, **(extra_tags or {})}
    if failed_stage:
        tags[Tag.FAILED_STAGE] = failed_stage
    if reason:
        # Tag values are capped server-side; the full text goes in an artifact.
        tags[Tag.FAILURE_REASON] = reason[:4000]
    run = mlflow_client.create_run(experiment_id, run_name=f"pipeline-{outcome}", tags=tags)
    if reason:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "outcome.json"
            path.write_text(
                json.dumps({"outcome": outcome, "stage": failed_stage, "reason": reason}, indent=2)
            )
            mlflow_client.log_artifact(run.info.run_id, str(path))
    mlflow_client.set_terminated(run.info.run_id, status="FAILED" if outcome == "failed" else "FINISHED")
    return run.info.run_id


def failure_records(tracking_uri: str, experiment: str, kfp_run_id: str) -> list[dict[str, str]]:
    """Failure records a pipeline run left, newest first."""
    mlflow_client = client(tracking_uri)
    experiment_obj = mlflow_client.get_experiment_by_name(experiment)
    if experiment_obj is None:
        return []
    runs = mlflow_client.search_runs(
        [experiment_obj.experiment_id],
        filter_string=f"tags.`{Tag.KFP_RUN_ID}` = '{kfp_run_id}' and tags.`{Tag.OUTCOME}` = 'failed'",
        order_by=["attributes.start_time DESC"],
    )
    return [
        {"stage": r.data.tags.get(Tag.FAILED_STAGE, ""), "reason": r.data.tags.get(Tag.FAILURE_REASON, "")}
        for r in runs
    ]
