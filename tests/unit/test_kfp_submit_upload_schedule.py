"""``tabpipe submit``, ``upload`` and ``schedule`` against a KFP API on loopback.

No Kubernetes cluster (and so no real KFP API server) can run here: the API is
:mod:`fake_kfp_api`, a real HTTP server on 127.0.0.1 answering the v2beta1 REST
calls ``kfp.Client`` makes. The command line runs as a subprocess, as a user
runs it; the tests assert on its exit codes and messages and on the requests
the server received.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fake_kfp_api import FakeKfp, FakeKfpServer

from tabpipe.config import PipelineConfig, load_config
from tabpipe.submit import (
    CLUSTER_TRACKING_URI,
    DEFAULT_CRON,
    IMAGE_ROOT,
    PIPELINE_SERVICE_ACCOUNT,
    RUN_EXIT_CODES,
    check_cron,
    cluster_config,
    version_name,
    versioned_spec,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "phishing.yaml"
COMMITTED = REPO / "pipelines" / "training_pipeline.yaml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "tabpipe"


def tabpipe(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "tabpipe.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES")}
    # A clean HOME: no ~/.config/kfp/context.json from a real cluster; loopback never through a proxy.
    env.update(HOME=str(home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run(
        [*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same command in this process (no interpreter start-up): exit code, stdout, stderr."""
    from tabpipe.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def kfp() -> Iterator[FakeKfpServer]:
    with FakeKfpServer() as server:
        yield server


def submit(server: FakeKfpServer, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return tabpipe(
        "submit", "--config", str(CONFIG), "--host", server.url, "--poll-interval", "0.05", *extra, home=home
    )


def _one_line_error(result: subprocess.CompletedProcess[str] | str) -> str:
    stderr = result if isinstance(result, str) else result.stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def submit_args(server: FakeKfpServer, *extra: str) -> list[str]:
    return ["submit", "--config", str(CONFIG), "--host", server.url, "--poll-interval", "0.02", *extra]


# --------------------------------------------------------------------------- submit and wait


def test_submit_waits_for_success_and_prints_the_run_url(kfp: FakeKfpServer, tmp_path: Path) -> None:
    result = submit(kfp, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_id,) = kfp.fake.runs
    url = f"{kfp.url}/#/runs/details/{run_id}"
    assert f"run: {url}" in result.stdout
    assert [line.strip() for line in result.stdout.splitlines() if "state:" in line] == [
        "state: PENDING",
        "state: RUNNING",
        "state: SUCCEEDED",
    ]
    assert f"run {run_id} SUCCEEDED in" in result.stdout
    assert "Traceback" not in result.stderr


def test_submit_keeps_the_compiled_caching_settings(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture
) -> None:
    assert in_process(capsys, *submit_args(kfp, "--no-wait"))[0] == 0
    (create,) = kfp.fake.calls("POST", "/runs")
    body = create.body
    assert "enable_caching" not in json.dumps(body)
    # The spec sent is the committed one, task for task: no run-wide caching override.
    sent = body["pipeline_spec"]["pipeline_spec"] if "pipeline_spec" in body["pipeline_spec"] else None
    spec = sent or body["pipeline_spec"]
    committed = list(yaml.safe_load_all(COMMITTED.read_text()))
    assert spec["root"] == committed[0]["root"]
    assert spec["components"] == committed[0]["components"]
    root_tasks = spec["root"]["dag"]["tasks"]
    assert root_tasks["record-outcome"]["cachingOptions"] == {}
    exit_handler = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert all(
        t["cachingOptions"] == {"enableCache": True} for t in exit_handler.values() if "cachingOptions" in t
    )
    params = body["runtime_config"]["parameters"]
    assert params["mlflow_tracking_uri"] == CLUSTER_TRACKING_URI
    assert params["code_version"].startswith("0.1.0+src.")
    assert json.loads(params["config_json"])["source"]["uri"].startswith(f"{IMAGE_ROOT}/data/")
    assert body["service_account"] == PIPELINE_SERVICE_ACCOUNT


def test_no_wait_returns_once_the_run_exists(kfp: FakeKfpServer, capsys: pytest.CaptureFixture) -> None:
    kfp.fake.run_states = ["RUNNING"]
    code, out, err = in_process(capsys, *submit_args(kfp, "--no-wait"))
    assert code == 0, err
    (run_id,) = kfp.fake.runs
    assert f"/#/runs/details/{run_id}" in out
    assert kfp.fake.calls("GET", "/runs/") == []


@pytest.mark.parametrize(
    ("final", "error", "expected"),
    [
        ("FAILED", "task train failed: exit status 1", "ended FAILED: task train failed: exit status 1"),
        ("ERROR", None, "ended ERROR"),
        ("CANCELED", None, "was CANCELED"),
        ("SKIPPED", None, "ended SKIPPED"),
    ],
)
def test_every_end_but_success_has_its_own_exit_code(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture, final: str, error: str | None, expected: str
) -> None:
    kfp.fake.run_states = ["RUNNING", final]
    kfp.fake.run_error = error
    code, _, err = in_process(capsys, *submit_args(kfp))
    assert code == RUN_EXIT_CODES[final] != 0
    line = _one_line_error(err)
    (run_id,) = kfp.fake.runs
    assert f"run {run_id} {expected}" in line
    assert f"/#/runs/details/{run_id}" in line


def test_a_canceled_run_ends_the_wait(kfp: FakeKfpServer, capsys: pytest.CaptureFixture) -> None:
    """kfp.Client.wait_for_run_completion knows no CANCELED and would wait until its timeout."""
    kfp.fake.run_states = ["RUNNING", "CANCELING", "CANCELING", "CANCELED"]
    code, out, err = in_process(capsys, *submit_args(kfp, "--timeout", "60"))
    assert code == RUN_EXIT_CODES["CANCELED"]
    assert [line.strip() for line in out.splitlines() if "state:" in line] == [
        "state: RUNNING",
        "state: CANCELING",
        "state: CANCELED",
    ]
    assert "was CANCELED" in _one_line_error(err)
    assert len(kfp.fake.calls("GET", "/runs/")) == 4


def test_a_failed_run_from_the_command_line(kfp: FakeKfpServer, tmp_path: Path) -> None:
    """The same as a user's shell sees it: the exit code, one line on stderr, no traceback."""
    kfp.fake.run_states = ["PENDING", "RUNNING", "FAILED"]
    kfp.fake.run_error = "task train failed"
    result = submit(kfp, tmp_path)
    assert result.returncode == 3
    (run_id,) = kfp.fake.runs
    assert _one_line_error(result) == (
        f"error: run {run_id} ended FAILED: task train failed ({kfp.url}/#/runs/details/{run_id})"
    )


def test_exit_codes_are_distinct() -> None:
    from tabpipe.submit import EXIT_INTERRUPTED, EXIT_TIMEOUT

    codes = [*RUN_EXIT_CODES.values(), EXIT_TIMEOUT, EXIT_INTERRUPTED, 1, 2]
    assert len(codes) == len(set(codes))


def test_timeout_says_the_run_keeps_running(kfp: FakeKfpServer, tmp_path: Path) -> None:
    kfp.fake.run_states = ["RUNNING"]
    result = submit(kfp, tmp_path, "--timeout", "1")
    assert result.returncode == 6
    line = _one_line_error(result)
    assert "still RUNNING after 1 s; it keeps running on the cluster" in line
    assert len(kfp.fake.calls("GET", "/runs/")) >= 3


def test_a_few_failed_polls_are_ridden_out(kfp: FakeKfpServer, capsys: pytest.CaptureFixture) -> None:
    kfp.fake.get_run_failures = 2  # a port-forward that restarts
    code, out, err = in_process(capsys, *submit_args(kfp))
    assert code == 0, err
    assert "SUCCEEDED" in out


def test_api_that_keeps_failing_while_waiting_is_one_line(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture
) -> None:
    kfp.fake.get_run_failures = 100
    code, _, err = in_process(capsys, *submit_args(kfp))
    assert code == 1
    line = _one_line_error(err)
    (run_id,) = kfp.fake.runs
    assert "get run failed: HTTP 503" in line and "upstream connect error" in line
    assert f"while waiting for run {run_id}, which keeps running" in line


def test_api_refusing_the_run_is_one_line_with_its_reason(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture
) -> None:
    kfp.fake.create_run_status = 400
    code, _, err = in_process(capsys, *submit_args(kfp))
    assert code == 1
    line = _one_line_error(err)
    assert f"KFP API at {kfp.url}: create run failed: HTTP 400" in line
    assert "run spec rejected: invalid pipeline spec" in line


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("command", ["submit", "upload", "schedule"])
def test_unreachable_api_is_one_line_and_non_zero(command: str, tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    result = tabpipe(command, "--host", host, home=tmp_path, timeout=60)
    assert result.returncode == 1
    line = _one_line_error(result)
    assert line.startswith(f"error: cannot reach the KFP API at {host} (Connection refused)")
    assert "make cluster-up serves KFP at http://localhost:18080" in line
    assert "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 18080:80" in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("healthz", "problem"),
    [
        ((302, "text/html", b"<a href='/dex/auth'>Found</a>"), "answered HTTP 302 on /apis/v2beta1/healthz"),
        (
            (200, "text/html", b"<html>Kubeflow</html>"),
            "answered /apis/v2beta1/healthz with something other than JSON",
        ),
        (
            (404, "text/plain", b"404 page not found"),
            "answered HTTP 404 on /apis/v2beta1/healthz: 404 page not found",
        ),
    ],
)
def test_something_else_at_the_host_is_one_line(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture, healthz: tuple, problem: str
) -> None:
    kfp.fake.healthz = healthz
    code, _, err = in_process(capsys, *submit_args(kfp))
    assert code == 1
    line = _one_line_error(err)
    assert line.startswith(f"error: {kfp.url} is not the KFP API: it {problem}")
    assert [r.path for r in kfp.fake.received] == ["/apis/v2beta1/healthz"]


def test_options_are_checked_before_any_request(kfp: FakeKfpServer, capsys: pytest.CaptureFixture) -> None:
    code, _, err = in_process(capsys, *submit_args(kfp, "--timeout", "0"))
    assert code == 2
    assert "--timeout and --poll-interval must be positive" in _one_line_error(err)
    assert kfp.fake.received == []


# --------------------------------------------------------------------------- upload


def upload(server: FakeKfpServer, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return tabpipe("upload", "--host", server.url, *extra, home=home)


def test_upload_creates_the_pipeline_and_a_version_once(kfp: FakeKfpServer, tmp_path: Path) -> None:
    first = upload(kfp, tmp_path)
    assert first.returncode == 0, first.stderr
    (pipeline,) = kfp.fake.pipelines.values()
    assert pipeline["display_name"] == "tabpipe-training"
    (version,) = kfp.fake.versions.values()
    name = version["name"]
    assert name.startswith("0.1.0-src.") and "-spec." in name
    assert f"version {name} ({version['pipeline_version_id']}) uploaded" in first.stdout
    link = f"{kfp.url}/#/pipelines/details/{pipeline['pipeline_id']}/version/{version['pipeline_version_id']}"
    assert f"start a run: {link}" in first.stdout

    # The uploaded version is the committed spec with the code version as code_version's default.
    uploaded = list(yaml.safe_load_all(version["spec_text"]))
    committed = list(yaml.safe_load_all(COMMITTED.read_text()))
    parameters = uploaded[0]["root"]["inputDefinitions"]["parameters"]
    code_version = parameters["code_version"]["defaultValue"]
    assert code_version.startswith("0.1.0+src.") and name.startswith(code_version.replace("+", "-"))
    parameters["code_version"]["defaultValue"] = ""
    assert uploaded == committed

    again = upload(kfp, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"version {name} ({version['pipeline_version_id']}) already uploaded, reused" in again.stdout
    assert len(kfp.fake.versions) == 1 and len(kfp.fake.pipelines) == 1
    assert len(kfp.fake.calls("POST", "/pipelines/upload_version")) == 1


def test_new_code_uploads_a_new_version_of_the_same_pipeline(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture
) -> None:
    for code in ("0.1.0+src.aaaaaaaaaaaa", "0.1.0+src.bbbbbbbbbbbb"):
        assert in_process(capsys, "upload", "--host", kfp.url, "--code-version", code)[0] == 0
    assert len(kfp.fake.pipelines) == 1
    names = sorted(v["name"] for v in kfp.fake.versions.values())
    assert [n.split("-spec.")[0] for n in names] == ["0.1.0-src.aaaaaaaaaaaa", "0.1.0-src.bbbbbbbbbbbb"]


def test_upload_finds_its_version_on_an_api_that_pages_and_ignores_filters(
    capsys: pytest.CaptureFixture,
) -> None:
    with FakeKfpServer(FakeKfp(ignore_filters=True, max_page_size=1)) as server:
        upload_args = ["upload", "--host", server.url, "--code-version"]
        for code in ("0.1.0+src.000000000001", "0.1.0+src.000000000002", "0.1.0+src.000000000003"):
            assert in_process(capsys, *upload_args, code)[0] == 0
        code, out, err = in_process(capsys, *upload_args, "0.1.0+src.000000000002")
        assert code == 0, err
        assert "already uploaded, reused" in out
        assert len(server.fake.versions) == 3 and len(server.fake.pipelines) == 1


def test_version_name_follows_the_spec_and_suits_kubernetes() -> None:
    spec = versioned_spec(COMMITTED, "0.1.0+src.0123456789ab")
    name = version_name(spec, "0.1.0+src.0123456789ab")
    assert name == version_name(spec, "0.1.0+src.0123456789ab")
    assert name != version_name(spec + "\n# changed", "0.1.0+src.0123456789ab")
    import re

    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", name), name


# --------------------------------------------------------------------------- the compiled defaults


def _mlflow_service_url() -> str:
    """The in-cluster URL of the MLflow Service, read from the manifests wherever they live."""
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Service" and doc["metadata"]["name"] == "mlflow":
                port = doc["spec"]["ports"][0]["port"]
                return f"http://mlflow.{doc['metadata']['namespace']}.svc.cluster.local:{port}"
    raise AssertionError("no Service named mlflow in manifests/")


def test_every_pipeline_parameter_has_a_default_that_works_on_the_cluster() -> None:
    spec = next(yaml.safe_load_all(COMMITTED.read_text()))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert all("defaultValue" in p for p in parameters.values()), parameters.keys()
    config = PipelineConfig.from_parameter(parameters["config_json"]["defaultValue"])
    assert config == cluster_config(load_config(CONFIG), IMAGE_ROOT)
    # The image holds the repository's data/ at /app/data (docker/Dockerfile).
    source = config.source.uri
    assert source.startswith(f"{IMAGE_ROOT}/data/")
    assert (REPO / source.removeprefix(f"{IMAGE_ROOT}/")).is_file()
    assert parameters["mlflow_tracking_uri"]["defaultValue"] == CLUSTER_TRACKING_URI == _mlflow_service_url()
    # Empty: the tasks use the version of the code in their image. A hash of the code here would make
    # the committed YAML stale on every edit of any module, though the pipeline did not change.
    assert parameters["code_version"]["defaultValue"] == ""
    assert parameters["deploy_target"]["defaultValue"] == "registry"


def test_a_task_given_no_code_version_records_the_installed_one() -> None:
    from tabpipe.version import code_version

    for name in ("ingest", "train", "register"):
        source = (REPO / "components" / f"{name}.py").read_text()
        assert "code_version = code_version or installed_code_version()" in source, name
    assert code_version().startswith("0.1.0+src.")


# --------------------------------------------------------------------------- schedule


def schedule(server: FakeKfpServer, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return tabpipe("schedule", "--config", str(CONFIG), "--host", server.url, *extra, home=home)


def test_schedule_creates_one_recurring_run_on_the_uploaded_version(
    kfp: FakeKfpServer, tmp_path: Path
) -> None:
    first = schedule(kfp, tmp_path, "--cron", "0 30 2 * * *")
    assert first.returncode == 0, first.stderr
    (recurring,) = kfp.fake.recurring_runs.values()
    (version,) = kfp.fake.versions.values()
    assert recurring["display_name"] == "tabpipe-training-phishing-retrain"
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert recurring["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert "pipeline_spec" not in recurring or not recurring["pipeline_spec"]
    assert recurring["mode"] == "ENABLE" and recurring["no_catchup"] is True
    assert str(recurring["max_concurrency"]) == "1"
    assert recurring["service_account"] == PIPELINE_SERVICE_ACCOUNT
    assert "enable_caching" not in json.dumps(recurring)
    params = recurring["runtime_config"]["parameters"]
    assert params["mlflow_tracking_uri"] == CLUSTER_TRACKING_URI
    assert version["name"].startswith(params["code_version"].replace("+", "-"))
    assert f"({recurring['recurring_run_id']}) created: cron '0 30 2 * * *'" in first.stdout
    assert f"#/recurringrun/details/{recurring['recurring_run_id']}" in first.stdout

    again = schedule(kfp, tmp_path, "--cron", "0 30 2 * * *")
    assert again.returncode == 0, again.stderr
    assert f"({recurring['recurring_run_id']}) unchanged" in again.stdout
    assert list(kfp.fake.recurring_runs) == [recurring["recurring_run_id"]]
    assert len(kfp.fake.calls("POST", "/recurringruns")) == 1
    assert len(kfp.fake.versions) == 1


def test_a_new_cron_replaces_the_schedule_without_a_duplicate(kfp: FakeKfpServer, tmp_path: Path) -> None:
    assert schedule(kfp, tmp_path).returncode == 0
    (old,) = kfp.fake.recurring_runs
    result = schedule(kfp, tmp_path, "--cron", "@daily")
    assert result.returncode == 0, result.stderr
    (new,) = kfp.fake.recurring_runs.values()
    assert new["recurring_run_id"] != old and new["trigger"]["cron_schedule"]["cron"] == "@daily"
    assert f"replaced: cron '@daily'; deleted {old}" in result.stdout
    # Created before the old one was deleted: never a moment without a schedule.
    order = [
        (r.method, r.path) for r in kfp.fake.received if "/recurringruns" in r.path and r.method != "GET"
    ]
    assert order[-2:] == [
        ("POST", "/apis/v2beta1/recurringruns"),
        ("DELETE", f"/apis/v2beta1/recurringruns/{old}"),
    ]


def test_the_default_cron_is_six_fields() -> None:
    assert check_cron(DEFAULT_CRON) == DEFAULT_CRON


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * * 1", "has 5 field(s): KFP reads six, seconds first"),
        ("* * *", "has 3 field(s)"),
        ("", "has 0 field(s)"),
    ],
)
def test_a_cron_kfp_would_misread_is_refused_before_any_request(
    kfp: FakeKfpServer, capsys: pytest.CaptureFixture, cron: str, message: str
) -> None:
    code, _, err = in_process(capsys, "schedule", "--config", str(CONFIG), "--host", kfp.url, "--cron", cron)
    assert code == 2
    assert message in _one_line_error(err)
    if cron == "0 3 * * 1":
        assert "write '0 0 3 * * 1'" in err
    assert kfp.fake.received == []


@pytest.mark.parametrize("command", ["submit", "upload", "schedule"])
def test_help_names_the_options(command: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = in_process(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: tabpipe {command}")
    assert "--host" in out and "--package" in out
    if command == "submit":
        assert "--no-wait" in out and "--timeout" in out and "6 still running at --timeout" in out
    if command == "schedule":
        assert "--cron" in out and "seconds first" in out
