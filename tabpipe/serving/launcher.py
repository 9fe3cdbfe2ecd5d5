"""Start the local serving endpoint when none answers (what ``make run`` deploys to).

The endpoint's repository extension (load/unload, used by the deploy stage) needs an
admin token. The launcher makes one (or takes ``TABPIPE_SERVING_ADMIN_TOKEN`` when it is
set), hands it to the server in its environment (never in argv, which ``ps`` shows to
everyone) and keeps it in ``<state dir>/admin-token`` with mode 0600, where the deploy
task finds it through ``TABPIPE_SERVING_ADMIN_TOKEN_FILE``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlparse

from tabpipe.errors import ServiceError
from tabpipe.io import write_atomic
from tabpipe.mlflow_server import ServerHandle, claim_or_refuse, start_detached

#: Not 8080: the cluster path maps the KFP UI there (kind-cluster.yaml).
DEFAULT_SERVE_PORT = 8765
DEFAULT_SERVING_URL = f"http://127.0.0.1:{DEFAULT_SERVE_PORT}"
#: The token file beside the server's log and PID file.
TOKEN_FILENAME = "admin-token"
#: The model server's environment: glibc's malloc for Python's small objects instead of pymalloc,
#: whose 1 MiB arenas stay mapped while any object in them lives, so the server's memory returns
#: to its baseline after hostile traffic (measured: 2-17 MB above it, against 30-40 MB with
#: pymalloc) for about 5 % of latency. The cluster targets' pods get the same.
SERVER_ENV = {"PYTHONMALLOC": "malloc"}
#: The inference log's folder under the state dir: what the endpoint served, for monitoring.
INFERENCE_LOG_DIRNAME = "inference-log"
#: The model names this endpoint serves, one per line: a restarted endpoint serves them all again.
MODELS_FILENAME = "models"
#: The server's variable (tabpipe.serving.auth.TOKEN_ENV) and the deploy client's file variable.
TOKEN_ENV = "TABPIPE_SERVING_ADMIN_TOKEN"
TOKEN_FILE_ENV = "TABPIPE_SERVING_ADMIN_TOKEN_FILE"


def write_token_file(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` readable by its owner only (0600 from creation, no window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def token_file(state_dir: Path) -> Path:
    """Where the launcher keeps the admin token of the endpoint it started in ``state_dir``."""
    return state_dir / TOKEN_FILENAME


def inference_log_dir(state_dir: Path) -> Path:
    """Where the endpoint started in ``state_dir`` logs what it serves (rolling Parquet files)."""
    return state_dir.resolve() / INFERENCE_LOG_DIRNAME


def remembered_models(state_dir: Path) -> list[str]:
    """The model names deployed to the endpoint of ``state_dir`` so far, in order."""
    try:
        text = (state_dir / MODELS_FILENAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def remember_model(state_dir: Path, model_name: str) -> list[str]:
    """Record that ``model_name`` was deployed to the endpoint (after a successful deploy); return the list.

    Only deployed names are kept: a name whose first deploy failed has no ``@champion``, and a
    restarted endpoint waiting for it would never be ready.
    """
    path = state_dir / MODELS_FILENAME
    names = remembered_models(state_dir)
    if model_name not in names:
        names.append(model_name)
        write_atomic(path, "".join(f"{name}\n" for name in names).encode())
    return names


def is_live(serving_url: str, timeout: float = 2.0) -> bool:
    """True when an OIP server answers its liveness endpoint."""
    import requests

    try:
        return requests.get(f"{serving_url}/v2/health/live", timeout=timeout).ok
    except requests.RequestException:
        return False


def ensure_serving(
    serving_url: str, model_name: str, tracking_uri: str, state_dir: Path, reuse: bool = False
) -> ServerHandle:
    """Use the endpoint this project started at ``serving_url``, or start one serving ``@champion``.

    One endpoint serves every model the project has deployed to it, each by name: a
    started endpoint loads the ``@champion`` of ``model_name`` and of every model deployed to
    it before (:func:`remember_model`, in ``<state dir>/models``), so a restart does not lose
    the other data sets' models. Every request it serves is logged to :func:`inference_log_dir`
    for monitoring. A first run has no champion yet: the server then starts not ready, and the
    deploy stage loads the new version into it. The admin token is in
    :func:`token_file`; point the deploy task at it with ``TABPIPE_SERVING_ADMIN_TOKEN_FILE``.

    Raises:
        ServiceError: another server answers there (unless ``reuse``), or ours did not come up.
    """
    names = remembered_models(state_dir)
    names += [] if model_name in names else [model_name]
    if is_live(serving_url):
        handle = claim_or_refuse("serving endpoint", serving_url, state_dir, reuse, "SERVE_PORT=<port>")
        if handle is not None:
            return handle
    parsed = urlparse(serving_url)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ServiceError(f"will only start a local server for http://127.0.0.1:<port>, not {serving_url}")
    token = os.environ.get(TOKEN_ENV, "").strip() or secrets.token_urlsafe(32)
    write_token_file(token_file(state_dir), token)
    models = [arg for name in names for arg in ("--model", f"models:/{name}@champion")]
    command = [
        sys.executable, "-m", "tabpipe.serving",
        *models,
        "--tracking-uri", tracking_uri,
        "--inference-log", str(inference_log_dir(state_dir)),
        "--host", parsed.hostname,
        "--port", str(parsed.port or DEFAULT_SERVE_PORT),
    ]  # fmt: skip
    return start_detached(
        "serving endpoint",
        command,
        serving_url,
        lambda: is_live(serving_url),
        state_dir / "server.log",
        env={**os.environ, **SERVER_ENV, TOKEN_ENV: token},
    )
