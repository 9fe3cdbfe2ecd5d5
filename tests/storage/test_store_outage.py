"""A MinIO that dies mid-operation: one message naming the endpoint and the operation, in bounded time."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from storage_support import free_address, minio_binary, start_private

from tabpipe.errors import ServiceError
from tabpipe.minio_server import DATA_BUCKET, RunningMinio, ensure_minio, stop_minio
from tabpipe.mlflow_server import process_gone
from tabpipe.objectstore import PARTIAL_MARKER, list_keys, read_bytes, upload_atomic

#: The bound the tests hold the failure to (the client's own bound for a dead server is a few seconds).
BOUND_SECONDS = 30.0


def _kill(running: RunningMinio) -> None:
    """SIGKILL the server's whole process group and wait until it is gone."""
    assert running.handle.pid is not None
    os.killpg(running.handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process_gone(running.handle.pid):
            return
        time.sleep(0.05)
    raise AssertionError("MinIO survived SIGKILL")


def _assert_one_message(exc: BaseException, expected: str) -> None:
    message = str(exc)
    assert message.startswith(expected), message
    assert "\n" not in message and "Traceback" not in message
    assert exc.__cause__ is None and exc.__suppress_context__  # raised `from None`: no chained traceback


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    running = start_private(tmp_path / "minio", monkeypatch)
    try:
        yield running
    finally:
        stop_minio(running.handle)


def test_server_killed_between_upload_and_verification(private: RunningMinio, tmp_path: Path, capsys) -> None:
    def kill_server(*_: object) -> None:
        _kill(private)

    started = time.monotonic()
    with pytest.raises(ServiceError) as info:
        upload_atomic(
            private.settings, DATA_BUCKET, "outage/model.bin", os.urandom(1 << 20), after_upload=kill_server
        )
    elapsed = time.monotonic() - started
    _assert_one_message(
        info.value,
        f"MinIO at {private.settings.endpoint} unreachable while uploading s3://tabpipe-data/outage/model.bin:",
    )
    assert elapsed < BOUND_SECONDS

    # Restarted on the same data: no complete-looking object at the key. The temporary object the dead
    # server could not delete is still there, under its `.partial-` name only.
    address = private.settings.endpoint.removeprefix("http://")
    restarted = ensure_minio(minio_binary(), address, free_address(), tmp_path / "minio")
    try:
        keys = list_keys(restarted.settings, DATA_BUCKET, "outage/")
        assert "outage/model.bin" not in keys
        assert all(PARTIAL_MARKER in key for key in keys)
    finally:
        stop_minio(restarted.handle)
    captured = capsys.readouterr()
    assert private.settings.secret_key not in captured.out + captured.err
    with capsys.disabled():  # the measured figure, for the README (shown with pytest -s)
        print(f"\nupload, server killed before verification: reported in {elapsed:.2f}s")


def test_read_from_a_killed_server_fails_fast(private: RunningMinio, capsys) -> None:
    upload_atomic(private.settings, DATA_BUCKET, "outage/table.csv", b"a,b\n1,2\n")
    assert read_bytes("s3://tabpipe-data/outage/table.csv", private.settings) == b"a,b\n1,2\n"
    _kill(private)
    started = time.monotonic()
    with pytest.raises(ServiceError) as info:
        read_bytes("s3://tabpipe-data/outage/table.csv", private.settings)
    elapsed = time.monotonic() - started
    _assert_one_message(
        info.value,
        f"MinIO at {private.settings.endpoint} unreachable while reading s3://tabpipe-data/outage/table.csv:",
    )
    assert elapsed < BOUND_SECONDS
    captured = capsys.readouterr()
    assert private.settings.secret_key not in captured.out + captured.err
    with capsys.disabled():  # the measured figure, for the README (shown with pytest -s)
        print(f"\nread from a killed server: reported in {elapsed:.2f}s")
