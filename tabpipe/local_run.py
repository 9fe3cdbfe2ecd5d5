"""Run the compiled pipeline with KFP's local ``SubprocessRunner`` and summarise *this* run.

This is what ``make run`` and ``tabpipe run`` call: compile the pipeline, run the
compiled YAML through ``kfp.local`` with caching on, and build the summary from
the outputs of this run's own tasks (executed or served from the cache), never
from whatever happens to be newest in the MLflow experiment.

kfp.local offers no hook for a task's outputs, so :class:`TaskRecorder` wraps
the one function its orchestrators call for every task
(``kfp.local.orchestrator.task_executor.execute_single_task``, kfp 2.17.0) for
the duration of the run. A test pins this: if kfp changes it, the recorder
fails loudly rather than summarising nothing.

Everything kfp.local and the tasks print goes to a log file; the console shows
one line per finished stage and the summary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tabpipe.artifacts import Meta
from tabpipe.config import PipelineConfig
from tabpipe.run_id import new_local_run_id, run_id_in_environment
from tabpipe.version import code_version

log = logging.getLogger(__name__)

#: kfp.local warns on every task that our image is "not a Python image"; it is, with the package installed.
_BASE_IMAGE_WARNING = r"You may be attemping to run a task that uses custom or non-Python base image"
#: KFP's display names of our tasks, in pipeline order.
STAGES = ("ingest", "validate", "transform", "train", "evaluate", "register", "deploy", "record-outcome")


@dataclass
class StageTiming:
    """One task of this run: how it ended, how long it took, whether the cache served it, its outputs."""

    name: str
    seconds: float = 0.0
    cached: bool = False
    status: str = "RUNNING"
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)


class TaskRecorder:
    """Records every task kfp.local runs or serves from its cache, with its outputs.

    Args:
        on_finish: Called with each finished task (for a progress line).
    """

    def __init__(self, on_finish: Callable[[StageTiming], None] | None = None) -> None:
        self.stages: dict[str, StageTiming] = {}
        self.pipeline_run_id: str | None = None
        self._on_finish = on_finish

    @contextlib.contextmanager
    def recording(self) -> Iterator[TaskRecorder]:
        """Wrap kfp.local's task executor while the pipeline runs."""
        from kfp.local import task_dispatcher
        from kfp.local.orchestrator import task_executor

        original_execute = task_executor.execute_single_task
        original_dispatch = task_dispatcher.run_single_task_implementation
        dispatched: list[bool] = []

        def dispatch(*args: Any, **kwargs: Any) -> Any:
            dispatched.append(True)  # the task really runs (a cache hit never gets here)
            return original_dispatch(*args, **kwargs)

        def execute(task_name: str, task_spec: Any, *args: Any, **kwargs: Any) -> Any:
            from kfp.local import status

            name = task_spec.task_info.name or task_name
            timing = self.stages.setdefault(name, StageTiming(name))
            dispatched.clear()
            started = time.perf_counter()
            outputs, task_status = original_execute(task_name, task_spec, *args, **kwargs)
            timing.seconds = time.perf_counter() - started
            timing.cached = task_status == status.Status.SUCCESS and not dispatched
            timing.status = "CACHED" if timing.cached else task_status.name
            timing.outputs = dict(outputs or {})
            if self._on_finish is not None:
                self._on_finish(timing)
            return outputs, task_status

        task_executor.execute_single_task = execute
        task_dispatcher.run_single_task_implementation = dispatch
        try:
            yield self
        finally:
            task_executor.execute_single_task = original_execute
            task_dispatcher.run_single_task_implementation = original_dispatch

    def output(self, stage: str, name: str) -> Any:
        """One output of a stage in this run, or None when the stage did not run or has no such output."""
        timing = self.stages.get(stage)
        return None if timing is None else timing.outputs.get(name)


@dataclass
class RunSummary:
    """What ``make run`` prints at the end, read from this run's own outputs."""

    config_name: str
    succeeded: bool
    seconds: float
    stages: list[StageTiming]
    tracking_uri: str
    failure_stage: str | None = None
    failure_reason: str | None = None
    blessing: dict[str, Any] | None = None
    registered_version: str | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    mlflow_run_url: str | None = None
    serving_url: str | None = None
    served_version: str | None = None
    estimator: str | None = None
    best_params: dict[str, Any] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    onnx_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    reports: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None
    bundle_uri: str | None = None

    @property
    def blessed(self) -> bool:
        """Whether the evaluated model passed the gate."""
        return bool(self.blessing and self.blessing.get("blessed"))


def _compiled_pipeline(state_dir: Path) -> Any:
    """Compile the pipeline and load the YAML back, so the local run executes what a cluster gets."""
    from kfp import components as kfp_components

    from pipelines.training import compile_pipeline

    path = compile_pipeline(state_dir / "compiled" / "training_pipeline.yaml")
    return kfp_components.load_component_from_file(str(path))


def _progress_printer(stream: TextIO) -> Callable[[StageTiming], None]:
    def report(timing: StageTiming) -> None:
        how = "cached" if timing.cached else f"{timing.seconds:5.1f}s"
        stream.write(f"  {timing.name:<16} {how:>7}  {timing.status}\n")
        stream.flush()

    return report


@contextlib.contextmanager
def _quiet(sink: TextIO) -> Iterator[None]:
    """Send everything kfp.local and the tasks print (stdout, stderr, logging) to ``sink``."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sink)
    previous = (sys.stdout, sys.stderr, root.level, list(root.handlers))
    sys.stdout = sys.stderr = sink
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_BASE_IMAGE_WARNING)
            yield
    finally:
        sys.stdout, sys.stderr, level, handlers = previous
        root.handlers = handlers
        root.setLevel(level)


def run_pipeline(
    config: PipelineConfig,
    tracking_uri: str,
    state_dir: Path,
    *,
    enable_caching: bool = True,
    quiet: bool = False,
    serving_url: str | None = None,
    runner: str = "subprocess",
    docker_host: str | None = None,
) -> RunSummary:
    """Run the whole pipeline locally and return the summary of this run.

    Expected failures do not raise: the summary carries the failed stage and the
    reason. kfp.local's own output goes to ``<state_dir>/logs/run-<time>.log``; the
    console shows one line per finished stage, unless ``quiet``. With
    ``serving_url``, deploy loads a blessed model into that OIP server and
    smoke-tests it before moving ``champion``. With ``runner="docker"`` every task
    runs in a container of the project image on the engine at ``docker_host``
    (:mod:`tabpipe.docker_runner`), its outputs under ``<state_dir>/pipeline_root-docker``.
    """
    from kfp import local

    from tabpipe.deploy import DeployTarget

    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "compiled").mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    pipeline = _compiled_pipeline(state_dir)
    run_id = new_local_run_id()
    docker = None
    if runner == "docker":
        from components.image import BASE_IMAGE
        from tabpipe.docker_runner import prepare
        from tabpipe.run_id import RUN_ID_ENV

        # A container inherits nothing from this process: the run's id is handed over explicitly.
        docker = prepare(config, state_dir, BASE_IMAGE, docker_host, environment={RUN_ID_ENV: run_id})
        config = docker.config  # local data paths as the containers see them
    local.init(
        runner=docker.runner if docker else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(docker.pipeline_root if docker else state_dir / "pipeline_root"),
        raise_on_error=True,
        enable_caching=enable_caching,
    )
    console = sys.stdout
    recorder = TaskRecorder(None if quiet else _progress_printer(console))
    # kfp.local ignores the cluster's field-path env; its tasks inherit ours (tabpipe.run_id).
    recorder.pipeline_run_id = run_id
    started = time.perf_counter()
    failure: str | None = None
    target = DeployTarget.LOCAL_SERVER if serving_url else DeployTarget.REGISTRY
    deploy_args = {"deploy_target": target.value, **({"serving_url": serving_url} if serving_url else {})}
    with (
        open(log_path, "w") as log_file,
        _quiet(log_file),
        recorder.recording(),
        run_id_in_environment(recorder.pipeline_run_id),
        docker if docker is not None else contextlib.nullcontext(),  # deletes its secret copies
    ):
        try:
            pipeline(
                config_json=config.to_parameter(),
                mlflow_tracking_uri=tracking_uri,
                code_version=code_version(),
                **deploy_args,
            )
        except RuntimeError as exc:  # kfp.local raises RuntimeError when a task fails
            failure = str(exc)
    summary = RunSummary(
        config_name=config.name,
        succeeded=failure is None,
        seconds=time.perf_counter() - started,
        stages=list(recorder.stages.values()),
        tracking_uri=tracking_uri,
        log_path=str(log_path),
    )
    _fill_from_outputs(summary, recorder)
    _fill_from_registry(summary, config, tracking_uri, recorder, failure)
    if serving_url:
        summary.serving_url = serving_url
        summary.served_version = _served_version(serving_url, config.registry.model_name)
    return summary


def _artifact_json(artifact: Any) -> dict[str, Any] | None:
    """The JSON file behind a KFP artifact of this run, if it exists."""
    path = Path(getattr(artifact, "path", "") or "")
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fill_from_outputs(summary: RunSummary, recorder: TaskRecorder) -> None:
    """Everything the summary shows about the data, the model and the gate, from this run's outputs."""
    train_split = recorder.output("ingest", "train")
    if train_split is not None:
        meta = train_split.metadata
        summary.data = {
            key: int(meta[key])
            for key in (Meta.N_ROWS, Meta.N_TRAIN, Meta.N_VALIDATION, Meta.N_TEST, Meta.DUPLICATES_REMOVED)
            if key in meta
        }
    report = _artifact_json(recorder.output("validate", "report_json"))
    if report is not None:
        summary.drift = report.get("drift") or {"skipped": report.get("drift_skipped_reason")}
        summary.data["leakage"] = report.get("leakage") or {}
        summary.data["warnings"] = report.get("warnings", [])
    for stage, name in (("validate", "report"), ("transform", "features"), ("evaluate", "report")):
        artifact = recorder.output(stage, name)
        if artifact is not None and Path(artifact.path).is_file():
            summary.reports[f"{stage} {name}"] = artifact.path
    model = recorder.output("train", "model")
    if model is not None:
        meta = model.metadata
        summary.estimator = meta.get(Meta.ESTIMATOR)
        summary.best_params = (
            json.loads(meta[Meta.BEST_PARAMS_JSON]) if Meta.BEST_PARAMS_JSON in meta else None
        )
        summary.scores = {k: float(v) for k, v in meta.items() if k.startswith(("cv_", "validation_"))}
        summary.onnx_reason = meta.get(Meta.ONNX_REASON) or None
    blessing = recorder.output("evaluate", "blessing")
    if blessing is not None:
        summary.blessing = _artifact_json(blessing)
    bundle = recorder.output("deploy", "bundle")
    if bundle is not None:
        summary.bundle_uri = bundle.metadata.get(Meta.BUNDLE_URI) or None
    version = recorder.output("register", "Output")
    summary.registered_version = str(version) if version is not None else None


def _fill_from_registry(
    summary: RunSummary,
    config: PipelineConfig,
    tracking_uri: str,
    recorder: TaskRecorder,
    failure: str | None,
) -> None:
    """Where the aliases point now, and for a failure the stage and reason the run recorded.

    Read from the registry even after a failure: a later stage may have failed after
    this run registered a version. When the register task ran but left no output (it
    failed after the registry write), the version registered by this run is the one
    the registry holds for this run's training run.
    """
    from mlflow.exceptions import MlflowException

    from tabpipe import tracking
    from tabpipe.errors import ServiceError

    try:
        mlflow_client = tracking.client(tracking_uri)
        name = config.registry.model_name
        summary.champion_version = _alias_version(mlflow_client, name, tracking.CHAMPION_ALIAS)
        summary.challenger_version = _alias_version(mlflow_client, name, tracking.CHALLENGER_ALIAS)
        model = recorder.output("train", "model")
        run_id = model.metadata.get(Meta.MLFLOW_RUN_ID) if model is not None else None
        if run_id:
            experiment_id = mlflow_client.get_run(run_id).info.experiment_id
            summary.mlflow_run_url = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        if run_id and summary.registered_version is None and "register" in recorder.stages:
            # Register ran but left no output (it failed, e.g. on a full disk, after the
            # registry write): the registry knows the version it created from this run's model.
            version = tracking.version_of_run(mlflow_client, name, run_id)
            summary.registered_version = str(version.version) if version is not None else None
        if failure is not None and recorder.pipeline_run_id:
            records = tracking.failure_records(tracking_uri, config.experiment_name, recorder.pipeline_run_id)
            if records:
                summary.failure_stage = records[0]["stage"]
                summary.failure_reason = records[0]["reason"]
    except (ServiceError, MlflowException) as exc:
        log.warning("could not read the registry: %s", exc)
    if failure is not None and summary.failure_stage is None:
        failed = [s.name for s in summary.stages if s.status == "FAILURE"]
        summary.failure_stage = failed[0] if failed else None
        summary.failure_reason = f"{failure} (details in {summary.log_path})"


def _alias_version(mlflow_client: Any, model_name: str, alias: str) -> str | None:
    """The version an alias points to now, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def _served_version(serving_url: str, model_name: str) -> str | None:
    """The version of ``model_name`` the endpoint serves now, if any."""
    import requests

    try:
        answer = requests.get(f"{serving_url}/v2/models/{model_name}", timeout=5)
    except requests.RequestException:
        return None
    return str(answer.json()["versions"][0]) if answer.status_code == 200 else None


def _fmt_param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt_score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_summary(summary: RunSummary) -> str:
    """Render the run summary for the terminal."""
    lines = ["", "=" * 72, f"tabpipe run summary: {summary.config_name}", "=" * 72]
    lines.append(f"status: {'SUCCEEDED' if summary.succeeded else 'FAILED'} in {summary.seconds:.1f}s")
    if not summary.succeeded:
        lines.append(f"failed stage: {summary.failure_stage or 'unknown'}")
        lines.append(f"reason: {summary.failure_reason}")
    data = summary.data
    if data:
        removed = data.get(Meta.DUPLICATES_REMOVED)
        lines.append(
            f"data: {data.get(Meta.N_ROWS, '?')} rows"
            + (f" ({removed} exact duplicate rows removed before the split)" if removed else "")
            + f"; train/validation/test {data.get(Meta.N_TRAIN, '?')}/{data.get(Meta.N_VALIDATION, '?')}/"
            f"{data.get(Meta.N_TEST, '?')}"
        )
        leakage = data.get("leakage") or {}
        if leakage:
            lines.append(
                f"leakage: {leakage.get('test_rows_in_train', 0)} test row(s) copied from train; "
                f"{leakage.get('conflicting_label_rows', 0)} row(s) "
                f"({leakage.get('conflicting_label_share', 0.0):.1%}) with conflicting labels; "
                f"strongest single feature {leakage.get('strongest_single_feature') or '-'}"
            )
    if summary.drift is not None:
        if summary.drift.get("skipped"):
            lines.append(f"drift: skipped ({summary.drift['skipped']})")
        else:
            drifted = summary.drift.get("drifted_columns") or []
            lines.append(
                f"drift: {len(drifted)} of {len(summary.drift.get('columns') or [])} column(s) drifted"
                + (f": {', '.join(drifted)}" if drifted else "")
            )
    if summary.estimator:
        params = (
            ", ".join(f"{k}={_fmt_param(v)}" for k, v in (summary.best_params or {}).items()) or "defaults"
        )
        lines.append(f"winner: {summary.estimator} ({params})")
        if summary.scores:
            lines.append("  " + ", ".join(f"{k}={_fmt_score(v)}" for k, v in summary.scores.items()))
        lines.append(
            "  served by: "
            + (f"scikit-learn (no ONNX export: {summary.onnx_reason})" if summary.onnx_reason else "ONNX")
        )
    if summary.blessing:
        metrics = summary.blessing.get("metrics", {})
        lines.append(
            "test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if v is not None)
        )
        lines.append(f"blessed: {'yes' if summary.blessed else 'no'}")
        for check in summary.blessing.get("checks", []):
            mark = "pass" if check.get("passed") else "FAIL"
            lines.append(f"  [{mark}] {check.get('detail')}")
    registered = f"version {summary.registered_version}" if summary.registered_version else "nothing"
    lines.append(f"registered by this run: {registered}")
    champion, challenger = summary.champion_version or "-", summary.challenger_version or "-"
    lines.append(f"aliases now: champion={champion}, challenger={challenger}")
    if summary.bundle_uri:
        lines.append(f"bundle: {summary.bundle_uri} (every file checked against its MANIFEST)")
    if summary.serving_url:
        if summary.served_version:
            lines.append(f"serving: version {summary.served_version} at {summary.serving_url} (OIP V2 REST)")
        else:
            lines.append(f"serving: nothing served at {summary.serving_url} yet")
    lines.append(f"MLflow: {summary.mlflow_run_url or summary.tracking_uri}")
    for name, path in summary.reports.items():
        lines.append(f"report ({name}): {path}")
    if summary.log_path:
        lines.append(f"full log: {summary.log_path}")
    return "\n".join(lines)
