"""Everything that talks to MLflow: tracking, the Model Registry, aliases.

Nothing here runs at import time; every function takes the tracking URI or a
client explicitly. Registry stages are deprecated, so models move by alias:
``challenger`` for a newly registered blessed version, ``champion`` for the
one deployed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tabpipe.errors import ServiceError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tabpipe.config import Metric, PipelineConfig
    from tabpipe.serving_spec import ServingSpec

T = TypeVar("T")

CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"
#: A version serving a share of the traffic beside the champion (cluster canary) until promoted.
CANARY_ALIAS = "canary"
BUNDLE_ARTIFACT_DIR = "bundle"
EVALUATION_ARTIFACT_DIR = "evaluation"
#: The training run's row hashes (sorted distinct uint64, numpy ``.npy``): the rows the model has seen.
TRAINING_ROWS_ARTIFACT = "training_rows.npy"

#: What the logged MLflow model needs to load: what MLflow's own inference (a subprocess that
#: loads the model, about 5 s) finds for these bundles, minus the test runner it picks up.
MODEL_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "skops", "tabpipe")
#: Trial runs logged at once: the calls are small and mostly wait on the server.
_TRIAL_LOGGING_THREADS = 4


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
    #: The bundle manifest's sha256 (``tabpipe.bundle.bundle_digest``): covers every bundle file.
    BUNDLE_DIGEST = "tabpipe.bundle_digest"
    BLESSED = "tabpipe.blessed"
    TEST_FINGERPRINT = "tabpipe.test_fingerprint"
    TRAINING_ROWS = "tabpipe.training_rows"


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


#: The MLflow client's own HTTP retry settings, applied when the user has not set them.
#: MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) keep a call to a
#: stopped server going for about four minutes; these give up after a few seconds
#: (urllib3 sleeps 0, 2, 4 s between attempts) while still riding out a restart.
HTTP_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
#: Attempts of a whole operation that failed with a :class:`ServiceError`, and the first pause.
SERVICE_ATTEMPTS = 3
SERVICE_FIRST_DELAY_SECONDS = 1.0
_HEALTH_TIMEOUT_SECONDS = 5


def configure_http_client() -> None:
    """Bound the MLflow client's HTTP retries and timeout (:data:`HTTP_CLIENT_DEFAULTS`).

    Set once at the task boundary; a value the user already set wins. MLflow reads these
    variables on every request, so setting them before the first call is enough.
    """
    for key, value in HTTP_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def retry_service(
    operation: Callable[[], T],
    attempts: int = SERVICE_ATTEMPTS,
    first_delay: float = SERVICE_FIRST_DELAY_SECONDS,
) -> T:
    """Run ``operation``, again after a pause (doubling) while it raises :class:`ServiceError`.

    Only a service error is transient; every other error, including the deterministic
    :class:`~tabpipe.errors.TabpipeError` subclasses (bad config, bad data, a checksum
    mismatch), propagates at once: running it again would fail the same way.
    """
    import logging
    import time

    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except ServiceError as exc:
            if attempt == attempts:
                raise
            logging.getLogger(__name__).warning(
                "%s; retrying in %.0f s (attempt %d of %d)", exc, delay, attempt + 1, attempts
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def service_error(exc: BaseException, tracking_uri: str) -> ServiceError | None:
    """The :class:`ServiceError` an exception from the MLflow client amounts to, or None.

    A connection failure or timeout (after the client's own HTTP retries) means the
    server is unreachable; anything else (a rejected request, a bug) is not a service
    error and is left alone.
    """
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ServiceError):
            return current
        if isinstance(current, requests.ConnectionError | requests.Timeout):
            return ServiceError(f"MLflow tracking server at {tracking_uri} is not reachable: {current}")
        text = str(current)
        if type(current).__name__ == "MlflowException" and (
            "Max retries exceeded" in text or "Failed to establish a new connection" in text
        ):
            return ServiceError(f"MLflow tracking server at {tracking_uri} is not reachable: {text}")
        current = current.__cause__ or current.__context__
    return None


def _check_health(tracking_uri: str) -> None:
    import requests

    try:
        requests.get(tracking_uri.rstrip("/") + "/health", timeout=_HEALTH_TIMEOUT_SECONDS).raise_for_status()
    except requests.RequestException as exc:
        raise ServiceError(f"MLflow tracking server at {tracking_uri} is not reachable: {exc}") from None


def client(tracking_uri: str) -> MlflowClient:
    """An MLflow client bound to ``tracking_uri``; fails clearly when the server is down.

    The health check is retried a few times (a server restarting answers within
    seconds); the client's own HTTP retries are bounded by :func:`configure_http_client`.

    Raises:
        ServiceError: the server did not answer; the message names the endpoint.
    """
    import mlflow

    configure_http_client()
    if tracking_uri.startswith(("http://", "https://")):
        retry_service(lambda: _check_health(tracking_uri))
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """Return the experiment id for ``name``, creating the experiment if needed."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(name)


#: Why :func:`close_stale_runs` failed a run (``tabpipe.failure_reason``), with the closing run's id.
STALE_RUN_REASON = "left RUNNING by a task that was killed; closed by pipeline run {kfp_run_id}"


def close_stale_runs(mlflow_client: MlflowClient, experiment_id: str, current_kfp_run_id: str) -> list[str]:
    """Mark the runs a killed task left ``RUNNING`` as ``FAILED``, with the reason as a tag.

    A task killed outright (``kill -9``, an evicted pod, a lost node) never ends its
    MLflow runs: the training parent run and the trial it was logging stay ``RUNNING``
    forever. The next pipeline run calls this before it creates runs of its own and
    fails every run of the experiment that is still ``RUNNING`` and belongs to another
    pipeline run: its ``tabpipe.kfp_run_id`` tag differs, or it has none. The trials of
    a killed parent carry the same tag, so they are closed with it.

    Assumes one pipeline run at a time per experiment: a run another pipeline run is
    logging *right now* in the same experiment would be failed too. The runs of
    ``current_kfp_run_id`` itself are left alone.

    Args:
        mlflow_client: A client of the tracking server.
        experiment_id: The experiment to clean up.
        current_kfp_run_id: The pipeline run doing the cleanup.

    Returns:
        The ids of the runs it marked ``FAILED``.
    """
    reason = STALE_RUN_REASON.format(kfp_run_id=current_kfp_run_id)
    closed: list[str] = []
    page_token = None
    while True:
        page = mlflow_client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=page_token,
        )
        for run in page:
            if run.data.tags.get(Tag.KFP_RUN_ID) == current_kfp_run_id:
                continue
            # The reason first: a run marked FAILED without it would look like any failure.
            mlflow_client.set_tag(run.info.run_id, Tag.FAILURE_REASON, reason)
            mlflow_client.set_terminated(run.info.run_id, status="FAILED")
            closed.append(run.info.run_id)
        page_token = page.token
        if not page_token:
            return closed


class TrialRecord(Protocol):
    """One hyperparameter setting tried in cross-validation (the train stage's ``Trial``)."""

    @property
    def params(self) -> dict[str, Any]: ...  # noqa: D102
    @property
    def cv_mean(self) -> float: ...  # noqa: D102
    @property
    def cv_std(self) -> float: ...  # noqa: D102
    @property
    def fit_seconds(self) -> float: ...  # noqa: D102


class CandidateRecord(Protocol):
    """One searched estimator (the train stage's ``CandidateResult``)."""

    @property
    def estimator(self) -> str: ...  # noqa: D102
    @property
    def best_params(self) -> dict[str, Any]: ...  # noqa: D102
    @property
    def cv_score(self) -> float: ...  # noqa: D102
    @property
    def validation_score(self) -> float: ...  # noqa: D102
    @property
    def search_seconds(self) -> float: ...  # noqa: D102
    @property
    def model(self) -> Any: ...  # noqa: D102
    @property
    def trials(self) -> Sequence[TrialRecord]: ...  # noqa: D102


class SearchRecord(Protocol):
    """What a hyperparameter search produced, best candidate first (the train stage's ``TrainResult``).

    A protocol, so that tracking depends on no stage module: any object with these
    attributes can be logged.
    """

    @property
    def metric(self) -> Metric: ...  # noqa: D102
    @property
    def candidates(self) -> Sequence[CandidateRecord]: ...  # noqa: D102
    @property
    def best(self) -> CandidateRecord: ...  # noqa: D102


@contextmanager
def _no_run_url_printing() -> Iterator[None]:
    """Stop MLflow printing a run's URL when it ends: it fetches the run again just to print it."""
    key = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    before = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _log_trials(
    mlflow_client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    tags: dict[str, str],
    result: SearchRecord,
) -> None:
    """One finished nested run per trial, with its params, CV mean/std and fit time.

    Each trial takes three calls (create, log, finish); trials are logged concurrently
    because each call mostly waits on the server.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag

    metric = result.metric.value

    def log_one(estimator: str, i: int, trial: TrialRecord) -> None:
        run = mlflow_client.create_run(
            experiment_id,
            run_name=f"{estimator}-trial-{i}",
            tags={"mlflow.parentRunId": parent_run_id, **tags, "estimator": estimator},
        )
        mlflow_client.log_batch(
            run.info.run_id,
            metrics=[
                MlflowMetric(f"cv_{metric}_mean", trial.cv_mean, 0, 0),
                MlflowMetric(f"cv_{metric}_std", trial.cv_std, 0, 0),
                MlflowMetric("fit_seconds", trial.fit_seconds, 0, 0),
            ],
            params=[Param("estimator", estimator)] + [Param(k, str(v)) for k, v in trial.params.items()],
            tags=[RunTag("tabpipe.trial", str(i))],
        )
        mlflow_client.set_terminated(run.info.run_id)

    jobs = [(c.estimator, i, trial) for c in result.candidates for i, trial in enumerate(c.trials)]
    with _no_run_url_printing(), ThreadPoolExecutor(_TRIAL_LOGGING_THREADS) as pool:
        # list(): re-raise the first failure here.
        list(pool.map(lambda job: log_one(*job), jobs))


def model_requirements() -> list[str]:
    """:data:`MODEL_REQUIREMENTS` pinned to the installed versions (those not installed left out)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for name in MODEL_REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pinned


def log_training(
    ctx: RunContext,
    config: PipelineConfig,
    result: SearchRecord,
    bundle_path: Path,
    bundle_sha256: str,
    input_example: Any,
    serving_spec: ServingSpec,
    onnx_path: Path | None = None,
    training_rows: Any | None = None,
    bundle_dir: Path | None = None,
) -> tuple[str, str]:
    """Log the search (one nested run per trial) and the winning model.

    The parent run gets the run-identity tags, the best params, the CV and validation
    scores, the leaderboard, the contract and the bundle files (skops, ONNX when
    exported, serving spec); the model is also logged as an MLflow model (skops, with
    signature, input example and pinned pip requirements).

    Args:
        ctx: Identity of the pipeline run.
        config: The pipeline config (experiment name, contract).
        result: The search, best candidate first (e.g. the train stage's ``TrainResult``).
        bundle_path: The saved skops bundle of the best model.
        bundle_sha256: Its checksum.
        input_example: A few raw feature rows.
        serving_spec: The serving spec, logged next to the bundle.
        onnx_path: The ONNX export, or None when there is none.
        training_rows: Sorted distinct uint64 hashes of the rows the model was fitted and
            selected on, logged as :data:`TRAINING_ROWS_ARTIFACT` with their count as a tag,
            so a later evaluation can leave them out when it scores this model as champion.
        bundle_dir: The bundle folder as assembled with its ``manifest.json``
            (``tabpipe.bundle.assemble_bundle``), logged as the ``bundle`` folder file for
            file, so the run holds exactly the files the digest covers; when None, the
            model, ONNX export and spec are logged without a manifest.

    Returns:
        The parent run id and the logged model's URI.

    """
    import mlflow
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param, RunTag
    from mlflow.models import infer_signature
    from threadpoolctl import threadpool_limits

    from tabpipe.modelio import MODEL_FILENAME, trusted_types
    from tabpipe.serving_spec import ONNX_FILENAME, SERVING_SPEC_FILENAME

    mlflow_client = client(ctx.tracking_uri)
    experiment_id = ensure_experiment(mlflow_client, config.experiment_name)
    best = result.best
    metric = result.metric.value
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{best.estimator}") as parent:
        run_id = parent.info.run_id
        params = {f"best.{k}": v for k, v in best.best_params.items()} | {"best.estimator": best.estimator}
        tags = {**ctx.tags(), Tag.STAGE: "train", Tag.BUNDLE_SHA256: bundle_sha256}
        if training_rows is not None:
            tags[Tag.TRAINING_ROWS] = str(len(training_rows))
        mlflow_client.log_batch(
            run_id,
            metrics=[
                MlflowMetric(f"cv_{metric}", best.cv_score, 0, 0),
                MlflowMetric(f"validation_{metric}", best.validation_score, 0, 0),
            ],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        _log_trials(mlflow_client, experiment_id, run_id, ctx.tags(), result)
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
        with tempfile.TemporaryDirectory() as tmp:
            # One upload call for every file; KFP names artifact files after the output
            # ("model"), so the registry copy gets its real name.
            root = Path(tmp)
            bundle = root / BUNDLE_ARTIFACT_DIR
            bundle.mkdir()
            (root / "leaderboard.json").write_text(
                json.dumps({"metric": metric, "candidates": leaderboard}, indent=2)
            )
            (root / "contract.json").write_text(json.dumps(config.contract.model_dump(mode="json"), indent=2))
            if bundle_dir is not None:
                # As assembled: any other copy could differ from what the manifest lists.
                shutil.copytree(bundle_dir, bundle, dirs_exist_ok=True)
            else:
                shutil.copyfile(bundle_path, bundle / MODEL_FILENAME)
                if onnx_path is not None:
                    shutil.copyfile(onnx_path, bundle / ONNX_FILENAME)
                (bundle / SERVING_SPEC_FILENAME).write_text(serving_spec.model_dump_json(indent=2))
            if training_rows is not None:
                import numpy as np

                # 8 bytes a row, no pickle: np.load with allow_pickle=False reads it back.
                np.save(root / TRAINING_ROWS_ARTIFACT, np.asarray(training_rows, dtype=np.uint64))
            mlflow_client.log_artifacts(run_id, str(root))
        # A handful of rows: one thread, because a thread pool's start-up per tree
        # (histogram gradient boosting) costs far more than the prediction itself.
        with threadpool_limits(limits=1):
            signature = infer_signature(input_example, best.model.predict(input_example))
            model_info = mlflow.sklearn.log_model(
                best.model,
                name="model",
                signature=signature,
                input_example=input_example,
                serialization_format="skops",
                skops_trusted_types=trusted_types(bundle_path.read_bytes(), str(bundle_path)),
                # Explicit, so MLflow does not infer them by loading the model in a subprocess.
                pip_requirements=model_requirements(),
            )
    return run_id, model_info.model_uri


def log_evaluation(
    tracking_uri: str,
    run_id: str,
    metrics: dict[str, float],
    blessing: dict[str, Any],
    slices: list[dict[str, Any]],
    plots: dict[str, Path],
    test_fingerprint: str | None = None,
) -> None:
    """Attach test metrics, the blessing, slice metrics and plots to the training run.

    Two calls: one batch of metrics and tags, one upload of the ``evaluation`` folder
    (``blessing.json``, ``slices.json``, ``plots/*.png``). ``test_fingerprint`` names the
    test split the metrics were computed on (see :func:`recorded_test_metrics`).
    """
    import math

    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import RunTag

    mlflow_client = client(tracking_uri)
    finite = {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}
    tags = {Tag.BLESSED: str(bool(blessing["blessed"])).lower()}
    if test_fingerprint:
        tags[Tag.TEST_FINGERPRINT] = test_fingerprint
    mlflow_client.log_batch(
        run_id,
        metrics=[MlflowMetric(f"test_{k}", v, 0, 0) for k, v in finite.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "blessing.json").write_text(json.dumps(blessing, indent=2))
        (folder / "slices.json").write_text(json.dumps({"slices": slices}, indent=2))
        if plots:
            (folder / "plots").mkdir()
            for path in plots.values():
                shutil.copyfile(path, folder / "plots" / Path(path).name)
        mlflow_client.log_artifacts(run_id, str(folder), artifact_path=EVALUATION_ARTIFACT_DIR)


def recorded_test_metrics(
    mlflow_client: MlflowClient, run_id: str, test_fingerprint: str, names: Sequence[str]
) -> dict[str, float] | None:
    """The test metrics logged on a run, if they were computed on this very test split.

    Scoring the same bundle on the same rows gives the same numbers, so these can stand
    in for scoring it again. None when the run recorded another (or no) test split, or
    lacks one of ``names`` (an undefined metric is not logged; scoring again gives it).
    """
    data = mlflow_client.get_run(run_id).data
    if data.tags.get(Tag.TEST_FINGERPRINT) != test_fingerprint:
        return None
    recorded = {k.removeprefix("test_"): v for k, v in data.metrics.items() if k.startswith("test_")}
    if any(name not in recorded for name in names):
        return None
    return {name: float(recorded[name]) for name in names}


def training_row_hashes(mlflow_client: MlflowClient, run_id: str) -> Any | None:
    """The sorted row hashes a training run recorded (:data:`TRAINING_ROWS_ARTIFACT`), or None.

    None when the run predates the record (its tag is absent); then which test rows
    the model has seen is unknown.

    Raises:
        ArtifactIntegrityError: the tag is there but the file is missing, unreadable
            or holds another number of rows than the tag says.
    """
    import numpy as np

    from tabpipe.errors import ArtifactIntegrityError

    count = mlflow_client.get_run(run_id).data.tags.get(Tag.TRAINING_ROWS)
    if count is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow_client.download_artifacts(run_id, TRAINING_ROWS_ARTIFACT, tmp)
            hashes = np.load(local, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactIntegrityError(
                f"run {run_id}: {TRAINING_ROWS_ARTIFACT} is unreadable ({exc})"
            ) from None
    if hashes.dtype != np.uint64 or hashes.ndim != 1 or len(hashes) != int(count):
        raise ArtifactIntegrityError(
            f"run {run_id}: {TRAINING_ROWS_ARTIFACT} holds {hashes.shape} {hashes.dtype}, "
            f"expected {count} uint64 row hashes"
        )
    return hashes


@dataclass(frozen=True)
class RegisteredModel:
    """A model version and where its verified bundle is."""

    name: str
    version: str
    run_id: str
    bundle_sha256: str
    #: The bundle manifest's digest (:attr:`Tag.BUNDLE_DIGEST`); None for versions older than manifests.
    bundle_digest: str | None = None


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
    return RegisteredModel(
        model_name, str(version.version), version.run_id, sha, version.tags.get(Tag.BUNDLE_DIGEST) or None
    )


def download_bundle(mlflow_client: MlflowClient, model: RegisteredModel, dest: Path) -> Path:
    """Download a registered version's bundle file into ``dest``; the caller verifies it."""
    from tabpipe.modelio import MODEL_FILENAME

    local = mlflow_client.download_artifacts(
        model.run_id, f"{BUNDLE_ARTIFACT_DIR}/{MODEL_FILENAME}", str(dest)
    )
    return Path(local)


def download_bundle_dir(mlflow_client: MlflowClient, run_id: str, dest: Path) -> Path:
    """Download every entry of a run's ``bundle`` folder flat into ``dest``; the caller verifies it.

    Everything is fetched, not only the files a loader wants, so a file added to the
    folder is seen (and refused) by the manifest check.

    Returns:
        ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for entry in mlflow_client.list_artifacts(run_id, BUNDLE_ARTIFACT_DIR):
        name = Path(entry.path).name
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            # Each entry lands flat in ``dest``, whatever layout the artifact store uses.
            local = Path(mlflow_client.download_artifacts(run_id, f"{BUNDLE_ARTIFACT_DIR}/{name}", tmp))
            shutil.move(local, dest / name)
    return dest


def version_of_run(mlflow_client: MlflowClient, model_name: str, run_id: str) -> Any | None:
    """The newest version of ``model_name`` created from training run ``run_id``, or None.

    Returns:
        The MLflow ``ModelVersion``, or None when the run has no version (or the model
        does not exist yet).
    """
    # Ids and names are validated identifiers (hex run ids, slug model names): no quoting issue.
    versions = mlflow_client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    if not versions:
        return None
    return max(versions, key=lambda v: int(v.version))


def register(
    tracking_uri: str,
    model_name: str,
    model_uri: str,
    run_id: str,
    bundle_sha256: str,
    tags: dict[str, str],
    bundle_digest: str | None = None,
) -> str:
    """Register a blessed model as a new version and point ``challenger`` at it.

    Idempotent per training run: when a version of ``model_name`` was already created
    from ``run_id`` (a re-run, or a task killed between creating it and setting the
    alias), that version is reused, its missing tags are added, and ``challenger``
    is pointed at it; no second version of the same run is created.

    Returns:
        The version number (new, or the one reused).
    """
    mlflow_client = client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(model_name)
    except MlflowException:
        mlflow_client.create_registered_model(model_name, description="Registered by the tabpipe pipeline.")
    import mlflow

    version_tags = {**tags, Tag.BUNDLE_SHA256: bundle_sha256, Tag.BLESSED: "true"}
    if bundle_digest:
        # The manifest's digest covers every bundle file (ONNX and spec too), not only the skops file.
        version_tags[Tag.BUNDLE_DIGEST] = bundle_digest
    # A task killed after creating the version but before the alias leaves a version of
    # this very training run: reuse it (completing its tags) rather than register a duplicate.
    version = version_of_run(mlflow_client, model_name, run_id)
    if version is not None:
        for key, value in version_tags.items():
            if key not in version.tags:
                mlflow_client.set_model_version_tag(model_name, str(version.version), key, value)
    else:
        # register_model resolves MLflow 3's logged-model URIs (models:/m-...) to their source.
        version = mlflow.register_model(model_uri, model_name, tags=version_tags)
    # Idempotent: setting an alias already there changes nothing.
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER_ALIAS, version.version)
    return str(version.version)


def promote(tracking_uri: str, model_name: str, version: str) -> str | None:
    """Move ``champion`` to ``version``; return the version it pointed to before, if any."""
    mlflow_client = client(tracking_uri)
    previous = champion(mlflow_client, model_name)
    mlflow_client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
    return previous.version if previous else None


def set_canary(tracking_uri: str, model_name: str, version: str) -> None:
    """Point ``canary`` at ``version`` (the champion stays where it is)."""
    client(tracking_uri).set_registered_model_alias(model_name, CANARY_ALIAS, version)


def clear_canary(tracking_uri: str, model_name: str) -> str | None:
    """Remove the ``canary`` alias; return the version it pointed to, if any."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    try:
        version = mlflow_client.get_model_version_by_alias(model_name, CANARY_ALIAS).version
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    mlflow_client.delete_registered_model_alias(model_name, CANARY_ALIAS)
    return str(version)


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
