"""Run the compiled pipeline with KFP's local ``SubprocessRunner``.

This is what ``make run`` and ``tabpipe run`` call: validate the config at the
boundary, make sure an MLflow server answers, compile the pipeline, run the
compiled YAML through ``kfp.local`` with caching on, and summarise the run.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabpipe.config import PipelineConfig
from tabpipe.version import code_version

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"Executing task '?([\w-]+)'?")
_FINISHED = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
_CACHE_HIT = re.compile(r"Task '?([\w-]+)'? cache hit")


@dataclass
class StageTiming:
    """Wall time of one task, and whether the cache served it."""

    name: str
    seconds: float = 0.0
    cached: bool = False
    status: str = "RUNNING"


class _TaskTimer(io.TextIOBase):
    """A stdout tee that timestamps kfp.local's task start and end lines."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.timings: dict[str, StageTiming] = {}
        self._started: dict[str, float] = {}

    def write(self, text: str) -> int:
        now = time.perf_counter()
        clean = _ANSI.sub("", text)
        for match in _EXECUTING.finditer(clean):
            self._started[match.group(1)] = now
            self.timings[match.group(1)] = StageTiming(match.group(1))
        for match in _FINISHED.finditer(clean):
            timing = self.timings.setdefault(match.group(1), StageTiming(match.group(1)))
            timing.seconds = now - self._started.get(match.group(1), now)
            timing.status = match.group(2)
        for match in _CACHE_HIT.finditer(clean):
            self.timings[match.group(1)] = StageTiming(match.group(1), 0.0, True, "CACHED")
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


@dataclass
class RunSummary:
    """What ``make run`` prints at the end."""

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
    mlflow_run_url: str | None = None
    serving_url: str | None = None
    served_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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


def run_pipeline(
    config: PipelineConfig,
    tracking_uri: str,
    state_dir: Path,
    *,
    enable_caching: bool = True,
    quiet: bool = False,
    serving_url: str | None = None,
) -> RunSummary:
    """Run the whole pipeline locally and return its summary.

    Expected failures do not raise: the summary carries the failed stage and
    the reason recorded in MLflow. With ``serving_url``, deploy loads a blessed
    model into that OIP server and smoke-tests it before moving ``champion``.
    """
    from kfp import local

    from tabpipe.deploy import DeployTarget

    state_dir.mkdir(parents=True, exist_ok=True)
    pipeline_root = state_dir / "pipeline_root"
    (state_dir / "compiled").mkdir(parents=True, exist_ok=True)
    pipeline = _compiled_pipeline(state_dir)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        enable_caching=enable_caching,
    )
    started_wall = time.time()
    started = time.perf_counter()
    timer = _TaskTimer(sys.stdout)
    original_stdout = sys.stdout
    sys.stdout = timer if not quiet else _TaskTimer(io.StringIO())
    # kfp.local logs cache hits outside its own log context; route them through the timer too.
    root_logger = logging.getLogger()
    cache_log_handler = logging.StreamHandler(sys.stdout)
    cache_log_handler.setLevel(logging.INFO)
    previous_level = root_logger.level
    root_logger.addHandler(cache_log_handler)
    root_logger.setLevel(logging.INFO)
    failure: str | None = None
    try:
        target = DeployTarget.LOCAL_SERVER if serving_url else DeployTarget.REGISTRY
        deploy_args = {"deploy_target": target.value, **({"serving_url": serving_url} if serving_url else {})}
        pipeline(
            config_json=config.to_parameter(),
            mlflow_tracking_uri=tracking_uri,
            code_version=code_version(),
            **deploy_args,
        )
    except RuntimeError as exc:  # kfp.local raises RuntimeError when a task fails
        failure = str(exc)
    finally:
        active = sys.stdout
        sys.stdout = original_stdout
        root_logger.removeHandler(cache_log_handler)
        root_logger.setLevel(previous_level)
    timings = active.timings if isinstance(active, _TaskTimer) else {}
    summary = RunSummary(
        config_name=config.name,
        succeeded=failure is None,
        seconds=time.perf_counter() - started,
        stages=list(timings.values()),
        tracking_uri=tracking_uri,
    )
    _fill_from_mlflow(summary, config, tracking_uri, started_wall, failure)
    if serving_url:
        summary.serving_url = serving_url
        summary.served_version = _served_version(serving_url, config.registry.model_name)
    return summary


def _served_version(serving_url: str, model_name: str) -> str | None:
    """The version of ``model_name`` the endpoint serves now, if any."""
    import requests

    try:
        answer = requests.get(f"{serving_url}/v2/models/{model_name}", timeout=5)
    except requests.RequestException:
        return None
    return str(answer.json()["versions"][0]) if answer.status_code == 200 else None


def _fill_from_mlflow(
    summary: RunSummary, config: PipelineConfig, tracking_uri: str, since: float, failure: str | None
) -> None:
    """Read the outcome, blessing and registry state this run left in MLflow."""
    from tabpipe import tracking

    mlflow_client = tracking.client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(config.experiment_name)
    if failure is not None:
        summary.failure_reason = _ANSI.sub("", failure)
        if experiment is not None:
            runs = mlflow_client.search_runs(
                [experiment.experiment_id],
                filter_string=(
                    f"tags.`{tracking.Tag.OUTCOME}` = 'failed' "
                    f"and attributes.start_time >= {int(since * 1000)}"
                ),
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if runs:
                summary.failure_stage = runs[0].data.tags.get(tracking.Tag.FAILED_STAGE)
                summary.failure_reason = runs[0].data.tags.get(tracking.Tag.FAILURE_REASON)
        return
    if experiment is None:
        return
    # The newest training run holds the evaluation (on a cached run, the cached one).
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{tracking.Tag.STAGE}` = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        run = runs[0]
        summary.mlflow_run_url = (
            f"{tracking_uri.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        )
        local_path = mlflow_client.download_artifacts(run.info.run_id, "evaluation/blessing.json")
        summary.blessing = json.loads(Path(local_path).read_text())
        versions = mlflow_client.search_model_versions(f"run_id = '{run.info.run_id}'")
        if versions:
            summary.registered_version = str(versions[0].version)
    current = tracking.champion(mlflow_client, config.registry.model_name)
    summary.champion_version = current.version if current else None


def format_summary(summary: RunSummary) -> str:
    """Render the run summary for the terminal."""
    lines = ["", "=" * 72, f"tabpipe run summary: {summary.config_name}", "=" * 72]
    lines.append(f"status: {'SUCCEEDED' if summary.succeeded else 'FAILED'} in {summary.seconds:.1f}s")
    if summary.stages:
        lines.append("stages:")
        for stage in summary.stages:
            how = "cached" if stage.cached else f"{stage.seconds:6.1f}s"
            lines.append(f"  {stage.name:<16} {how:>8}  {stage.status}")
    if not summary.succeeded:
        lines.append(f"failed stage: {summary.failure_stage or 'unknown'}")
        lines.append(f"reason: {summary.failure_reason}")
        lines.append("no model was registered or deployed by this run")
    if summary.blessing:
        metrics = summary.blessing.get("metrics", {})
        lines.append(
            "test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if v is not None)
        )
        lines.append(f"blessed: {'yes' if summary.blessed else 'no'}")
        for check in summary.blessing.get("checks", []):
            mark = "pass" if check.get("passed") else "FAIL"
            lines.append(f"  [{mark}] {check.get('detail')}")
    if summary.succeeded:
        lines.append(f"registered version (this model): {summary.registered_version or '-'}")
        lines.append(f"champion version: {summary.champion_version or '-'}")
    lines.append(f"MLflow: {summary.mlflow_run_url or summary.tracking_uri}")
    if summary.serving_url:
        if summary.served_version:
            lines.append(f"serving: version {summary.served_version} at {summary.serving_url} (OIP V2 REST)")
        else:
            lines.append(f"serving: nothing served at {summary.serving_url} yet")
    return "\n".join(lines)
