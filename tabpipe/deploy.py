"""Deploying a registered version to a running Open Inference Protocol server.

The order is what makes it safe: load the new version into the server, smoke-test it
with held-out rows, and only then move the ``champion`` alias. If any step fails, the
server goes back to what it served before under that model's name (or unloads that name,
on a first deploy) and the alias stays where it was. Other models the server serves are
never touched: one endpoint serves every model the project deploys, each by name.

The server's repository endpoints need its admin bearer token: this client reads it
from ``TABPIPE_SERVING_ADMIN_TOKEN``, or from the file ``TABPIPE_SERVING_ADMIN_TOKEN_FILE``
names (what ``tabpipe run`` hands the deploy task: the 0600 file beside the server it
started). The token is sent in the ``Authorization`` header, never logged.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabpipe.errors import ServiceError, TabpipeError

if TYPE_CHECKING:
    import pandas as pd

    from tabpipe.serving_spec import ServingSpec

LOAD_TIMEOUT_SECONDS = 300.0
REQUEST_TIMEOUT_SECONDS = 30.0
#: How long a load refused with 429 (the server busy with another load) is retried.
BUSY_RETRY_SECONDS = 120.0
#: The same variable the server reads (tabpipe.serving.auth.TOKEN_ENV).
TOKEN_ENV = "TABPIPE_SERVING_ADMIN_TOKEN"
#: A file holding the token (written 0600 by the launcher); the deploy task gets its path.
TOKEN_FILE_ENV = "TABPIPE_SERVING_ADMIN_TOKEN_FILE"


class DeployTarget(enum.StrEnum):
    """Where the deploy stage puts a blessed model."""

    #: Bundle plus the ``champion`` alias; a server picks it up by alias (the cluster path).
    REGISTRY = "registry"
    #: Also load it into the OIP server at ``serving_url``, smoke-test it, then move the alias.
    LOCAL_SERVER = "local-server"
    #: In a cluster (tabpipe.cluster_deploy): a SeldonDeployment, a KServe InferenceService, or a
    #: plain Deployment + Service, rolled out and smoke-tested before the alias moves.
    SELDON = "seldon"
    KSERVE = "kserve"
    PLAIN = "plain"

    @property
    def in_cluster(self) -> bool:
        """Whether the target is a Kubernetes serving stack."""
        return self in (DeployTarget.SELDON, DeployTarget.KSERVE, DeployTarget.PLAIN)


class DeployError(TabpipeError):
    """The new version failed to load or to answer; the previous state was restored."""


@dataclass(frozen=True)
class ServedModel:
    """What a server is serving: name, version and where it was loaded from."""

    name: str
    version: str
    source: str


def parse_target(value: str) -> DeployTarget:
    """Validate the pipeline's ``deploy_target`` parameter.

    Raises:
        TabpipeError: naming the parameter and the allowed values.
    """
    try:
        return DeployTarget(value)
    except ValueError:
        allowed = [t.value for t in DeployTarget]
        raise TabpipeError(f"deploy_target: {value!r} is not one of {allowed}") from None


def admin_token() -> str | None:
    """The serving endpoint's admin token, or None.

    From ``TABPIPE_SERVING_ADMIN_TOKEN``, else from the file ``TABPIPE_SERVING_ADMIN_TOKEN_FILE`` names.

    Raises:
        ServiceError: the file is named but cannot be read (the message names the file, not the token).
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as exc:
        raise ServiceError(f"{TOKEN_FILE_ENV}={path}: cannot read the admin token ({exc.strerror})") from None


def _request(method: str, url: str, **kwargs: Any) -> Any:
    import requests

    token = admin_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return requests.request(
            method, url, timeout=kwargs.pop("timeout", REQUEST_TIMEOUT_SECONDS), headers=headers, **kwargs
        )
    except requests.RequestException as exc:
        raise ServiceError(f"serving endpoint {url}: {exc}") from None


def _auth_hint(response: Any) -> str:
    """What to do about a 401/403 from the repository endpoints ('' for other answers)."""
    if response.status_code not in (401, 403):
        return ""
    sources = f"{TOKEN_ENV} or {TOKEN_FILE_ENV}"
    have = "the token sent was refused" if admin_token() else f"no token was sent ({sources})"
    return f" (the repository endpoints need the server's admin token; {have})"


def served_model(serving_url: str, name: str) -> ServedModel | None:
    """What the server serves now under ``name``, or None (other models it serves are not ours to touch)."""
    response = _request("GET", f"{serving_url}/v2/repository/index")
    if response.status_code != 200:
        raise ServiceError(
            f"{serving_url}/v2/repository/index answered HTTP {response.status_code}{_auth_hint(response)}"
        )
    for entry in response.json():
        # Other versions kept beside the default (--versions-per-model) are listed with default false.
        if entry.get("default", True) is False:
            continue
        if entry.get("name") == name and entry.get("state") == "READY" and entry.get("version"):
            return ServedModel(entry["name"], str(entry["version"]), entry.get("source", ""))
    return None


def load(serving_url: str, name: str, uri: str) -> str:
    """Ask the server to load ``uri`` as model ``name``; return the version it now serves.

    A 429 (another load running, or the server's load rate limit) is retried after its
    ``Retry-After``, for at most :data:`BUSY_RETRY_SECONDS`.
    """
    import time

    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        response = _request(
            "POST",
            f"{serving_url}/v2/repository/models/{name}/load",
            json={"parameters": {"uri": uri}},
            timeout=LOAD_TIMEOUT_SECONDS,
        )
        wait = _retry_after(response)
        if wait is None or time.monotonic() + wait > deadline:
            break
        time.sleep(wait)
    if response.status_code != 200:
        raise DeployError(
            f"the server refused to load {uri}: HTTP {response.status_code} {response.text[:300]}"
            f"{_auth_hint(response)}"
        )
    return str(response.json()["version"])


def _retry_after(response: Any) -> float | None:
    """The seconds a 429 asks to wait, or None for any other answer."""
    if response.status_code != 429:
        return None
    try:
        return max(float(response.headers.get("retry-after", "1")), 0.1)
    except ValueError:
        return 1.0


def infer_request(rows: pd.DataFrame, spec: ServingSpec) -> dict[str, Any]:
    """An OIP request (``content_type: pd``, one input per column) for ``rows``."""
    from tabpipe.contract import ColumnType

    inputs = []
    for column in spec.inputs:
        values = rows[column.name].tolist()
        text = column.rules.dtype in (ColumnType.STRING, ColumnType.DATETIME)
        data = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in values]
        if not text:
            data = [None if v is None else float(v) for v in data]
        inputs.append(
            {"name": column.name, "datatype": "BYTES" if text else "FP64", "shape": [len(rows)], "data": data}
        )
    return {"id": "tabpipe-deploy-smoke-test", "parameters": {"content_type": "pd"}, "inputs": inputs}


def smoke_test(serving_url: str, spec: ServingSpec, version: str, rows: pd.DataFrame) -> None:
    """Send held-out rows to the new version and check every answer.

    Raises:
        DeployError: a non-200 answer, another version answering, a wrong row count, or
            a class the model does not know.
    """
    url = f"{serving_url}/v2/models/{spec.model_name}/versions/{version}/infer"
    response = _request("POST", url, json=infer_request(rows, spec))
    if response.status_code != 200:
        raise DeployError(f"smoke test: {url} answered HTTP {response.status_code}: {response.text[:300]}")
    answer = response.json()
    if str(answer.get("model_version")) != version:
        raise DeployError(
            f"smoke test: version {answer.get('model_version')!r} answered, expected {version!r}"
        )
    outputs = {o["name"]: o for o in answer.get("outputs", [])}
    predictions = outputs.get("predict", {}).get("data", [])
    if len(predictions) != len(rows):
        raise DeployError(f"smoke test: {len(predictions)} prediction(s) for {len(rows)} row(s)")
    if spec.classes and not set(predictions) <= set(spec.classes):
        raise DeployError(
            f"smoke test: predictions {sorted(set(predictions) - set(spec.classes))} are not classes"
        )


def _restore(serving_url: str, name: str, previous: ServedModel | None) -> str:
    """Put the server back as it was; returns what happened, for the error message."""
    try:
        if previous is None:
            response = _request("POST", f"{serving_url}/v2/repository/models/{name}/unload")
            if response.status_code not in (200, 404):
                return f"ROLLBACK FAILED: unload answered HTTP {response.status_code}{_auth_hint(response)}"
            return f"{name} was unloaded (the server did not serve it before)"
        load(serving_url, previous.name, previous.source)
        return f"the server serves {previous.name} version {previous.version} again"
    except TabpipeError as exc:
        return f"ROLLBACK FAILED: {exc}"


def deploy_to_server(
    serving_url: str, spec: ServingSpec, version: str, rows: pd.DataFrame
) -> ServedModel | None:
    """Load ``models:/<name>/<version>`` into the server and smoke-test it.

    The caller moves the alias only after this returns.

    Returns:
        What the server served before, if anything.

    Raises:
        DeployError: the load or the smoke test failed; the server was restored first.
        ServiceError: the server is unreachable before anything changed.
    """
    previous = served_model(serving_url, spec.model_name)
    uri = f"models:/{spec.model_name}/{version}"
    try:
        loaded = load(serving_url, spec.model_name, uri)
        if loaded != version:
            raise DeployError(f"the server loaded version {loaded}, expected {version}")
        smoke_test(serving_url, spec, version, rows)
    except TabpipeError as exc:
        restored = _restore(serving_url, spec.model_name, previous)
        raise DeployError(
            f"deploying {uri} to {serving_url} failed: {exc}; {restored}; champion unchanged"
        ) from None
    return previous
