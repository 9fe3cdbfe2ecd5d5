"""End to end: the compiled pipeline through kfp.local against a real MLflow server.

Each test runs the real pipeline (every task a subprocess, as on a cluster
each is a pod) and asserts on the MLflow registry, the tracking runs and the
artifacts the run left behind.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from tabpipe.config import DriftConfig, EvaluationConfig, Metric, PipelineConfig, SourceConfig, load_config
from tabpipe.local_run import RunSummary, run_pipeline

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "e2e"
SMALL_CONFIG = FIXTURES / "phishing_small.yaml"
SMALL_DATA = FIXTURES / "phishing_small.csv"

pytestmark = pytest.mark.slow


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _with(config: PipelineConfig, **update: object) -> PipelineConfig:
    """A copy of ``config`` with fields replaced, re-validated."""
    data = config.model_dump()
    data.update({k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in update.items()})
    return PipelineConfig.model_validate(data)


def _versions(uri: str, model_name: str) -> list:
    return _client(uri).search_model_versions(f"name = '{model_name}'")


def _run(config: PipelineConfig, uri: str, state: Path) -> RunSummary:
    return run_pipeline(config, uri, state, enable_caching=True, quiet=True)


@pytest.fixture(scope="module")
def happy_run(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[PipelineConfig, Path, RunSummary]:
    config = load_config(SMALL_CONFIG)
    state = tmp_path_factory.mktemp("happy")
    return config, state, _run(config, mlflow_server, state)


def test_first_run_registers_and_promotes_a_blessed_model(happy_run, mlflow_server: str) -> None:
    config, state, summary = happy_run
    assert summary.succeeded, summary.failure_reason
    assert [s.name for s in summary.stages] == [
        "ingest",
        "validate",
        "transform",
        "train",
        "evaluate",
        "register",
        "deploy",
        "record-outcome",
    ]
    assert summary.blessed
    client = _client(mlflow_server)
    versions = _versions(mlflow_server, config.registry.model_name)
    assert [v.version for v in versions] == ["1"]
    model = client.get_registered_model(config.registry.model_name)
    assert model.aliases == {"challenger": "1", "champion": "1"}

    version = versions[0]
    data_sha = hashlib.sha256(SMALL_DATA.read_bytes()).hexdigest()
    assert version.tags["tabpipe.data_version"] == data_sha
    assert version.tags["tabpipe.contract_hash"] == config.contract.fingerprint()
    assert version.tags["tabpipe.config_hash"] == config.fingerprint()
    assert version.tags["tabpipe.code_version"].startswith("0.1.0+src.")
    assert version.tags["tabpipe.kfp_run_id"]

    # The registered bundle is the one whose checksum the registry recorded.
    bundle = client.download_artifacts(version.run_id, "bundle/model.skops", str(state / "dl"))
    assert hashlib.sha256(Path(bundle).read_bytes()).hexdigest() == version.tags["tabpipe.bundle_sha256"]


def test_training_run_tracks_every_trial_and_the_evaluation(happy_run, mlflow_server: str) -> None:
    config, state, _ = happy_run
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name(config.experiment_name)
    parent = client.search_runs([experiment.experiment_id], "tags.`tabpipe.stage` = 'train'")[0]
    trials = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(trials) == config.search.n_iter * len(config.models)
    for trial in trials:
        assert "cv_roc_auc_mean" in trial.data.metrics
        assert "fit_seconds" in trial.data.metrics
        assert trial.data.params["estimator"] in {m.estimator.value for m in config.models}
    metrics = parent.data.metrics
    assert {"test_accuracy", "test_precision", "test_recall", "test_f1", "test_roc_auc"} <= set(metrics)
    assert metrics["test_roc_auc"] >= 0.9
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation/plots")}
    assert {
        "evaluation/plots/confusion_matrix.png",
        "evaluation/plots/roc_curve.png",
        "evaluation/plots/feature_importance.png",
    } <= artifacts
    # The best model is an MLflow model whose signature names the raw feature columns.
    import mlflow

    from tabpipe.features import feature_columns

    mlflow.set_tracking_uri(mlflow_server)
    logged = client.search_logged_models([experiment.experiment_id])
    assert len(logged) == 1
    info = mlflow.models.get_model_info(f"models:/{logged[0].model_id}")
    assert info.signature.inputs.input_names() == feature_columns(config).raw
    assert info.saved_input_example_info is not None


def test_kfp_artifacts_carry_metrics_and_the_deploy_bundle(happy_run) -> None:
    config, state, summary = happy_run
    root = state / "pipeline_root"
    (run_dir,) = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("tabpipe-training")]
    bundle = json.loads((run_dir / "deploy" / "bundle" / "bundle.json").read_text())
    assert bundle["version"] == "1"
    # The bundle carries the serving interface: the raw inputs with their contract rules, and the classes.
    from tabpipe.features import feature_columns

    assert [i["name"] for i in bundle["inputs"]] == feature_columns(config).raw
    assert bundle["inputs"][0]["rules"]["dtype"] == "integer"
    assert bundle["classes"] == [-1, 1]
    assert bundle["task"] == "binary_classification"
    # The ONNX fast path ships in the bundle, checksummed, and passed the parity gate.
    onnx_file = run_dir / "deploy" / "bundle" / "model.onnx"
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == bundle["onnx_sha256"]
    model_file = run_dir / "deploy" / "bundle" / "model.skops"
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == bundle["sha256"]
    blessing = json.loads((run_dir / "evaluate" / "blessing").read_text())
    assert blessing["blessed"] is True
    assert blessing["metrics"]["roc_auc"] >= 0.9
    parity = [c for c in blessing["checks"] if c["name"] == "onnx parity"]
    assert parity and parity[0]["passed"], parity
    report = (run_dir / "validate" / "report").read_text()
    assert "PASS" in report
    validation = json.loads((run_dir / "validate" / "report_json").read_text())
    assert validation["violations"] == []
    ingest_split = pd.read_parquet(run_dir / "ingest" / "train")
    test_split = pd.read_parquet(run_dir / "ingest" / "test")
    rows = len(ingest_split) + len(test_split) + len(pd.read_parquet(run_dir / "ingest" / "validation"))
    source = pd.read_csv(SMALL_DATA)
    removed = int(source.duplicated().sum())
    assert removed > 0 and rows == 1200 - removed  # exact duplicates dropped before the split
    assert summary.data["duplicates_removed"] == removed
    train_rows = set(map(tuple, ingest_split.to_numpy()))
    assert not any(tuple(row) in train_rows for row in test_split.to_numpy())


def test_unchanged_rerun_is_served_from_the_cache(happy_run, mlflow_server: str) -> None:
    config, state, _ = happy_run
    again = _run(config, mlflow_server, state)
    assert again.succeeded
    cached = {s.name for s in again.stages if s.cached}
    assert cached == {"ingest", "validate", "transform", "train", "evaluate", "register", "deploy"}
    assert [v.version for v in _versions(mlflow_server, config.registry.model_name)] == ["1"]


def test_model_worse_than_thresholds_is_not_registered(happy_run, mlflow_server: str, tmp_path: Path) -> None:
    config, _, _ = happy_run
    strict = _with(
        config,
        evaluation=EvaluationConfig(primary_metric=Metric.ROC_AUC, thresholds={Metric.ROC_AUC: 0.99999}),
    )
    summary = _run(strict, mlflow_server, tmp_path)
    assert summary.succeeded
    assert not summary.blessed
    assert any("roc_auc" in r for r in summary.blessing["reasons"])
    stages = [s.name for s in summary.stages]
    assert "register" not in stages and "deploy" not in stages
    model = _client(mlflow_server).get_registered_model(config.registry.model_name)
    assert model.aliases["champion"] == "1"
    assert [v.version for v in _versions(mlflow_server, config.registry.model_name)] == ["1"]


# ---- bad input: every case stops the run, names the problem, registers nothing ----


def _write_bad(kind: str, tmp_path: Path) -> tuple[Path, dict]:
    """Write one kind of bad source file; return it and config overrides."""
    good = pd.read_csv(SMALL_DATA)
    path = tmp_path / "data.csv"
    overrides: dict = {}
    if kind == "missing_file":
        path = tmp_path / "nope.csv"
    elif kind == "empty_file":
        path.write_text("")
    elif kind == "corrupt_parquet":
        path = tmp_path / "data.parquet"
        path.write_bytes(b"PAR1" + bytes(range(256)) * 4)
    elif kind == "missing_column":
        good.drop(columns=["web_traffic"]).to_csv(path, index=False)
    elif kind == "extra_column":
        good.assign(surprise=1).to_csv(path, index=False)
    elif kind == "wrong_dtype":
        bad = good.astype({"Page_Rank": object})
        bad.loc[:10, "Page_Rank"] = "high"
        bad.to_csv(path, index=False)
    elif kind == "out_of_range":
        good.loc[:4, "URL_Length"] = 7
        good.to_csv(path, index=False)
    elif kind == "all_null_column":
        good.assign(port=float("nan")).to_csv(path, index=False)
    elif kind == "missing_target":
        good.drop(columns=["Result"]).to_csv(path, index=False)
    elif kind == "single_class_target":
        good.assign(Result=1).to_csv(path, index=False)
    elif kind == "nan_target":
        good.loc[[5, 50, 500], "Result"] = float("nan")
        good.to_csv(path, index=False)
    elif kind == "feature_is_the_target":
        good.assign(Page_Rank=good["Result"]).to_csv(path, index=False)
    elif kind == "duplicate_header":
        text = good.to_csv(index=False).splitlines()
        path.write_text("\n".join([text[0] + ",URL_Length"] + [line + ",1" for line in text[1:]]) + "\n")
    elif kind == "drift":
        full = pd.read_csv(REPO / "data" / "phishing" / "phishing_websites.csv")
        mix = pd.concat(
            [
                full[full.Result == -1].sample(680, random_state=1),
                full[full.Result == 1].sample(120, random_state=1),
            ]
        ).sample(frac=1, random_state=2)
        mix.to_csv(path, index=False)
        overrides["drift"] = DriftConfig(reference_uri=str(SMALL_DATA), alpha=0.05, max_drifted_share=0.2)
    return path, overrides


BAD_INPUTS = {
    "missing_file": ("ingest", "file not found"),
    "empty_file": ("ingest", "file is empty"),
    "corrupt_parquet": ("ingest", "not a valid parquet file"),
    "missing_column": ("validate", "missing column(s): ['web_traffic']"),
    "extra_column": ("validate", "unexpected column(s): ['surprise']"),
    "wrong_dtype": ("validate", "column 'Page_Rank'"),
    "out_of_range": ("validate", "column 'URL_Length'"),
    "all_null_column": ("validate", "column 'port' is entirely null"),
    "missing_target": ("ingest", "target column 'Result' is missing"),
    "single_class_target": ("ingest", "single class"),
    "nan_target": ("ingest", "target 'Result': 3 row(s) have no value"),
    "feature_is_the_target": ("validate", "feature 'Page_Rank' alone predicts the target"),
    "duplicate_header": ("ingest", "the header names column(s) ['URL_Length'] more than once"),
    "drift": ("validate", "drift"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_stops_the_run_and_registers_nothing(kind: str, mlflow_server: str, tmp_path: Path) -> None:
    base = load_config(SMALL_CONFIG)
    path, overrides = _write_bad(kind, tmp_path)
    name = f"bad-{kind.replace('_', '-')}"
    config = _with(
        base,
        name=name,
        source=SourceConfig(uri=str(path)),
        registry={"model_name": name},
        **overrides,
    )
    summary = _run(config, mlflow_server, tmp_path / "state")
    stage, needle = BAD_INPUTS[kind]
    assert not summary.succeeded
    assert summary.failure_stage == stage
    assert needle in summary.failure_reason
    assert "Traceback" not in summary.failure_reason
    ran = [s.name for s in summary.stages]
    assert "train" not in ran and "register" not in ran and "deploy" not in ran
    assert _versions(mlflow_server, name) == []
    # The exit handler still ran and the failure is on record in MLflow.
    assert ran[-1] == "record-outcome"
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name(name)
    failed = client.search_runs([experiment.experiment_id], "tags.`tabpipe.outcome` = 'failed'")
    assert failed and failed[0].data.tags["tabpipe.failed_stage"] == stage


@pytest.mark.parametrize(
    ("config_file", "metric", "floor"),
    [("wine.yaml", "f1", 0.85), ("housing.yaml", "r2", 0.6)],
    ids=["multiclass", "regression"],
)
def test_other_tasks_run_end_to_end(
    config_file: str, metric: str, floor: float, mlflow_server: str, tmp_path: Path
) -> None:
    """Multiclass (string labels, engineered ratio) and regression (categoricals, missing values, PII id)."""
    config = load_config(REPO / "configs" / config_file)
    config = _with(config, search=config.search.model_copy(update={"n_iter": 2, "cv_folds": 2}))
    summary = _run(config, mlflow_server, tmp_path)
    assert summary.succeeded, summary.failure_reason
    assert summary.blessed
    assert summary.blessing["metrics"][metric] >= floor
    model = _client(mlflow_server).get_registered_model(config.registry.model_name)
    assert model.aliases == {"challenger": "1", "champion": "1"}
    (run_dir,) = [p for p in (tmp_path / "pipeline_root").iterdir() if p.name.startswith("tabpipe-training")]
    bundle = json.loads((run_dir / "deploy" / "bundle" / "bundle.json").read_text())
    if config.task.is_classification:
        assert bundle["classes"] == ["cultivar_a", "cultivar_b", "cultivar_c"]
    else:
        # The PII identifier never reaches the model's inputs.
        assert "listing_id" not in [i["name"] for i in bundle["inputs"]]
        clean = pd.read_parquet(run_dir / "validate" / "clean_train")
        assert "listing_id" not in clean.columns


# ---- deploy to a live Open Inference Protocol endpoint: load, smoke-test, promote; or roll back ----


def _start_server(uri: str, model_name: str, tmp_path: Path, *extra: str):
    import socket
    import sys

    from tabpipe.mlflow_server import start_detached
    from tabpipe.serving.launcher import is_live

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tabpipe.serving", "--model", f"models:/{model_name}@champion",
               "--tracking-uri", uri, "--port", str(port), *extra]  # fmt: skip
    return start_detached(
        "serving endpoint", command, url, lambda: is_live(url), tmp_path / f"serve-{port}.log"
    )


def _served(url: str, model_name: str) -> list[str]:
    import requests

    answer = requests.get(f"{url}/v2/models/{model_name}", timeout=5)
    return answer.json()["versions"] if answer.status_code == 200 else []


def test_deploy_loads_smoke_tests_and_promotes_then_rolls_back(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    from tabpipe.mlflow_server import stop_server

    name = "deploy-e2e"
    base = load_config(SMALL_CONFIG)
    config = _with(
        base,
        name=name,
        registry={"model_name": name},
        search=base.search.model_copy(update={"n_iter": 1}),
        evaluation=base.evaluation.model_copy(update={"champion_tolerance": 0.05}),
    )
    # The servers' repository endpoints need a token; the servers and the deploy task inherit it.
    monkeypatch.setenv("TABPIPE_SERVING_ADMIN_TOKEN", "e2e-admin-token-0123456789abcdef")
    server = _start_server(mlflow_server, name, tmp_path)
    strict = None
    try:
        # First deploy: the server starts with no champion (not ready), then serves version 1.
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 503
        first = run_pipeline(config, mlflow_server, tmp_path / "one", quiet=True, serving_url=server.url)
        assert first.succeeded, first.failure_reason
        assert first.served_version == "1"
        assert _served(server.url, name) == ["1"]
        assert _client(mlflow_server).get_registered_model(name).aliases["champion"] == "1"

        # Another data set's model deployed to the same endpoint is served beside it, never instead.
        other = _with(config, name=f"{name}-other", registry={"model_name": f"{name}-other"})
        beside = run_pipeline(other, mlflow_server, tmp_path / "other", quiet=True, serving_url=server.url)
        assert beside.succeeded, beside.failure_reason
        assert _served(server.url, name) == ["1"] and _served(server.url, f"{name}-other") == ["1"]

        # A server that answers 413 to the 20-row smoke test: the new version must not go live.
        strict = _start_server(
            mlflow_server, name, tmp_path, "--max-rows", "1", "--model", f"models:/{name}-other@champion"
        )
        deadline = time.monotonic() + 90  # the champions load in the background; slow on a busy machine
        while (
            time.monotonic() < deadline
            and requests.get(f"{strict.url}/v2/health/ready", timeout=5).status_code != 200
        ):
            time.sleep(0.5)
        assert _served(strict.url, name) == ["1"], strict.log_path.read_text()[-3000:]
        changed = _with(config, split=config.split.model_copy(update={"seed": 8}))
        second = run_pipeline(changed, mlflow_server, tmp_path / "two", quiet=True, serving_url=strict.url)
        assert not second.succeeded
        assert second.failure_stage == "deploy"
        assert "smoke test" in second.failure_reason and "413" in second.failure_reason
        assert "version 1 again" in second.failure_reason
        aliases = _client(mlflow_server).get_registered_model(name).aliases
        assert aliases["champion"] == "1"  # champion unchanged
        assert aliases["challenger"] == "2"  # registered, never promoted
        assert _served(strict.url, name) == ["1"]  # the server was rolled back
        assert _served(strict.url, f"{name}-other") == ["1"]  # and the other model never touched
    finally:
        stop_server(server)
        if strict is not None:
            stop_server(strict)


# ---- the summary describes this run, and the console stays short ----


def test_a_cached_rerun_summarises_its_own_run_not_the_newest_in_the_experiment(
    happy_run, mlflow_server: str, tmp_path: Path
) -> None:
    config, state, first = happy_run
    assert first.blessed and first.mlflow_run_url
    # Another run in the same experiment, newer, with a threshold the model misses.
    strict = _with(
        config,
        evaluation=EvaluationConfig(primary_metric=Metric.ROC_AUC, thresholds={Metric.ROC_AUC: 0.99999}),
    )
    other = _run(strict, mlflow_server, tmp_path / "strict")
    assert not other.blessed and other.mlflow_run_url != first.mlflow_run_url
    again = _run(config, mlflow_server, state)  # every stage but the exit handler from the cache
    assert {s.name for s in again.stages if s.cached} >= {"train", "evaluate"}
    assert again.blessed
    assert again.mlflow_run_url == first.mlflow_run_url
    assert again.blessing["metrics"] == first.blessing["metrics"]
    assert again.estimator == first.estimator and again.best_params == first.best_params


def test_tabpipe_run_prints_a_short_summary_and_logs_the_rest(mlflow_server: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tabpipe.cli", "run", "--config", str(SMALL_CONFIG), "--tracking-uri",
         mlflow_server, "--state-dir", str(tmp_path), "--no-serve", "--reuse-servers"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 50, result.stdout
    text = result.stdout
    assert "winner: " in text and "test metrics: " in text and "leakage: " in text and "drift: " in text
    assert f"mlflow: {mlflow_server} (not started by this project; reused as asked)" in text
    assert "RuntimeWarning" not in result.stderr and "config_json" not in text
    log_line = next(line for line in lines if line.startswith("full log: "))
    log_text = Path(log_line.removeprefix("full log: ")).read_text()
    assert "Executing task" in log_text and "Task 'record-outcome'" in log_text.replace(
        "\x1b[96m", ""
    ).replace("\x1b[0m", "")
