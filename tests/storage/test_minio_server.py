"""The project's MinIO: credentials kept private, buckets, the `up` command, restarts lose nothing."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storage_support import REPO, files_containing, free_address, minio_binary, start_private

from tabpipe.errors import ServiceError
from tabpipe.minio_server import (
    BUCKETS,
    CREDENTIALS_FILENAME,
    RunningMinio,
    ensure_minio,
    load_or_create_credentials,
    stop_minio,
)
from tabpipe.mlflow_server import PID_FILENAME, process_gone
from tabpipe.objectstore import (
    StoreSettings,
    download_dir,
    ensure_buckets,
    list_keys,
    read_bytes,
    upload_atomic,
    upload_dir_atomic,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_generated_once_with_mode_0600_and_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MINIO_ROOT_USER", raising=False)
    monkeypatch.delenv("MINIO_ROOT_PASSWORD", raising=False)
    old_umask = os.umask(0)  # a permissive umask must not widen the file's mode
    try:
        user, password, path = load_or_create_credentials(tmp_path)
    finally:
        os.umask(old_umask)
    assert path == tmp_path / CREDENTIALS_FILENAME
    assert _mode(path) == 0o600
    assert user.startswith("tabpipe-") and len(user) == len("tabpipe-") + 8
    assert len(password) >= 32
    assert f"MINIO_ROOT_PASSWORD={password}\n" in path.read_text()
    assert load_or_create_credentials(tmp_path) == (user, password, path)  # reused, not regenerated
    assert _mode(path) == 0o600


def test_credentials_from_the_environment_write_no_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINIO_ROOT_USER", "someone")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "a-long-enough-password")
    assert load_or_create_credentials(tmp_path) == ("someone", "a-long-enough-password", None)
    assert not (tmp_path / CREDENTIALS_FILENAME).exists()


def test_a_world_readable_credentials_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MINIO_ROOT_USER", raising=False)
    monkeypatch.delenv("MINIO_ROOT_PASSWORD", raising=False)
    _, password, path = load_or_create_credentials(tmp_path)
    path.chmod(0o644)
    with pytest.raises(ServiceError) as info:
        load_or_create_credentials(tmp_path)
    assert "readable by other users" in str(info.value)
    assert password not in str(info.value)


def test_session_server_uses_its_generated_credentials_file(minio: RunningMinio) -> None:
    assert minio.credentials_file is not None
    assert _mode(minio.credentials_file) == 0o600
    assert f"MINIO_ROOT_PASSWORD={minio.settings.secret_key}\n" in minio.credentials_file.read_text()
    assert minio.settings.secret_key not in repr(minio)
    # What pipeline tasks get: the endpoint and the file's path, never the secret itself.
    env = minio.task_env()
    assert env == {
        "MINIO_ENDPOINT": minio.settings.endpoint,
        "TABPIPE_MINIO_CREDENTIALS": str(minio.credentials_file),
    }
    assert StoreSettings.from_env(env) == minio.settings


def test_buckets_are_created_idempotently(minio: RunningMinio) -> None:
    from tabpipe.objectstore import client

    existing = {b.name for b in client(minio.settings).list_buckets()}
    assert set(BUCKETS) <= existing
    assert ensure_buckets(minio.settings, BUCKETS) == []  # all there already: nothing created
    assert ensure_buckets(minio.settings, ["tabpipe-idempotent", "tabpipe-idempotent"]) == [
        "tabpipe-idempotent"
    ]
    assert ensure_buckets(minio.settings, ["tabpipe-idempotent"]) == []


def _up(state_dir: Path, address: str, console: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")}
    command = [sys.executable, "-m", "tabpipe.minio_server", "up", "--binary", str(minio_binary())]
    command += ["--address", address, "--console-address", console, "--state-dir", str(state_dir)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_up_finds_its_own_server_and_prints_no_secret(minio: RunningMinio) -> None:
    state_dir = minio.handle.log_path.parent
    address = minio.settings.endpoint.removeprefix("http://")
    result = _up(state_dir, address, "127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    assert f"MinIO already running (pid {minio.handle.pid}): {minio.settings.endpoint}" in result.stdout
    assert str(minio.credentials_file) in result.stdout
    assert "tabpipe-data, tabpipe-mlflow, tabpipe-models" in result.stdout
    assert minio.settings.secret_key not in result.stdout + result.stderr
    assert files_containing(state_dir, minio.settings.secret_key, skip=(minio.credentials_file,)) == []


def test_up_refuses_a_server_it_did_not_start(minio: RunningMinio, tmp_path: Path) -> None:
    address = minio.settings.endpoint.removeprefix("http://")
    result = _up(tmp_path / "other", address, "127.0.0.1:1")
    assert result.returncode == 1
    assert (
        f"a MinIO server this project did not start already answers at {minio.settings.endpoint}"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "other" / PID_FILENAME).exists()


def _stop_like_make(state_dir: Path) -> None:
    """What `make minio-down` does: TERM the process group in the PID file (via make when present)."""
    pid = int((state_dir / PID_FILENAME).read_text())
    if shutil.which("make"):
        subprocess.run(
            ["make", "-s", "-C", str(REPO), "minio-down", f"STATE_DIR={state_dir.parent}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    else:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process_gone(pid):
            return
        time.sleep(0.1)
    raise AssertionError(f"MinIO (pid {pid}) still running 20 s after minio-down")


def test_stop_and_restart_keeps_every_object(tmp_path: Path, monkeypatch) -> None:
    state_dir = tmp_path / "minio"  # `make minio-down STATE_DIR=tmp_path` stops STATE_DIR/minio/server.pid
    first = start_private(state_dir, monkeypatch)
    try:
        payload = os.urandom(300_000)
        upload_atomic(first.settings, "tabpipe-data", "kept/table.bin", payload)
        bundle = tmp_path / "bundle"
        (bundle / "sub").mkdir(parents=True)
        (bundle / "model.onnx").write_bytes(b"onnx bytes")
        (bundle / "sub" / "bundle.json").write_text('{"version": 3}')
        upload_dir_atomic(bundle, "s3://tabpipe-models/phishing/3", first.settings)

        _stop_like_make(state_dir)
        assert not (state_dir / PID_FILENAME).exists()
        address = first.settings.endpoint.removeprefix("http://")
        second = ensure_minio(minio_binary(), address, free_address(), state_dir)
    except BaseException:
        stop_minio(first.handle)
        raise
    try:
        assert second.handle.started and second.handle.pid != first.handle.pid
        assert second.settings == first.settings  # the same credentials file, reused
        assert read_bytes("s3://tabpipe-data/kept/table.bin", second.settings) == payload
        restored = download_dir("s3://tabpipe-models/phishing/3", tmp_path / "restored", second.settings)
        assert (restored / "model.onnx").read_bytes() == b"onnx bytes"
        assert (restored / "sub" / "bundle.json").read_text() == '{"version": 3}'
        assert list_keys(second.settings, "tabpipe-models") == [
            "phishing/3/MANIFEST",
            "phishing/3/model.onnx",
            "phishing/3/sub/bundle.json",
        ]
        # Nothing the server wrote (its log, PID file, data folder) holds the secret; only the 0600 file does.
        assert files_containing(state_dir, second.settings.secret_key, skip=(second.credentials_file,)) == []
        assert (state_dir / "server.log").exists()
    finally:
        stop_minio(second.handle)
