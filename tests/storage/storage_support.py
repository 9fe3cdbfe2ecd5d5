"""Helpers for the object-store tests: the MinIO binary, free ports, a private server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tabpipe.minio_server import RunningMinio, ensure_minio

REPO = Path(__file__).resolve().parents[2]


def minio_binary() -> Path:
    """The MinIO executable; fails in CI and skips elsewhere when it is missing."""
    binary = Path(os.environ.get("TABPIPE_MINIO_BIN") or REPO / ".tools" / "bin" / "minio")
    if not binary.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("MinIO is required in CI: make minio")
        pytest.skip("MinIO not installed: run `make minio` (needs Go)")
    return binary


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def start_private(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> RunningMinio:
    """A server of this test's own (the test may kill it), with generated credentials."""
    monkeypatch.delenv("MINIO_ROOT_USER", raising=False)
    monkeypatch.delenv("MINIO_ROOT_PASSWORD", raising=False)
    return ensure_minio(minio_binary(), free_address(), free_address(), state_dir)


def use_store(monkeypatch: pytest.MonkeyPatch, running: RunningMinio) -> None:
    """Point this process's environment at ``running`` the way pipeline tasks are pointed at it."""
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in running.task_env().items():
        monkeypatch.setenv(name, value)


def files_containing(root: Path, secret: str, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Every file under ``root`` (except ``skip``) whose bytes contain ``secret``."""
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and p not in skip and needle in p.read_bytes()]
