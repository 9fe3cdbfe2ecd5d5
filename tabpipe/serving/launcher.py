"""Start the local serving endpoint when none answers (what ``make run`` deploys to)."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse

from tabpipe.errors import ServiceError
from tabpipe.mlflow_server import ServerHandle, claim_or_refuse, start_detached

#: Not 8080: the cluster path maps the KFP UI there (kind-cluster.yaml).
DEFAULT_SERVE_PORT = 8765
DEFAULT_SERVING_URL = f"http://127.0.0.1:{DEFAULT_SERVE_PORT}"


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

    A first run has no champion yet: the server then starts not ready, and the
    deploy stage loads the new version into it.

    Raises:
        ServiceError: another server answers there (unless ``reuse``), or ours did not come up.
    """
    if is_live(serving_url):
        handle = claim_or_refuse("serving endpoint", serving_url, state_dir, reuse, "SERVE_PORT=<port>")
        if handle is not None:
            return handle
    parsed = urlparse(serving_url)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ServiceError(f"will only start a local server for http://127.0.0.1:<port>, not {serving_url}")
    command = [
        sys.executable, "-m", "tabpipe.serving",
        "--model", f"models:/{model_name}@champion",
        "--tracking-uri", tracking_uri,
        "--host", parsed.hostname,
        "--port", str(parsed.port or DEFAULT_SERVE_PORT),
    ]  # fmt: skip
    return start_detached(
        "serving endpoint", command, serving_url, lambda: is_live(serving_url), state_dir / "server.log"
    )
