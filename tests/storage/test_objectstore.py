"""The S3 seam against a real MinIO: settings, ingest from s3://, atomic uploads, folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from storage_support import use_store

from tabpipe.config import SourceConfig, load_config
from tabpipe.errors import ArtifactIntegrityError, ConfigError, SourceError
from tabpipe.io import read_table
from tabpipe.minio_server import DATA_BUCKET, MODELS_BUCKET, RunningMinio
from tabpipe.objectstore import (
    MANIFEST,
    StoreSettings,
    client,
    download_dir,
    list_keys,
    parse_s3_uri,
    read_bytes,
    upload_atomic,
    upload_dir_atomic,
)
from tabpipe.stages.ingest import ingest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "e2e"


def test_settings_name_what_is_missing_and_hide_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MINIO_ENDPOINT is not set"):
        StoreSettings.from_env({})
    with pytest.raises(
        ConfigError, match="MINIO_ROOT_USER and MINIO_ROOT_PASSWORD.*TABPIPE_MINIO_CREDENTIALS"
    ):
        StoreSettings.from_env({"MINIO_ENDPOINT": "http://127.0.0.1:9000"})
    with pytest.raises(ConfigError, match="MINIO_ROOT_PASSWORD is not set"):
        StoreSettings.from_env({"MINIO_ENDPOINT": "http://127.0.0.1:9000", "MINIO_ROOT_USER": "u"})
    with pytest.raises(ConfigError, match="must look like http://host:port"):
        StoreSettings.from_env(
            {"MINIO_ENDPOINT": "127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
        )
    with pytest.raises(ConfigError, match="cannot read credentials file"):
        StoreSettings.from_env(
            {"MINIO_ENDPOINT": "http://h:1", "TABPIPE_MINIO_CREDENTIALS": str(tmp_path / "no")}
        )

    aws = StoreSettings.from_env(
        {
            "MINIO_ENDPOINT": "http://h:1/",
            "AWS_ACCESS_KEY_ID": "key-id",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws",
        }
    )
    assert aws == StoreSettings("http://h:1", "key-id", "s3cr3t-aws")
    assert "s3cr3t-aws" not in repr(aws) and "s3cr3t-aws" not in str(aws)
    credentials = tmp_path / "credentials.env"
    credentials.write_text("# comment\nMINIO_ROOT_USER=tabpipe-1\nMINIO_ROOT_PASSWORD='pw=with=equals'\n")
    from_file = StoreSettings.from_env(
        {"MINIO_ENDPOINT": "http://h:1", "TABPIPE_MINIO_CREDENTIALS": str(credentials)}
    )
    assert (from_file.access_key, from_file.secret_key) == ("tabpipe-1", "pw=with=equals")


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://tabpipe-data/a/b.csv") == parse_s3_uri("s3://tabpipe-data//a/b.csv")
    assert str(parse_s3_uri("s3://tabpipe-data/a/b.csv")) == "s3://tabpipe-data/a/b.csv"
    for bad in ("http://x/y", "s3:///key", "s3://b/k?versionId=3"):
        with pytest.raises(SourceError):
            parse_s3_uri(bad)


def test_ingest_reads_s3_and_versions_the_uploaded_bytes(minio: RunningMinio, monkeypatch) -> None:
    use_store(monkeypatch, minio)  # MINIO_ENDPOINT + TABPIPE_MINIO_CREDENTIALS, as a task gets them
    data = (FIXTURES / "phishing_small.csv").read_bytes()
    digest = upload_atomic(minio.settings, DATA_BUCKET, "e2e/phishing_small.csv", data)
    assert digest == hashlib.sha256(data).hexdigest()

    local = load_config(FIXTURES / "phishing_small.yaml")
    remote = local.model_copy(update={"source": SourceConfig(uri="s3://tabpipe-data/e2e/phishing_small.csv")})
    result = ingest(remote)
    assert result.data_version == hashlib.sha256(data).hexdigest()
    assert result.data_version == ingest(local).data_version
    assert result.n_rows == 1200
    assert sum(len(s) for s in (result.splits.train, result.splits.validation, result.splits.test)) > 0
    frame, version = read_table("s3://tabpipe-data/e2e/phishing_small.csv", remote.source.resolved_format)
    assert version == digest and frame.shape == (1200, local_columns(FIXTURES / "phishing_small.csv"))


def local_columns(path: Path) -> int:
    return len(path.read_text().splitlines()[0].split(","))


def test_missing_or_empty_s3_source_is_a_source_error(minio: RunningMinio, monkeypatch) -> None:
    use_store(monkeypatch, minio)
    with pytest.raises(SourceError, match=r"NoSuchKey while reading s3://tabpipe-data/nope/missing.csv"):
        read_bytes("s3://tabpipe-data/nope/missing.csv")
    with pytest.raises(SourceError, match=r"NoSuchBucket while reading s3://no-such-bucket/x.csv"):
        read_bytes("s3://no-such-bucket/x.csv")
    upload_atomic(minio.settings, DATA_BUCKET, "empty.csv", b"")
    with pytest.raises(SourceError, match="source s3://tabpipe-data/empty.csv: file is empty"):
        read_table("s3://tabpipe-data/empty.csv", SourceConfig(uri="x.csv").resolved_format)


def test_a_failed_verification_leaves_neither_the_object_nor_a_temporary_one(minio: RunningMinio) -> None:
    settings = minio.settings
    seen: list[str] = []

    def corrupt(store, bucket: str, partial: str) -> None:
        import io

        seen.append(partial)
        store.put_object(bucket, partial, io.BytesIO(b"corrupted"), 9)

    with pytest.raises(
        ArtifactIntegrityError, match="upload to s3://tabpipe-data/atomic/new.bin failed verification"
    ):
        upload_atomic(settings, DATA_BUCKET, "atomic/new.bin", b"the real bytes", after_upload=corrupt)
    assert seen and seen[0].startswith("atomic/new.bin.partial-")
    assert list_keys(settings, DATA_BUCKET, "atomic/") == []

    # Over an existing object: a failed upload leaves the earlier, complete one untouched.
    upload_atomic(settings, DATA_BUCKET, "atomic/old.bin", b"version 1")
    with pytest.raises(ArtifactIntegrityError):
        upload_atomic(settings, DATA_BUCKET, "atomic/old.bin", b"version 2", after_upload=corrupt)
    assert read_bytes("s3://tabpipe-data/atomic/old.bin", settings) == b"version 1"
    assert list_keys(settings, DATA_BUCKET, "atomic/") == ["atomic/old.bin"]


def test_upload_to_a_missing_bucket_fails_and_creates_nothing(minio: RunningMinio) -> None:
    with pytest.raises(SourceError, match="NoSuchBucket while uploading s3://tabpipe-absent/k.bin"):
        upload_atomic(minio.settings, "tabpipe-absent", "k.bin", b"bytes")
    assert "tabpipe-absent" not in {b.name for b in client(minio.settings).list_buckets()}


def test_final_object_carries_its_sha256(minio: RunningMinio) -> None:
    digest = upload_atomic(minio.settings, DATA_BUCKET, "meta/x.bin", b"abc")
    stat = client(minio.settings).stat_object(DATA_BUCKET, "meta/x.bin")
    assert stat.metadata["x-amz-meta-sha256"] == digest == hashlib.sha256(b"abc").hexdigest()


def _bundle(root: Path) -> Path:
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "model.skops").write_bytes(bytes(range(256)) * 100)
    (root / "bundle.json").write_text('{"model_version": "7"}')
    (root / "nested" / "deeper" / "notes.txt").write_text("hello")
    return root


def test_folder_round_trip_writes_the_manifest_last_and_verifies_on_download(
    minio: RunningMinio, tmp_path: Path
) -> None:
    import json

    source = _bundle(tmp_path / "bundle")
    digests = upload_dir_atomic(source, "s3://tabpipe-models/roundtrip/7", minio.settings)
    keys = list_keys(minio.settings, MODELS_BUCKET, "roundtrip/7/")
    assert keys == [
        "roundtrip/7/MANIFEST",
        "roundtrip/7/bundle.json",
        "roundtrip/7/model.skops",
        "roundtrip/7/nested/deeper/notes.txt",
    ]
    objects = client(minio.settings).list_objects(MODELS_BUCKET, "roundtrip/7/", recursive=True)
    modified = {o.object_name: o.last_modified for o in objects}
    assert modified["roundtrip/7/MANIFEST"] == max(modified.values())  # written last
    manifest = json.loads(read_bytes(f"s3://tabpipe-models/roundtrip/7/{MANIFEST}", minio.settings))
    assert {e["path"]: e["sha256"] for e in manifest["files"]} == digests
    assert digests["bundle.json"] == hashlib.sha256(b'{"model_version": "7"}').hexdigest()

    dest = download_dir("s3://tabpipe-models/roundtrip/7", tmp_path / "out" / "bundle", minio.settings)
    for path in source.rglob("*"):
        if path.is_file():
            assert (dest / path.relative_to(source)).read_bytes() == path.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bundle"]  # no staging folder left


def test_download_refuses_unfinished_or_tampered_folders(minio: RunningMinio, tmp_path: Path) -> None:
    import io

    settings = minio.settings
    # Files without a MANIFEST: an upload that did not finish.
    upload_atomic(settings, MODELS_BUCKET, "unfinished/1/model.skops", b"half")
    with pytest.raises(SourceError, match="no MANIFEST there"):
        download_dir("s3://tabpipe-models/unfinished/1", tmp_path / "a", settings)
    assert not (tmp_path / "a").exists()

    upload_dir_atomic(_bundle(tmp_path / "bundle"), "s3://tabpipe-models/tampered/1", settings)
    client(settings).put_object(MODELS_BUCKET, "tampered/1/bundle.json", io.BytesIO(b"{}"), 2)
    with pytest.raises(
        ArtifactIntegrityError, match="tampered/1/bundle.json: sha256 .* differs from the manifest"
    ):
        download_dir("s3://tabpipe-models/tampered/1", tmp_path / "b", settings)
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left behind
