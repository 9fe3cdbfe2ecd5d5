"""Start a local MLflow tracking server when none answers.

The server uses a SQLite backend and serves artifacts from a state folder
that git ignores. It is started detached, so it outlives ``make run`` and a
second run finds it already up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tabpipe.errors import ServiceError

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"
STARTUP_TIMEOUT_SECONDS = 90.0


def is_healthy(tracking_uri: str, timeout: float = 2.0) -> bool:
    """True when an MLflow server answers its health endpoint."""
    import requests

    try:
        return requests.get(tracking_uri.rstrip("/") + "/health", timeout=timeout).ok
    except requests.RequestException:
        return False


@dataclass(frozen=True)
class ServerHandle:
    """A server process this process started (or found running)."""

    url: str
    started: bool
    pid: int | None
    log_path: Path | None


@dataclass(frozen=True)
class S3Artifacts:
    """Where the MLflow server keeps artifacts on an S3 store (MinIO), and how it reaches it.

    Only the server process gets these credentials: tasks upload and download
    artifacts through the server (``--serve-artifacts``), so they need none.
    """

    destination: str  # e.g. s3://tabpipe-mlflow
    endpoint: str  # e.g. http://127.0.0.1:9000
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    def environment(self) -> dict[str, str]:
        """The variables MLflow's S3 artifact repository (boto3) reads."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            # MinIO ignores the region; boto3 wants one.
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def start_server(tracking_uri: str, state_dir: Path, s3: S3Artifacts | None = None) -> ServerHandle:
    """Start ``mlflow server`` detached and wait until it is healthy.

    Artifacts go under ``state_dir/artifacts``, or to ``s3.destination`` on MinIO.

    Raises:
        ServiceError: the server did not come up; the message points at its log.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ServiceError(f"will only start a local server for http://127.0.0.1:<port>, not {tracking_uri}")
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "server.log"
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    destination = s3.destination if s3 is not None else str((state_dir / "artifacts").resolve())
    command = [
        mlflow_bin,
        "server",
        "--host",
        parsed.hostname,
        "--port",
        str(parsed.port or 5000),
        "--backend-store-uri",
        f"sqlite:///{(state_dir / 'mlflow.db').resolve()}",
        "--artifacts-destination",
        destination,
        "--serve-artifacts",
        "--workers",
        "1",
    ]
    # MLflow 3 starts a pool of background job workers by default (about 2 GB); nothing here uses them.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(s3.environment() if s3 else {})}
    return start_detached(
        "MLflow server", command, tracking_uri, lambda: is_healthy(tracking_uri), log_path, env
    )


#: Beside a started server's log: its PID (the leader of its process group).
PID_FILENAME = "server.pid"


def start_detached(
    what: str,
    command: list[str],
    url: str,
    is_up: Callable[[], bool],
    log_path: Path,
    env: dict[str, str] | None = None,
) -> ServerHandle:
    """Start a server process in its own session (it outlives this one) and wait until ``is_up``.

    Its PID is written to ``server.pid`` beside the log, so ``make mlflow-down`` and
    ``make serve-down`` stop exactly the process they started (its process group).

    Raises:
        ServiceError: the process exited or did not come up in time; the message points at its log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    (log_path.parent / PID_FILENAME).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if is_up():
            return ServerHandle(url, True, process.pid, log_path)
        if process.poll() is not None:
            raise ServiceError(f"{what} exited with code {process.returncode}; see {log_path}")
        time.sleep(0.3)
    process.terminate()
    raise ServiceError(f"{what} did not come up in {STARTUP_TIMEOUT_SECONDS:.0f}s; see {log_path}")


def started_here(state_dir: Path, url: str) -> int | None:
    """The PID of the live server this project started in ``state_dir`` for ``url``'s port, if any.

    ``start_detached`` leaves the PID beside the log; the process must still be
    alive and its command line must name the same port, so a recycled PID or a
    server moved to another port is not mistaken for ours.
    """
    pid_file = state_dir / PID_FILENAME
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    port = str(urlparse(url).port or "").encode()
    return pid if port and port in cmdline else None


def claim_or_refuse(what: str, url: str, state_dir: Path, reuse: bool, hint: str) -> ServerHandle | None:
    """Decide about a server already answering at ``url``.

    Returns:
        A handle when it may be used (ours, or any with ``reuse``), None when nothing answers.

    Raises:
        ServiceError: something this project did not start answers there and ``reuse`` is off.
    """
    pid = started_here(state_dir, url)
    if pid is not None:
        return ServerHandle(url, False, pid, state_dir / "server.log")
    if reuse:
        return ServerHandle(url, False, None, None)
    raise ServiceError(
        f"a {what} this project did not start already answers at {url}; refusing to use it. Stop it, "
        f"choose another address ({hint}), or reuse it on purpose "
        "(tabpipe run --reuse-servers, make run REUSE=1)"
    )


def ensure_server(
    tracking_uri: str, state_dir: Path, reuse: bool = False, s3: S3Artifacts | None = None
) -> ServerHandle:
    """Use the MLflow server this project started at ``tracking_uri``, or start one (:func:`start_server`).

    Raises:
        ServiceError: another server answers there (unless ``reuse``), or ours did not come up.
    """
    if is_healthy(tracking_uri):
        handle = claim_or_refuse(
            "MLflow server", tracking_uri, state_dir, reuse, "MLFLOW_URI=http://127.0.0.1:<port>"
        )
        if handle is not None:
            return handle
    return start_server(tracking_uri, state_dir, s3)


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited; reaps it when it is this process's child (a zombie is gone, too)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return True
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_server(handle: ServerHandle, timeout: float = 10.0) -> None:
    """Stop a server this process started: its whole process group (uvicorn, job workers), then wait.

    A server that is this process's child is reaped, so a stopped one is not left as a
    zombie that still looks alive (and the wait does not run to its timeout).
    """
    import signal

    if not handle.started or handle.pid is None:
        return
    try:
        os.killpg(handle.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(handle.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(handle.pid, signal.SIGKILL)
    process_gone(handle.pid)
