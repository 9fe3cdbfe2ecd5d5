"""Errors are classified once: deterministic failures fail once, only an unreachable MLflow is retried.

Each test runs the real thing (the compiled pipeline YAML, the ``tabpipe`` CLI, a stage
in its own interpreter against a real HTTP endpoint) and asserts on exit codes,
messages and elapsed time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "tabpipe"
#: What a stage may take to give up on an unreachable MLflow (MLflow's own defaults: about 4 minutes).
STAGE_GIVE_UP_SECONDS = 60


def _cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "tabpipe.cli"]
    return subprocess.run(
        [*command, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def _tasks(node: object) -> Iterator[tuple[str, dict]]:
    """Every task of every DAG in a compiled pipeline document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "tasks" and isinstance(value, dict):
                yield from value.items()
            yield from _tasks(value)
    elif isinstance(node, list):
        for item in node:
            yield from _tasks(item)


@pytest.mark.parametrize("source", ["committed", "fresh"])
def test_compiled_pipeline_retries_no_task(source: str, tmp_path: Path) -> None:
    """KFP would retry any failure, a misspelt hyperparameter as much as a network blip."""
    if source == "committed":
        path = REPO / "pipelines" / "training_pipeline.yaml"
    else:
        from pipelines.training import compile_pipeline

        path = compile_pipeline(tmp_path / "pipeline.yaml")
    documents = list(yaml.safe_load_all(path.read_text()))
    tasks = dict(t for doc in documents for t in _tasks(doc))
    assert {"train", "evaluate", "register", "deploy", "validate", "ingest"} <= set(tasks)
    retried = {name for name, task in tasks.items() if "retryPolicy" in task}
    assert retried == set()


def test_misspelt_hyperparameter_fails_once_at_config_check(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "phishing.yaml").read_text())
    config["contract"] = str(REPO / "configs" / "phishing_contract.yaml")
    config["source"]["uri"] = str(REPO / "data" / "phishing" / "phishing_websites.csv")
    lr = next(m for m in config["models"] if m["estimator"] == "logistic_regression")
    lr["params"] = {"CC": [0.1, 1.0]}  # misspelt C
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    state = tmp_path / "state"

    started = time.perf_counter()
    result = _cli("run", "--config", bad, "--tracking-uri", "http://127.0.0.1:9", "--state-dir", state)
    elapsed = time.perf_counter() - started

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "CC" in result.stderr
    # Nothing started: no MLflow server (so no run in it), no pipeline state.
    assert not state.exists()
    assert "started MLflow server" not in result.stdout
    assert elapsed < 30


def test_infinite_regression_target_fails_at_validate_with_one_message(tmp_path: Path) -> None:
    frame = pd.read_csv(REPO / "data" / "housing" / "housing.csv")
    frame.loc[[3, 50, 700], "price"] = np.inf
    data = tmp_path / "inf.csv"
    frame.to_csv(data, index=False)

    result = _cli("validate", "--config", REPO / "configs" / "housing.yaml", "--data", data)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stdout.splitlines() if "'price'" in line and "infinite" in line]
    assert lines == ["- column 'price': 3 infinite value(s) (e.g. inf)"]


def test_quality_names_missing_and_infinite_targets_whatever_the_contract_says() -> None:
    """A nullable classification target, or one the contract does not type as numbers, still needs values."""
    from tabpipe.config import load_config
    from tabpipe.stages.validate import check_quality

    config = load_config(REPO / "configs" / "wine.yaml")
    contract = config.contract.model_copy(deep=True)
    contract.columns["cultivar"] = contract.columns["cultivar"].model_copy(update={"nullable": True})
    frame = pd.read_csv(REPO / "data" / "wine" / "wine.csv").astype({"cultivar": object})
    frame.loc[[0, 1], "cultivar"] = None
    frame.loc[[5, 6, 7], "cultivar"] = float("inf")

    violations, _, _ = check_quality(frame, contract, "cultivar", config.task)

    assert "target 'cultivar': 2 missing value(s)" in violations
    assert "target 'cultivar': 3 infinite value(s); every target value must be finite" in violations


class _Gateway(BaseHTTPRequestHandler):
    """An endpoint in front of a stopped MLflow: healthy, but every API call gets 503."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        ok = self.path.startswith("/health")
        body = b"OK" if ok else b"upstream MLflow is down"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stopped_mlflow() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_STAGE = """
import sys
from tabpipe.guard import stage_guard
from tabpipe.tracking import client, ensure_experiment

uri = sys.argv[1]
with stage_guard("register", uri, "bounded-failure", "kfp-run-1"):
    ensure_experiment(client(uri), "bounded-failure")
"""


def _run_stage(uri: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[float, object]:
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-c", _STAGE, uri],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        return time.perf_counter() - started, exc
    return time.perf_counter() - started, result


def test_stage_gives_up_on_a_stopped_mlflow_in_bounded_time(stopped_mlflow: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _STAGE, stopped_mlflow],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=STAGE_GIVE_UP_SECONDS * 3,
        check=False,
        env=env,
    )
    elapsed = time.perf_counter() - started
    print(f"stage gave up after {elapsed:.1f} s")

    assert result.returncode == 1, result.stderr
    assert elapsed < STAGE_GIVE_UP_SECONDS
    assert "Traceback" not in result.stderr
    assert "stage 'register' failed" in result.stderr
    assert f"MLflow tracking server at {stopped_mlflow} is not reachable" in result.stderr
    assert result.stderr.count("stage 'register' failed") == 1


def test_a_port_with_nothing_listening_fails_fast_naming_the_endpoint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    elapsed, result = _run_stage(uri, timeout=STAGE_GIVE_UP_SECONDS * 3)
    print(f"stage gave up after {elapsed:.1f} s")

    assert result.returncode == 1, result.stderr
    assert elapsed < STAGE_GIVE_UP_SECONDS
    assert "Traceback" not in result.stderr
    assert f"MLflow tracking server at {uri} is not reachable" in result.stderr
