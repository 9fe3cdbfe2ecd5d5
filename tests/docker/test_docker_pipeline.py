"""The whole pipeline in containers of the project image (``make run RUNNER=docker``), on a real engine.

Needs a Docker engine and the image built from this tree: ``make test-docker`` starts
or finds the engine (make docker-up), builds the image (make image) and runs these.
Without them the tests skip, except under CI=true, where they fail.

What is checked comes from the engine, the files and the servers, never from mocks:
- the engine's own event log shows one container of the image per task, each exited 0,
  and none is left behind;
- every output file was written by uid 10001 (this process is not that user), and
  the MLflow runs name the image's user;
- the registry holds the version with both aliases, and the deploy bundle matches the
  digest the registry recorded, file by file;
- the run summary comes out of the real command, and the local serving endpoint
  serves the version a container deployed to it;
- a failing stage in a container is reported by stage and reason, which the stage
  recorded in MLflow under the run id handed to the container;
- a non-root host user (a laptop's) can delete everything a container wrote;
- the default data maps to the image's copy, and a stale or missing image is refused.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.image import BASE_IMAGE
from tabpipe.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "e2e"
SMALL_CONFIG = FIXTURES / "phishing_small.yaml"
SMALL_DATA = FIXTURES / "phishing_small.csv"
STAGES = ["ingest", "validate", "transform", "train", "evaluate", "register", "deploy", "record-outcome"]
RUNTIME_UID = 10001

pytestmark = pytest.mark.docker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _docker_host() -> str:
    """The engine make test-docker uses: DOCKER_HOST, else what docker/engine.sh picks."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    cache = Path(os.environ.get("TABPIPE_CACHE") or Path.home() / ".cache" / "tabpipe")
    result = subprocess.run(
        ["bash", str(REPO / "docker" / "engine.sh"), "host", str(cache / "docker")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI needs them: make test-docker starts the engine and builds the image)")
    pytest.skip(f"{reason} (make test-docker starts the engine and builds the image)")


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Any, str]]:
    """A docker-py client on an engine that holds this tree's image, and the engine's address."""
    from tabpipe.docker_runner import check_image, docker_client
    from tabpipe.errors import ConfigError, ServiceError

    host = _docker_host()
    try:
        client = docker_client(host)
    except (ConfigError, ServiceError) as exc:
        _unavailable(f"no Docker engine: {exc}")
    try:
        check_image(client, BASE_IMAGE)
    except ConfigError as exc:
        client.close()
        _unavailable(str(exc))
    try:
        yield client, host
    finally:
        client.close()


def _events(client: Any, since: float, until: float, pipeline_root: Path) -> list[dict[str, Any]]:
    """The engine's container events of this run (its containers carry the pipeline root as a label)."""
    label = f"org.tabpipe.pipeline-root={pipeline_root}"
    return list(
        client.events(
            since=int(since) - 1,
            until=int(until) + 1,
            filters={"type": "container", "label": label},
            decode=True,
        )
    )


def _stop_pidfile(pidfile: Path) -> None:
    """Stop the process group a PID file names (what make mlflow-down / serve-down do)."""
    if not pidfile.is_file():
        return
    pid = int(pidfile.read_text().strip())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cli_run(engine: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``tabpipe run --runner docker``, as make run RUNNER=docker runs it: own MLflow server and endpoint."""
    client, host = engine
    state = tmp_path_factory.mktemp("docker-run")
    tracking_uri = f"http://127.0.0.1:{_free_port()}"
    serving_url = f"http://127.0.0.1:{_free_port()}"
    command = [
        sys.executable, "-m", "tabpipe.cli", "run",
        "--config", str(SMALL_CONFIG),
        "--tracking-uri", tracking_uri,
        "--state-dir", str(state),
        "--serving-url", serving_url,
        "--runner", "docker",
        "--docker-host", host,
    ]  # fmt: skip
    started = time.time()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=REPO)
        finished = time.time()
        pipeline_root = (state / "pipeline_root-docker").resolve()
        yield {
            "result": result,
            "state": state,
            "tracking_uri": tracking_uri,
            "serving_url": serving_url,
            "pipeline_root": pipeline_root,
            "events": _events(client, started, finished, pipeline_root),
            "seconds": finished - started,
        }
    finally:
        _stop_pidfile(state / "serving" / "server.pid")
        _stop_pidfile(state / "mlflow" / "server.pid")


def _mlflow(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _without_column(config: PipelineConfig, data: Path, column: str) -> PipelineConfig:
    import pandas as pd

    frame = pd.read_csv(SMALL_DATA).drop(columns=[column])
    frame.to_csv(data, index=False)
    dumped = config.model_dump()
    dumped["source"]["uri"] = str(data)
    dumped["name"] = f"{config.name}-broken"
    dumped["registry"]["experiment"] = f"{config.experiment_name}-broken"
    dumped["registry"]["model_name"] = f"{config.registry.model_name}-broken"
    return PipelineConfig.model_validate(dumped)


def test_a_stage_failing_in_its_container_is_reported_with_its_recorded_reason(
    engine: tuple[Any, str], mlflow_server: str, tmp_path: Path
) -> None:
    from tabpipe.local_run import format_summary, run_pipeline

    _, host = engine
    config = _without_column(load_config(SMALL_CONFIG), tmp_path / "broken.csv", "SSLfinal_State")
    summary = run_pipeline(
        config, mlflow_server, tmp_path / "state", quiet=True, runner="docker", docker_host=host
    )
    assert not summary.succeeded
    # The stage and reason come from the failure record the container wrote to MLflow under the
    # run id handed to it (a missing id would have failed every task before its body).
    assert summary.failure_stage in ("ingest", "validate")
    assert "SSLfinal_State" in (summary.failure_reason or ""), summary.failure_reason
    assert "details in" not in (summary.failure_reason or ""), "the reason was not read from MLflow"
    assert "status: FAILED" in format_summary(summary)
    assert _mlflow(mlflow_server).search_registered_models(f"name = '{config.registry.model_name}'") == []


def test_the_command_succeeds_and_prints_the_summary(cli_run: dict[str, Any]) -> None:
    result = cli_run["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "status: SUCCEEDED" in out
    for stage in STAGES:
        assert f"  {stage}" in out, f"no progress line for {stage}"
    assert "registered by this run: version 1" in out
    assert "aliases now: champion=1, challenger=1" in out
    assert f"serving: version 1 at {cli_run['serving_url']}" in out
    print(f"pipeline in containers: {cli_run['seconds']:.0f}s end to end")


def test_every_task_ran_in_its_own_container_of_the_image_and_exited_0(
    cli_run: dict[str, Any], engine: tuple[Any, str]
) -> None:
    client, _ = engine
    events = cli_run["events"]
    starts = [e for e in events if e.get("status") == "start"]
    deaths = [e for e in events if e.get("status") == "die"]
    assert len(starts) == len(STAGES), [e.get("status") for e in events]
    assert len(deaths) == len(STAGES)
    image_id = client.images.get(BASE_IMAGE).id
    for event in starts:
        assert event["Actor"]["Attributes"]["image"] in (BASE_IMAGE, image_id)
    assert sorted(e["Actor"]["Attributes"]["exitCode"] for e in deaths) == ["0"] * len(STAGES)
    # kfp.local removes each container when it ends: none is left behind.
    label = f"org.tabpipe.pipeline-root={cli_run['pipeline_root']}"
    assert client.containers.list(all=True, filters={"label": label}) == []


def test_outputs_were_written_by_the_image_user_and_stay_manageable_by_the_host(
    cli_run: dict[str, Any],
) -> None:
    from tabpipe.docker_runner import shared_group

    assert os.geteuid() != RUNTIME_UID, "the test must not run as the image's user"
    (run_dir,) = [p for p in cli_run["pipeline_root"].iterdir() if p.name.startswith("tabpipe-training")]
    tasks = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert {"ingest", "validate", "transform", "train", "evaluate", "deploy"} <= tasks
    files = [p for p in run_dir.rglob("*")]
    assert len(files) > 20
    for path in files:
        info = path.lstat()
        assert info.st_uid == RUNTIME_UID, f"{path} is owned by uid {info.st_uid}, not the image's user"
        # The shared group and group write (umask 002): the host user can delete what a container wrote.
        assert info.st_gid == shared_group(), path
        assert info.st_mode & 0o020, f"{path} is not group-writable"


def test_mlflow_runs_name_the_image_user_and_its_code(
    cli_run: dict[str, Any], engine: tuple[Any, str]
) -> None:
    from tabpipe.docker_runner import CODE_LABEL

    config = load_config(SMALL_CONFIG)
    client = _mlflow(cli_run["tracking_uri"])
    experiment = client.get_experiment_by_name(config.experiment_name)
    (train,) = client.search_runs([experiment.experiment_id], "tags.`tabpipe.stage` = 'train'")
    # getpass.getuser() inside the container: the image's user, not this process's.
    assert train.data.tags["mlflow.user"] == "tabpipe"
    version = client.get_model_version(config.registry.model_name, "1")
    # The version of the code the image holds (the engine fixture checked it against this tree).
    assert version.tags["tabpipe.code_version"] == engine[0].images.get(BASE_IMAGE).labels[CODE_LABEL]
    assert version.tags["tabpipe.kfp_run_id"].startswith("local-")
    assert version.tags["tabpipe.data_version"] == hashlib.sha256(SMALL_DATA.read_bytes()).hexdigest()


def test_registry_aliases_and_the_bundles_match_their_checksums(
    cli_run: dict[str, Any], tmp_path: Path
) -> None:
    import json

    from tabpipe.bundle import verify_bundle

    config = load_config(SMALL_CONFIG)
    client = _mlflow(cli_run["tracking_uri"])
    model = client.get_registered_model(config.registry.model_name)
    assert model.aliases == {"champion": "1", "challenger": "1"}
    version = client.get_model_version(config.registry.model_name, "1")
    # The registry's bundle: every file against manifest.json, manifest.json against the version's tag.
    downloaded = client.download_artifacts(version.run_id, "bundle", str(tmp_path))
    verify_bundle(downloaded, version.tags["tabpipe.bundle_digest"])
    # The deploy task's bundle (a KFP output the container wrote): every file against its manifest,
    # and the model in it is the registered one.
    (bundle,) = cli_run["pipeline_root"].glob("tabpipe-training*/deploy/bundle")
    verify_bundle(bundle)
    model_sha = hashlib.sha256((bundle / "model.skops").read_bytes()).hexdigest()
    assert model_sha == version.tags["tabpipe.bundle_sha256"]
    assert json.loads((bundle / "bundle.json").read_text())["version"] == "1"


def test_the_endpoint_serves_what_a_container_deployed(cli_run: dict[str, Any]) -> None:
    import requests

    config = load_config(SMALL_CONFIG)
    answer = requests.get(f"{cli_run['serving_url']}/v2/models/{config.registry.model_name}", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["versions"] == ["1"]


def test_default_data_maps_to_the_image_copy_of_this_tree(engine: tuple[Any, str]) -> None:
    from tabpipe.docker_runner import container_config

    client, _ = engine
    config = load_config(REPO / "configs" / "phishing.yaml")
    mapped, mounts = container_config(config)
    assert mounts == []  # data/ is in the image, nothing to mount
    assert mapped.source.uri.startswith("/app/data/")
    script = f"import hashlib; print(hashlib.sha256(open({mapped.source.uri!r}, 'rb').read()).hexdigest())"
    out = client.containers.run(BASE_IMAGE, ["python3", "-c", script], remove=True, network_mode="none")
    assert out.decode().strip() == hashlib.sha256(Path(config.source.uri).read_bytes()).hexdigest()


def test_an_image_built_from_other_code_is_refused(engine: tuple[Any, str]) -> None:
    import io

    from tabpipe.docker_runner import CODE_LABEL, check_image
    from tabpipe.errors import ConfigError

    client, _ = engine
    stale = "tabpipe-stale-test:0"
    dockerfile = io.BytesIO(f"FROM {BASE_IMAGE}\n".encode())
    client.images.build(fileobj=dockerfile, tag=stale, labels={CODE_LABEL: "0.1.0+src.000000000000"}, rm=True)
    try:
        with pytest.raises(ConfigError, match="rebuild it with make image"):
            check_image(client, stale)
    finally:
        client.images.remove(stale, force=True)
    with pytest.raises(ConfigError, match="make image"):
        check_image(client, "tabpipe-missing-test:0")


HOST_USER = 12345  # a non-root host user, as on a laptop (the tests run as root here)


def _as_host_user(*command: str) -> subprocess.CompletedProcess[str]:
    def drop() -> None:
        os.setgroups([])
        os.setgid(HOST_USER)
        os.setuid(HOST_USER)

    return subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=drop)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another host user")
def test_a_non_root_host_user_can_delete_what_the_containers_wrote(engine: tuple[Any, str]) -> None:
    import shutil
    import tempfile

    from tabpipe.docker_runner import RUNTIME_GID, RUNTIME_UID, UMASK_ENTRYPOINT, prepare_pipeline_root

    client, _ = engine
    parent = Path(tempfile.mkdtemp(prefix="tabpipe-hostuser-", dir="/tmp"))
    try:
        os.chown(parent, HOST_USER, HOST_USER)
        root = parent / "pipeline_root-docker"
        # What tabpipe run does as that user (this interpreter lives under /root, out of its reach,
        # so only the effective ids change, for the call).
        os.setegid(HOST_USER)
        os.seteuid(HOST_USER)
        try:
            shared = prepare_pipeline_root(root)
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert shared == HOST_USER  # the host user's own group is the shared one
        assert (root.stat().st_uid, root.stat().st_gid) == (HOST_USER, HOST_USER)

        def task(name: str, **extra: Any) -> None:
            script = f"mkdir -p {root}/{name}/task && echo out > {root}/{name}/task/output"
            client.containers.run(
                BASE_IMAGE, ["sh", "-c", script], user=f"{RUNTIME_UID}:{RUNTIME_GID}", remove=True,
                network_mode="none", volumes={str(root): {"bind": str(root), "mode": "rw"}}, **extra,
            )  # fmt: skip

        # As DockerRunner runs a task: the shared group added, umask 002.
        task("run", group_add=[str(HOST_USER)], entrypoint=UMASK_ENTRYPOINT)
        output = root / "run" / "task" / "output"
        info = output.stat()
        assert (info.st_uid, info.st_gid) == (RUNTIME_UID, HOST_USER)
        assert info.st_mode & 0o020
        deleted = _as_host_user("rm", "-rf", str(root / "run"))
        assert deleted.returncode == 0, deleted.stderr
        assert not (root / "run").exists()
        # The controls: without the shared group the container cannot write at all, and without
        # umask 002 the host user cannot delete what it wrote.
        import docker

        with pytest.raises(docker.errors.ContainerError, match="Permission denied"):
            task("nogroup")
        task("nomask", group_add=[str(HOST_USER)])
        assert _as_host_user("rm", "-rf", str(root / "nomask")).returncode != 0
        assert (root / "nomask" / "task" / "output").exists()
    finally:
        shutil.rmtree(parent)
