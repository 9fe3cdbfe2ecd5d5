"""Start the local serving endpoint when none answers (what ``make run`` deploys to)."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse

from tabpipe.errors import ServiceError
from tabpipe.mlflow_server import ServerHandle, start_detached

DEFAULT_SERVING_URL = "http://127.0.0.1:8080"


def is_live(serving_url: str, timeout: float = 2.0) -> bool:
    """True when an OIP server answers its liveness endpoint."""
    import requests

    try:
        return requests.get(f"{serving_url}/v2/health/live", timeout=timeout).ok
    except requests.RequestException:
        return False


def ensure_serving(serving_url: str, model_name: str, tracking_uri: str, state_dir: Path) -> ServerHandle:
    """Use the server at ``serving_url`` if it is live, else start one serving ``@champion``.

    A first run has no champion yet: the server then starts not ready, and the
    deploy stage loads the new version into it.
    """
    if is_live(serving_url):
        return ServerHandle(serving_url, False, None, None)
    parsed = urlparse(serving_url)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ServiceError(f"will only start a local server for http://127.0.0.1:<port>, not {serving_url}")
    command = [
        sys.executable, "-m", "tabpipe.serving",
        "--model", f"models:/{model_name}@champion",
        "--tracking-uri", tracking_uri,
        "--host", parsed.hostname,
        "--port", str(parsed.port or 8080),
    ]  # fmt: skip
    return start_detached(
        "serving endpoint", command, serving_url, lambda: is_live(serving_url), state_dir / "server.log"
    )
