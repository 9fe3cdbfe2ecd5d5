"""The deploy stage end to end with a cluster target: real MLflow registry, real MinIO, real API server.

The stage assembles the bundle, uploads it to MinIO, rolls it out as a plain Deployment
(real controllers, KWOK pods), smoke-tests it at a real local serving process of the same
bundle, and only then moves ``@champion``. A crash-looping image fails the rollout, the
previous version keeps serving and ``@champion`` stays where it was. ``tabpipe canary``
promotes or rolls back a canary and moves the aliases to match.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from controlplane import BROKEN_IMAGE, ControlPlane

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_support import PHISHING_CONFIG, Server, fit_model, write_bundle  # noqa: E402

from tabpipe.adapters import deploy as stage  # noqa: E402
from tabpipe.adapters.files import write_frame  # noqa: E402
from tabpipe.cli import main as cli  # noqa: E402
from tabpipe.cluster_deploy.objects import MODEL_SERVER_ACCOUNT, object_name  # noqa: E402
from tabpipe.cluster_deploy.rollout import ClusterDeployError  # noqa: E402
from tabpipe.config import load_config  # noqa: E402
from tabpipe.deploy import DeployTarget  # noqa: E402
from tabpipe.io import open_source, parse_table  # noqa: E402
from tabpipe.modelio import save_model  # noqa: E402


def _aliases(uri: str, name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return {a: str(v) for a, v in MlflowClient(uri).get_registered_model(name).aliases.items()}


def test_champion_moves_only_after_a_cluster_rollout_succeeds(
    control_plane: ControlPlane, mlflow_server: str, minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    for key, value in minio.task_env().items():
        monkeypatch.setenv(key, value)
    namespace = "stage-plain"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("-n", namespace, "create", "serviceaccount", MODEL_SERVER_ACCOUNT)
    base = load_config(PHISHING_CONFIG)
    config, model, _ = fit_model(PHISHING_CONFIG, keep=0)
    config = config.model_copy(
        update={
            "registry": config.registry.model_copy(update={"bundle_store": "s3://tabpipe-models"}),
            "cluster": config.cluster.model_copy(
                update={"namespace": namespace, "rollout_timeout_seconds": 60}
            ),
        }
    )
    model_path = tmp_path / "model.skops"
    sha = save_model(model, model_path)
    classes = json.dumps([c.item() for c in model.classes_])
    files = stage.ModelFiles(model=model_path, model_sha256=sha, classes_json=classes)
    frame = parse_table(open_source(base.source.uri), base.source.resolved_format, base.source.uri)
    write_frame(frame.head(30), tmp_path / "test.parquet")
    name = config.registry.model_name
    registry = MlflowClient(mlflow_server)
    registry.create_registered_model(name)
    for _ in range(2):
        registry.create_model_version(name, source="s3://tabpipe-models/placeholder")

    servers = {}
    try:
        for version in ("1", "2"):
            write_bundle(tmp_path / f"served-{version}", config, model, version)
            servers[version] = Server(tmp_path / f"served-{version}", log_path=tmp_path / f"s{version}.log")
        for server in servers.values():
            server.wait_ready()

        def deploy(version: str, **cluster: object):
            settings = config.cluster.model_copy(update={"smoke_url": servers[version].url, **cluster})
            return stage.run(
                config.model_copy(update={"cluster": settings}),
                mlflow_server,
                files,
                version,
                tmp_path / f"bundle-{version}-{len(cluster)}",
                target=DeployTarget.PLAIN,
                test=tmp_path / "test.parquet",
                kubeconfig=str(control_plane.kubeconfig),
            )

        first = deploy("1")
        assert first.bundle_uri == f"s3://tabpipe-models/{name}/1"
        assert _aliases(mlflow_server, name)["champion"] == "1"

        with pytest.raises(ClusterDeployError, match="progress deadline exceeded"):
            deploy("2", image=BROKEN_IMAGE, rollout_timeout_seconds=5)
        assert _aliases(mlflow_server, name)["champion"] == "1"
        image = control_plane.kubectl(
            "-n",
            namespace,
            "get",
            "deployment",
            object_name(name),
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        assert image == config.cluster.image

        # A canary: the champion stays, the new version gets its own alias; the CLI promotes it.
        canary = deploy("2", canary_percent=50)
        assert canary.previous_champion is None
        assert _aliases(mlflow_server, name) == {"champion": "1", "canary": "2"}
        config_file = tmp_path / "config.yaml"
        import yaml

        # The resolved config (contract inlined, paths absolute), as a user's YAML would load.
        document = config.model_dump(mode="json", exclude_none=True)
        document["cluster"] = {"namespace": namespace}
        config_file.write_text(yaml.safe_dump(document))
        common = [
            "--config",
            str(config_file),
            "--target",
            "plain",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--tracking-uri",
            mlflow_server,
        ]
        assert cli(["canary", "promote", *common]) == 0
        assert _aliases(mlflow_server, name) == {"champion": "2"}
        assert cli(["canary", "rollback", *common]) != 0  # nothing left to roll back
    finally:
        for server in servers.values():
            server.stop()
