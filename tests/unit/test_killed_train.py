"""``kill -9`` during train: the next pipeline run's train stage closes the runs it left RUNNING.

The train stage adapter really runs (real search, real MLflow server) in a subprocess
that is killed with SIGKILL while its MLflow runs are open; then the train stage of the
next pipeline run runs, and the registry of runs is read back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tabpipe import tracking
from tabpipe.config import PipelineConfig, load_config

# Real MLflow servers and killed subprocesses: minutes, so in make test-e2e.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMALL_CONFIG = REPO / "tests" / "fixtures" / "e2e" / "phishing_small.yaml"

_TRAIN = textwrap.dedent(
    """
    import json, sys
    from tabpipe.adapters import train as stage
    from tabpipe.config import PipelineConfig
    from tabpipe.log import configure_logging
    from tabpipe.tracking import RunContext

    configure_logging()  # as the stage guard does: the count of closed runs is logged
    args = json.loads(sys.argv[1])
    config = PipelineConfig.from_parameter(args["config"])
    ctx = RunContext(args["url"], "data-v", "contract-h", "config-h", "code-v", args["kfp_run_id"])
    inputs = stage.TrainInputs(args["train"], args["validation"], args["preprocessor"], args["sha"])
    outputs = stage.TrainOutputs(args["model"], args["onnx"])
    result = stage.run(config, ctx, inputs, outputs)
    print(json.dumps({"run_id": result.mlflow_run_id}))
    """
)


@pytest.fixture
def train_inputs(mlflow_server: str, tmp_path: Path) -> tuple[PipelineConfig, dict[str, str]]:
    from tabpipe.adapters import transform

    base = load_config(SMALL_CONFIG)
    name = f"killed-train-{uuid.uuid4().hex[:8]}"
    config = base.model_copy(
        update={"name": name, "registry": base.registry.model_copy(update={"model_name": name})}
    )
    data = pd.read_csv(base.source.uri)
    train, validation = tmp_path / "train.parquet", tmp_path / "validation.parquet"
    data.iloc[:700].to_parquet(train)
    data.iloc[700:900].to_parquet(validation)
    preprocessor = tmp_path / "preprocessor.skops"
    fitted = transform.run(config, train, preprocessor, tmp_path / "features.md")
    args = {
        "config": config.to_parameter(),
        "url": mlflow_server,
        "train": str(train),
        "validation": str(validation),
        "preprocessor": str(preprocessor),
        "sha": fitted.sha256,
        "model": str(tmp_path / "model.skops"),
        "onnx": str(tmp_path / "model.onnx"),
    }
    return config, args


def _runs(mlflow_client, experiment_id: str, kfp_run_id: str) -> list:
    return mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{tracking.Tag.KFP_RUN_ID}` = '{kfp_run_id}'"
    )


def _settled_runs(mlflow_client, experiment_id: str, kfp_run_id: str) -> list:
    """The runs once the server has finished the requests the killed task had in flight.

    SIGKILL ends the client, not the server's handling of requests already sent: a trial's
    ``create_run`` or ``set_terminated`` can still land just after the kill. Read until two
    reads a second apart agree on every run and its status.
    """
    deadline = time.monotonic() + 30
    previous = None
    while True:
        runs = _runs(mlflow_client, experiment_id, kfp_run_id)
        current = sorted((r.info.run_id, r.info.status) for r in runs)
        if current == previous:
            return runs
        assert time.monotonic() < deadline, "the killed task's runs kept changing for 30 s"
        previous = current
        time.sleep(1.0)


def test_train_after_a_killed_train_closes_the_runs_it_left_running(mlflow_server: str, train_inputs) -> None:
    config, args = train_inputs
    mlflow_client = tracking.client(mlflow_server)
    experiment_id = tracking.ensure_experiment(mlflow_client, config.experiment_name)
    task = subprocess.Popen(
        [sys.executable, "-c", _TRAIN, json.dumps(args | {"kfp_run_id": "kfp-killed"})],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill the task the moment its training run exists: the run is open until the model is logged.
        deadline = time.monotonic() + 180
        while not _runs(mlflow_client, experiment_id, "kfp-killed"):
            assert task.poll() is None, "the train task ended before it could be killed"
            assert time.monotonic() < deadline, "the train task never opened an MLflow run"
            time.sleep(0.1)
    finally:
        os.kill(task.pid, signal.SIGKILL)
        task.wait(timeout=30)
    assert task.returncode == -signal.SIGKILL
    left = _settled_runs(mlflow_client, experiment_id, "kfp-killed")
    assert "RUNNING" in {run.info.status for run in left}, [run.info.status for run in left]

    # The next pipeline run's train stage.
    result = subprocess.run(
        [sys.executable, "-c", _TRAIN, json.dumps(args | {"kfp_run_id": "kfp-next"})],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    closed = sum(1 for r in left if r.info.status == "RUNNING")
    assert f"closed {closed} MLflow run(s) left RUNNING by killed tasks" in result.stderr

    reason = "left RUNNING by a task that was killed; closed by pipeline run kfp-next"
    at_kill = {r.info.run_id: r.info.status for r in left}
    for run in _runs(mlflow_client, experiment_id, "kfp-killed"):
        if at_kill.get(run.info.run_id, "RUNNING") == "RUNNING":
            assert run.info.status == "FAILED" and run.data.tags[tracking.Tag.FAILURE_REASON] == reason
        else:
            # Runs that had ended before the kill stay as they were (a trial may have FAILED on its own).
            assert run.info.status == at_kill[run.info.run_id], (run.info.run_id, at_kill)
    assert {run.info.status for run in _runs(mlflow_client, experiment_id, "kfp-killed")} <= {
        "FAILED",
        "FINISHED",
    }
    new_run = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    assert mlflow_client.get_run(new_run).info.status == "FINISHED"
    statuses = {run.info.status for run in _runs(mlflow_client, experiment_id, "kfp-next")}
    assert statuses == {"FINISHED"}
