"""The compiled pipeline on a Kubeflow Pipelines cluster: run it, upload it, schedule it.

- :func:`submit` and :func:`wait_for_run` (``make pipeline-run``): one run of the
  compiled pipeline, followed to its end; every end but ``SUCCEEDED`` has its own
  exit code (:data:`RUN_EXIT_CODES`). ``kfp.Client.wait_for_run_completion``
  is not used: it returns normally for a failed run and never ends for a
  canceled one.
- :func:`upload` (``make pipeline-upload``): the pipeline and a pipeline version
  named by the code and spec it holds, so uploading the same code twice reuses the
  version; the code version is baked in as the ``code_version`` default, so a run
  started from the dashboard records it.
- :func:`schedule` (``make schedule``): one recurring run per name, on the uploaded
  version; running it again changes nothing, or replaces the schedule when the
  version, cron or parameters changed.

The parameters a run is given come from :mod:`tabpipe.cluster_params`. No call
here overrides the compiled per-task caching settings.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Re-exported: callers (the CLI, the Docker runner, tests) import these from here.
from tabpipe.cluster_params import (  # noqa: F401
    CLUSTER_TRACKING_URI,
    DEFAULT_CONFIG_PATH,
    IMAGE_ROOT,
    PIPELINE_SERVICE_ACCOUNT,
    REPO_ROOT,
    cluster_config,
    pipeline_defaults,
    submission_arguments,
    to_image_path,
)
from tabpipe.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    from tabpipe.config import PipelineConfig
    from tabpipe.kfp_client import KfpApi


def compiled_package() -> Path:
    """The committed compiled pipeline (``make compile`` writes it)."""
    from pipelines.training import COMPILED_PATH

    return COMPILED_PATH


# --------------------------------------------------------------------------- one run


#: How a finished run ends ``tabpipe submit``: its exit code per terminal state (KFP v2beta1
#: RuntimeState, plus ``ERROR`` from older API servers). 1 and 2 are taken: an unreachable or
#: refusing API, and a bad config or command line.
RUN_EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 3, "ERROR": 4, "CANCELED": 5, "SKIPPED": 7}
#: The run did not finish within the timeout (it keeps running on the cluster).
EXIT_TIMEOUT = 6
#: Waiting was interrupted (Ctrl-C); the run keeps running.
EXIT_INTERRUPTED = 130
#: Consecutive failed polls tolerated while waiting (a port-forward that restarts drops a few).
MAX_POLL_FAILURES = 3


def submit(
    api: KfpApi,
    config: PipelineConfig,
    tracking_uri: str,
    image_root: str,
    package: Path | None = None,
) -> str:
    """Create a run of the compiled pipeline in the config's experiment; return its run id.

    No ``enable_caching`` is passed: that would override every task's compiled
    setting, turning caching back on for the exit handler that records the outcome.
    """
    arguments = submission_arguments(config, tracking_uri, image_root)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    run = api.call(
        "create run",
        api.client.create_run_from_pipeline_package,
        str(package or compiled_package()),
        arguments=arguments,
        run_name=f"{config.name} {stamp}",
        experiment_name=config.experiment_name,
        service_account=PIPELINE_SERVICE_ACCOUNT,
    )
    return str(run.run_id)


@dataclass
class RunEnd:
    """How waiting for a run ended."""

    run_id: str
    state: str
    seconds: float
    error: str | None = None
    timed_out: bool = False

    @property
    def exit_code(self) -> int:
        """``tabpipe submit``'s exit code for this end."""
        if self.timed_out:
            return EXIT_TIMEOUT
        return RUN_EXIT_CODES.get(self.state, RUN_EXIT_CODES["FAILED"])


def _state(run: Any) -> str:
    state = getattr(run, "state", None)
    return str(state).upper() if state else "UNKNOWN"


def _run_error(run: Any) -> str | None:
    error = getattr(run, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return " ".join(str(message).split()) if message else None


def wait_for_run(
    api: KfpApi,
    run_id: str,
    timeout: float,
    poll_interval: float = 10.0,
    on_state: Callable[[str], None] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RunEnd:
    """Poll the run until it reaches a terminal state or ``timeout`` seconds pass.

    Args:
        api: The connected API.
        run_id: The run.
        timeout: Seconds to wait at most.
        poll_interval: Seconds between polls.
        on_state: Called with each new state (PENDING, RUNNING, ...).
        clock: Monotonic clock (tests).
        sleep: Sleep (tests).

    Raises:
        ServiceError: the API failed :data:`MAX_POLL_FAILURES` polls in a row.
    """
    started = clock()
    last: str | None = None
    failures = 0
    while True:
        try:
            run = api.call("get run", api.client.get_run, run_id)
            failures = 0
        except ServiceError as exc:
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise ServiceError(
                    f"{exc} (while waiting for run {run_id}, which keeps running: {api.run_url(run_id)})"
                ) from None
            sleep(poll_interval)
            continue
        state = _state(run)
        if state != last and on_state is not None:
            on_state(state)
        last = state
        elapsed = clock() - started
        if state in RUN_EXIT_CODES:
            return RunEnd(run_id, state, elapsed, _run_error(run))
        if elapsed >= timeout:
            return RunEnd(run_id, state, elapsed, timed_out=True)
        sleep(max(0.0, min(poll_interval, timeout - elapsed)))


def describe_end(end: RunEnd, url: str) -> str:
    """The one line that says how a run ended."""
    if end.timed_out:
        return (
            f"run {end.run_id} still {end.state} after {end.seconds:.0f} s; it keeps running on the "
            f"cluster (wait longer with --timeout): {url}"
        )
    if end.state == "SUCCEEDED":
        return f"run {end.run_id} SUCCEEDED in {end.seconds:.0f} s: {url}"
    if end.state == "CANCELED":
        return f"run {end.run_id} was CANCELED: {url}"
    reason = f": {end.error}" if end.error else ""
    return f"run {end.run_id} ended {end.state}{reason} ({url})"


# --------------------------------------------------------------------------- upload


def _pipeline_name() -> str:
    """The pipeline's name in KFP (the compiled spec's ``pipelineInfo.name``)."""
    from pipelines.training import PIPELINE_NAME

    return PIPELINE_NAME


def versioned_spec(package: Path, code_version: str) -> str:
    """The compiled pipeline with ``code_version``'s default set to this code's version.

    The committed YAML leaves it empty (the tasks then read the version of the code in
    their image); the uploaded version names it, so a dashboard run records exactly
    the code the version was uploaded from, and KFP's cache tells code versions apart.
    """
    import yaml

    documents = list(yaml.safe_load_all(package.read_text()))
    parameters = documents[0].get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    if "code_version" not in parameters:
        raise ConfigError(f"{package} has no code_version parameter: not a compiled tabpipe pipeline")
    parameters["code_version"]["defaultValue"] = code_version
    return yaml.safe_dump_all(documents, sort_keys=False)


def version_name(spec: str, code_version: str) -> str:
    """A pipeline version name that changes exactly when the uploaded spec does.

    The code version (package version and a hash of the installed code), then a
    digest of the spec itself (the pipeline's wiring, components and defaults), in
    the characters Kubernetes names allow: ``0.1.0-src.1a2b3c4d5e6f-spec.0a1b2c3d``.
    """
    digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return f"{code_version.replace('+', '-').lower()}-spec.{digest}"


@dataclass
class Uploaded:
    """The pipeline version a run or schedule uses."""

    pipeline_id: str
    version_id: str
    version_name: str
    code_version: str
    created_pipeline: bool = False
    created_version: bool = False


def _equals_filter(key: str, value: str) -> str:
    import json

    # The shape kfp.Client's own lookups send (filter.proto as JSON).
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _all_pages(api: KfpApi, what: str, method: Callable[..., Any], field_name: str, **kwargs: Any) -> list:
    """Every item of a paged KFP list call."""
    items: list = []
    token = ""
    while True:
        page = api.call(what, method, page_token=token, page_size=100, **kwargs)
        items.extend(getattr(page, field_name, None) or [])
        token = getattr(page, "next_page_token", None) or ""
        if not token:
            return items


def _named(items: list, name: str) -> list:
    return [i for i in items if name in (getattr(i, "display_name", None), getattr(i, "name", None))]


def find_pipeline(api: KfpApi, name: str) -> str | None:
    """The id of the pipeline named ``name``, or None.

    Raises:
        ServiceError: several pipelines carry the name.
    """
    found = _named(
        _all_pages(
            api,
            "list pipelines",
            api.client.list_pipelines,
            "pipelines",
            filter=_equals_filter("display_name", name),
        ),
        name,
    )
    if len(found) > 1:
        ids = ", ".join(p.pipeline_id for p in found)
        raise ServiceError(f"{len(found)} pipelines are named {name!r} ({ids}); delete all but one")
    return found[0].pipeline_id if found else None


def upload(
    api: KfpApi,
    package: Path | None = None,
    code_version: str | None = None,
    pipeline_name: str | None = None,
) -> Uploaded:
    """Upload the compiled pipeline as a pipeline version; reuse the version when it is already there.

    Creates the pipeline when it does not exist. A version is found by its name,
    which :func:`version_name` derives from the spec, so the same code uploads once.
    """
    from kfp_server_api import V2beta1Pipeline

    from tabpipe.version import code_version as installed_code_version

    package = package or compiled_package()
    code_version = code_version or installed_code_version()
    pipeline_name = pipeline_name or _pipeline_name()
    spec = versioned_spec(package, code_version)
    name = version_name(spec, code_version)

    pipeline_id = find_pipeline(api, pipeline_name)
    created_pipeline = pipeline_id is None
    if pipeline_id is None:
        pipeline = api.call(
            "create pipeline",
            api.client.pipelines.pipeline_service_create_pipeline,
            pipeline=V2beta1Pipeline(
                name=pipeline_name,
                display_name=pipeline_name,
                description="tabpipe: validated data, tracked search, gated registration and deployment",
            ),
        )
        pipeline_id = pipeline.pipeline_id
    versions = _named(
        _all_pages(
            api,
            "list pipeline versions",
            api.client.list_pipeline_versions,
            "pipeline_versions",
            pipeline_id=pipeline_id,
            filter=_equals_filter("display_name", name),
        ),
        name,
    )
    if versions:
        return Uploaded(pipeline_id, versions[0].pipeline_version_id, name, code_version, created_pipeline)
    with tempfile.TemporaryDirectory(prefix="tabpipe-upload-") as folder:
        path = Path(folder) / f"{name}.yaml"
        path.write_text(spec)
        version = api.call(
            "upload pipeline version",
            api.client.upload_pipeline_version,
            str(path),
            pipeline_version_name=name,
            pipeline_id=pipeline_id,
            description=f"tabpipe code {code_version}",
        )
    return Uploaded(pipeline_id, version.pipeline_version_id, name, code_version, created_pipeline, True)


# --------------------------------------------------------------------------- schedule

#: Retraining every Monday at 03:00 (KFP's cron: six fields, seconds first).
DEFAULT_CRON = "0 0 3 * * 1"
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_cron(expression: str) -> str:
    """Refuse a cron expression KFP would misread.

    KFP (robfig/cron v1) reads six fields, seconds first, and treats the sixth
    (day of week) as optional: a five-field Unix expression such as ``0 3 * * 1`` is
    accepted but read as "second 0, minute 3, every hour, in January".

    Raises:
        ConfigError: not six fields and not a descriptor (``@daily``, ``@every 6h``).
    """
    text = " ".join(expression.split())
    if text in _CRON_DESCRIPTORS or text.startswith("@every "):
        return text
    fields = text.split(" ") if text else []
    if len(fields) == 6:
        return text
    hint = f"; for the Unix expression {text!r} write '0 {text}'" if len(fields) == 5 else ""
    raise ConfigError(
        f"cron {expression!r} has {len(fields)} field(s): KFP reads six, seconds first "
        f"(second minute hour day-of-month month day-of-week), e.g. {DEFAULT_CRON!r} for Mondays at "
        f"03:00{hint}"
    )


@dataclass
class Scheduled:
    """What :func:`schedule` left on the cluster."""

    recurring_run_id: str
    name: str
    cron: str
    uploaded: Uploaded
    #: created (none existed), unchanged (the same one existed), replaced (older ones were deleted)
    action: str
    #: Recurring runs of the same name deleted: the replaced ones, or duplicates of the kept one.
    deleted: list[str] = field(default_factory=list)


def default_schedule_name(config: PipelineConfig) -> str:
    """The recurring run's name when none is given: one schedule per config."""
    return f"{_pipeline_name()}-{config.name}-retrain"


def _same_schedule(run: Any, version_id: str, cron: str, arguments: dict[str, str]) -> bool:
    """Whether an existing recurring run already is the one asked for."""
    reference = getattr(run, "pipeline_version_reference", None)
    trigger = getattr(run, "trigger", None)
    cron_schedule = getattr(trigger, "cron_schedule", None)
    runtime = getattr(run, "runtime_config", None)
    return (
        getattr(reference, "pipeline_version_id", None) == version_id
        and " ".join(str(getattr(cron_schedule, "cron", "") or "").split()) == cron
        and (getattr(runtime, "parameters", None) or {}) == arguments
        and str(getattr(run, "mode", "")).upper() == "ENABLE"
        and str(getattr(run, "max_concurrency", "")) == "1"
        and bool(getattr(run, "no_catchup", False))
        and (getattr(run, "service_account", None) or "") == PIPELINE_SERVICE_ACCOUNT
    )


def schedule(
    api: KfpApi,
    config: PipelineConfig,
    cron: str,
    tracking_uri: str,
    image_root: str,
    *,
    name: str | None = None,
    package: Path | None = None,
) -> Scheduled:
    """Make sure exactly one recurring run named ``name`` retrains on the current pipeline version.

    Uploads the version first (reused when already there). An existing recurring run
    with the same name, version, cron and parameters is kept as it is; otherwise the
    new one is created and then the old ones are deleted, so a failure in between
    never leaves the pipeline unscheduled. At most one run at a time, and no
    catch-up of missed slots after a pause.
    """
    cron = check_cron(cron)
    name = name or default_schedule_name(config)
    arguments = submission_arguments(config, tracking_uri, image_root)
    uploaded = upload(api, package, arguments["code_version"])
    experiment = api.call("create experiment", api.client.create_experiment, name=config.experiment_name)
    existing = _named(
        _all_pages(
            api,
            "list recurring runs",
            api.client.list_recurring_runs,
            "recurring_runs",
            experiment_id=experiment.experiment_id,
            filter=_equals_filter("display_name", name),
        ),
        name,
    )
    keep = next((r for r in existing if _same_schedule(r, uploaded.version_id, cron, arguments)), None)
    if keep is None:
        created = api.call(
            "create recurring run",
            api.client.create_recurring_run,
            experiment_id=experiment.experiment_id,
            job_name=name,
            description=f"Retrains {config.name} on {uploaded.version_name} ({cron})",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=arguments,
            pipeline_id=uploaded.pipeline_id,
            version_id=uploaded.version_id,
            enabled=True,
            service_account=PIPELINE_SERVICE_ACCOUNT,
        )
        recurring_run_id = created.recurring_run_id
    else:
        recurring_run_id = keep.recurring_run_id
    stale = [r.recurring_run_id for r in existing if r.recurring_run_id != recurring_run_id]
    for old in stale:
        api.call("delete recurring run", api.client.delete_recurring_run, old)
    action = "unchanged" if keep is not None else ("replaced" if stale else "created")
    return Scheduled(recurring_run_id, name, cron, uploaded, action, stale)
