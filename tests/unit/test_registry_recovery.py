"""Nothing lost or half-written when a task is killed or a store fails (real MLflow server, no mocks).

- A kill between "create the version" and "set the alias" leaves a version without an
  alias: registering the same training run again reuses it instead of adding a duplicate.
- A ``kill -9`` leaves MLflow runs ``RUNNING``: the next pipeline run closes them.
- A read-only state folder, or a write that fails, gives one message naming the path.
- The run summary says what this run registered from the registry, even when the
  register task failed after the registry write.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tabpipe import tracking
from tabpipe.artifacts import Meta
from tabpipe.config import load_config
from tabpipe.errors import TabpipeError
from tabpipe.io import write_atomic
from tabpipe.local_run import RunSummary, StageTiming, TaskRecorder, format_summary

# Real MLflow servers and killed subprocesses: minutes, so in make test-e2e.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _log_model(url: str, experiment: str) -> tuple[str, str]:
    """A finished training run with a small logged model: its run id and model URI."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    mlflow_client = tracking.client(url)
    experiment_id = tracking.ensure_experiment(mlflow_client, experiment)
    x = np.arange(20, dtype=float).reshape(-1, 1)
    model = LogisticRegression().fit(x, (x[:, 0] > 9).astype(int))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops")
    return run.info.run_id, info.model_uri


def _versions(mlflow_client, name: str) -> list:
    return sorted(mlflow_client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


# ---------------------------------------------------------------- idempotent registry writes


def test_register_reuses_the_unaliased_version_a_kill_left(mlflow_server: str) -> None:
    import mlflow

    name, experiment = _unique("recovery-model"), _unique("recovery")
    run_id, model_uri = _log_model(mlflow_server, experiment)
    mlflow_client = tracking.client(mlflow_server)
    # What a task killed between creating the version and setting the alias leaves behind:
    # a version of this training run, without the alias and without the later tags.
    mlflow_client.create_registered_model(name)
    left = mlflow.register_model(model_uri, name, tags={tracking.Tag.KFP_RUN_ID: "kfp-killed"})
    assert left.run_id == run_id and not left.aliases

    tags = {tracking.Tag.KFP_RUN_ID: "kfp-rerun", tracking.Tag.DATA_VERSION: "data-v1"}
    version = tracking.register(mlflow_server, name, model_uri, run_id, "sha-1", tags)

    versions = _versions(mlflow_client, name)
    assert [v.version for v in versions] == [left.version] and version == str(left.version)
    assert mlflow_client.get_model_version_by_alias(name, tracking.CHALLENGER_ALIAS).version == left.version
    tags_now = versions[0].tags
    # Missing tags completed; the one already there kept.
    assert tags_now[tracking.Tag.BUNDLE_SHA256] == "sha-1" and tags_now[tracking.Tag.BLESSED] == "true"
    assert tags_now[tracking.Tag.DATA_VERSION] == "data-v1"
    assert tags_now[tracking.Tag.KFP_RUN_ID] == "kfp-killed"

    # A re-run of the same training run registers nothing new either.
    assert tracking.register(mlflow_server, name, model_uri, run_id, "sha-1", tags) == version
    assert len(_versions(mlflow_client, name)) == 1
    # Another training run still gets its own version, and the challenger alias moves to it.
    other_run, other_uri = _log_model(mlflow_server, experiment)
    second = tracking.register(mlflow_server, name, other_uri, other_run, "sha-2", tags)
    assert second != version and len(_versions(mlflow_client, name)) == 2
    assert mlflow_client.get_model_version_by_alias(name, tracking.CHALLENGER_ALIAS).version == second


# ---------------------------------------------------------------- runs left RUNNING

_KILLED_TASK = textwrap.dedent(
    """
    import sys, time
    from mlflow import MlflowClient

    url, experiment_id, kfp_run_id = sys.argv[1:4]
    client = MlflowClient(tracking_uri=url)
    tags = {"tabpipe.kfp_run_id": kfp_run_id}
    parent = client.create_run(experiment_id, run_name="train-killed", tags=tags)
    trial = client.create_run(
        experiment_id, run_name="trial-killed", tags={"mlflow.parentRunId": parent.info.run_id, **tags}
    )
    print(parent.info.run_id, trial.info.run_id, flush=True)
    time.sleep(600)  # killed with SIGKILL long before: the runs are never ended
    """
)


def test_close_stale_runs_fails_what_a_killed_task_left_running(mlflow_server: str) -> None:
    mlflow_client = tracking.client(mlflow_server)
    experiment_id = tracking.ensure_experiment(mlflow_client, _unique("stale"))
    task = subprocess.Popen(
        [sys.executable, "-c", _KILLED_TASK, mlflow_server, experiment_id, "kfp-killed"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = task.stdout.readline()
    finally:
        os.kill(task.pid, signal.SIGKILL)
        task.wait(timeout=30)
    assert task.returncode == -signal.SIGKILL
    killed_parent, killed_trial = line.split()
    # A run without the tag (from an older version, or a task killed before tagging it).
    untagged = mlflow_client.create_run(experiment_id).info.run_id
    # Another pipeline run's finished run, and the current pipeline run's own open runs.
    finished = mlflow_client.create_run(experiment_id, tags={tracking.Tag.KFP_RUN_ID: "kfp-old"}).info.run_id
    mlflow_client.set_terminated(finished)
    current = [
        mlflow_client.create_run(experiment_id, tags={tracking.Tag.KFP_RUN_ID: "kfp-now"}).info.run_id
        for _ in range(2)
    ]
    for run_id in (killed_parent, killed_trial, untagged):
        assert mlflow_client.get_run(run_id).info.status == "RUNNING"

    closed = tracking.close_stale_runs(mlflow_client, experiment_id, "kfp-now")

    assert sorted(closed) == sorted([killed_parent, killed_trial, untagged])
    reason = "left RUNNING by a task that was killed; closed by pipeline run kfp-now"
    for run_id in closed:
        run = mlflow_client.get_run(run_id)
        assert run.info.status == "FAILED" and run.info.end_time is not None
        assert run.data.tags[tracking.Tag.FAILURE_REASON] == reason
    assert mlflow_client.get_run(finished).info.status == "FINISHED"
    assert tracking.Tag.FAILURE_REASON not in mlflow_client.get_run(finished).data.tags
    assert [mlflow_client.get_run(r).info.status for r in current] == ["RUNNING", "RUNNING"]
    # Nothing left to close: a second call changes nothing.
    assert tracking.close_stale_runs(mlflow_client, experiment_id, "kfp-now") == []


# ---------------------------------------------------------------- a state folder that cannot be written


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder that really refuses writes on this machine, without mounting anything.

    A folder chmod 0o500 refuses writes to an ordinary user, but not to root (tests run
    as root here: CAP_DAC_OVERRIDE ignores the mode bits). sysfs refuses to create an
    entry to everyone, root included (mkdir gives EPERM, a new file EACCES), so as root
    the state folder is a new folder under ``/sys``. Either way the choice is probed.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    candidates = [folder / "state", Path("/sys") / _unique("tabpipe-state")]
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True)
            (candidate / "probe").write_bytes(b"x")
        except OSError:
            return candidate
        (candidate / "probe").unlink()
        candidate.rmdir()
    pytest.skip("no folder refuses writes on this machine")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["read-only", "under-a-file"])
def test_run_with_an_unwritable_state_folder_fails_with_one_message(tmp_path: Path, kind: str) -> None:
    if kind == "read-only":
        state = _unwritable_folder(tmp_path)
    else:
        # A path below a regular file cannot be created by anyone (ENOTDIR).
        (tmp_path / "file.txt").write_text("not a folder")
        state = tmp_path / "file.txt" / "state"
    # A port nothing listens on: if the check did not stop the run, it would start a server.
    result = subprocess.run(
        [sys.executable, "-m", "tabpipe.cli", "run", "--state-dir", str(state), "--no-serve"]
        + ["--tracking-uri", f"http://127.0.0.1:{_free_port()}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: state folder {state} is not writable (")
    assert "mlflow" not in result.stdout  # nothing was started
    assert not state.exists()


# ---------------------------------------------------------------- a write that fails


def test_write_atomic_into_a_folder_that_refuses_writes() -> None:
    """sysfs refuses new files to everyone (EACCES, root included)."""
    target = Path("/sys") / f"{_unique('tabpipe')}.bin"
    with pytest.raises(TabpipeError) as caught:
        write_atomic(target, b"model bytes")
    assert type(caught.value).__name__ == "StorageError"
    assert str(target) in str(caught.value) and "permission denied" in str(caught.value)
    assert not [name for name in os.listdir("/sys") if "tabpipe" in name]


_CUT_SHORT = textwrap.dedent(
    """
    import resource, signal, sys
    from tabpipe.io import write_atomic

    # The kernel stops the write at 4 KiB (EFBIG), as a full disk stops it (ENOSPC): the
    # same path through write_atomic, with part of the temporary file already written.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    try:
        write_atomic(sys.argv[1], b"x" * 65536)
    except Exception as exc:
        print(type(exc).__name__, exc, sep=": ")
    """
)


def test_write_atomic_cut_short_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "model.skops"
    result = subprocess.run(
        [sys.executable, "-c", _CUT_SHORT, str(target)], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("StorageError: could not write "), result.stdout + result.stderr
    assert str(target) in result.stdout and "file too large" in result.stdout
    assert list(folder.iterdir()) == []  # neither the target nor a half-written temporary file


# ---------------------------------------------------------------- the summary reads the registry


def _summary_after(
    url: str, config, stages: list[StageTiming], failure: str | None, kfp_run_id: str
) -> RunSummary:
    from tabpipe.local_run import _fill_from_outputs, _fill_from_registry

    recorder = TaskRecorder()
    recorder.stages = {s.name: s for s in stages}
    recorder.pipeline_run_id = kfp_run_id
    summary = RunSummary(config.name, failure is None, 1.0, stages, url)
    _fill_from_outputs(summary, recorder)
    _fill_from_registry(summary, config, url, recorder, failure)
    return summary


def _trained(run_id: str) -> StageTiming:
    # The train task's model artifact as kfp.local hands it over: only its metadata is read.
    model = SimpleNamespace(metadata={Meta.MLFLOW_RUN_ID: run_id, Meta.ESTIMATOR: "logistic_regression"})
    return StageTiming("train", status="SUCCESS", outputs={"model": model})


@pytest.fixture
def registry_config(mlflow_server: str):
    config = load_config(REPO / "configs" / "phishing.yaml")
    name = _unique("summary")
    return config.model_copy(
        update={"name": name, "registry": config.registry.model_copy(update={"model_name": name})}
    )


def test_summary_names_the_version_a_failed_register_task_created(
    mlflow_server: str, registry_config
) -> None:
    config, url = registry_config, mlflow_server
    run_id, model_uri = _log_model(url, config.experiment_name)
    # Register wrote the version and the alias, then its task failed writing its output.
    version = tracking.register(url, config.registry.model_name, model_uri, run_id, "sha", {})
    reason = "could not write /state/pipeline_root/register/Output (no space left on device, errno 28)"
    tracking.record_outcome(url, config.experiment_name, "kfp-full", "failed", "register", reason)
    stages = [_trained(run_id), StageTiming("register", status="FAILURE")]

    summary = _summary_after(url, config, stages, "task register failed", "kfp-full")

    assert summary.registered_version == version
    assert summary.challenger_version == version and summary.champion_version is None
    assert (summary.failure_stage, summary.failure_reason) == ("register", reason)
    assert f"registered by this run: version {version}" in format_summary(summary)


def test_summary_after_deploy_failed_reads_the_aliases_from_the_registry(
    mlflow_server: str, registry_config
) -> None:
    config, url = registry_config, mlflow_server
    name = config.registry.model_name
    old_run, old_uri = _log_model(url, config.experiment_name)
    old = tracking.register(url, name, old_uri, old_run, "sha-old", {})
    tracking.promote(url, name, old)
    run_id, model_uri = _log_model(url, config.experiment_name)
    new = tracking.register(url, name, model_uri, run_id, "sha-new", {})
    stages = [
        _trained(run_id),
        StageTiming("register", status="SUCCESS", outputs={"Output": new}),
        StageTiming("deploy", status="FAILURE"),
    ]

    summary = _summary_after(url, config, stages, "task deploy failed", "kfp-deploy")

    assert summary.registered_version == new
    assert (summary.champion_version, summary.challenger_version) == (old, new)
    assert summary.failure_stage == "deploy"
    text = format_summary(summary)
    assert f"registered by this run: version {new}" in text
    assert f"aliases now: champion={old}, challenger={new}" in text


def test_summary_does_not_claim_a_version_register_did_not_write_in_this_run(
    mlflow_server: str, registry_config
) -> None:
    config, url = registry_config, mlflow_server
    run_id, model_uri = _log_model(url, config.experiment_name)
    # An earlier run registered this (cached) training run; this run's gate said no.
    tracking.register(url, config.registry.model_name, model_uri, run_id, "sha", {})

    summary = _summary_after(url, config, [_trained(run_id)], None, "kfp-unblessed")

    assert summary.registered_version is None
    assert "registered by this run: nothing" in format_summary(summary)
