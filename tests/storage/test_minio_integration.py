"""MLflow artifacts on MinIO through the tracking server; deploy bundles pushed to and loaded from MinIO."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from storage_support import use_store

from tabpipe.errors import ArtifactIntegrityError

REPO = Path(__file__).resolve().parents[2]


def _free_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_mlflow_keeps_artifacts_on_minio_and_clients_need_no_s3_credentials(
    minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from tabpipe.mlflow_server import start_server, stop_server
    from tabpipe.objectstore import list_keys, read_bytes

    server = start_server(_free_url(), tmp_path / "mlflow", s3=minio.mlflow_artifacts())
    try:
        # The client gets no S3 settings at all: artifacts go through the tracking server.
        for name in (
            "MINIO_ENDPOINT",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "MLFLOW_S3_ENDPOINT_URL",
        ):
            monkeypatch.delenv(name, raising=False)
        client = mlflow.MlflowClient(tracking_uri=server.url)
        experiment = client.create_experiment("on-minio")
        run = client.create_run(experiment)
        payload = tmp_path / "note.txt"
        payload.write_text("kept on MinIO")
        client.log_artifact(run.info.run_id, str(payload), artifact_path="notes")
        keys = list_keys(minio.settings, "tabpipe-mlflow")
        (key,) = [k for k in keys if k.endswith("notes/note.txt")]
        assert run.info.run_id in key
        assert read_bytes(f"s3://tabpipe-mlflow/{key}", minio.settings) == b"kept on MinIO"
        assert not (tmp_path / "mlflow" / "artifacts").exists()  # nothing on local disk
        local = client.download_artifacts(run.info.run_id, "notes/note.txt", str(tmp_path / "back"))
        assert Path(local).read_text() == "kept on MinIO"
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def housing_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    sys.path.insert(0, str(REPO / "tests" / "serving"))
    from serving_support import fit_model

    from tabpipe.bundle import assemble_bundle
    from tabpipe.modelio import save_model
    from tabpipe.serving_spec import build_serving_spec

    config, model, _ = fit_model(REPO / "configs" / "housing.yaml", keep=0)
    work = tmp_path_factory.mktemp("bundle")
    sha = save_model(model, work / "model.skops")
    spec = build_serving_spec(config, [], sha).model_copy(update={"version": "3"})
    assemble_bundle(work / "bundle", spec, work / "model.skops")
    return work / "bundle"


def test_a_pushed_bundle_loads_from_minio_verified(
    minio, housing_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tabpipe.objectstore import upload_dir_atomic
    from tabpipe.serving.store import load_uri

    use_store(monkeypatch, minio)
    uri = "s3://tabpipe-models/housing-price/3"
    upload_dir_atomic(housing_bundle, uri, minio.settings)
    loaded = load_uri(uri)
    assert loaded.spec.version == "3" and loaded.spec.model_name == "housing-price"


def test_a_tampered_file_on_minio_is_refused_naming_it(
    minio, housing_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tabpipe.objectstore import client, upload_dir_atomic
    from tabpipe.serving.store import load_uri

    use_store(monkeypatch, minio)
    uri = "s3://tabpipe-models/housing-price/4"
    upload_dir_atomic(housing_bundle, uri, minio.settings)
    import io

    tampered = b'{"tampered": true}'
    client(minio.settings).put_object(
        "tabpipe-models", "housing-price/4/bundle.json", io.BytesIO(tampered), len(tampered)
    )
    with pytest.raises(ArtifactIntegrityError) as err:
        load_uri(uri)
    assert "bundle.json" in str(err.value)
