"""``kfp.Client`` behind one-line errors: the KFP API is checked first, and its failures are translated.

``kfp.Client`` itself lets every failure out as a traceback: an unreachable host
surfaces as urllib3's ``MaxRetryError`` (from the constructor, which asks the
API's healthz endpoint), an HTTP error as an ``ApiException`` whose text is the
whole response with headers. Here they become :class:`~tabpipe.errors.ServiceError`
with one line naming the host, the call and the server's own message, which the
command line prints as ``error: ...``. The client's own "Run details: ..." prints
are swallowed; callers print their URLs once.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from tabpipe.errors import ServiceError

T = TypeVar("T")

#: The KFP v2beta1 endpoint asked before anything else (also what ``kfp.Client()`` asks first).
HEALTHZ_PATH = "/apis/v2beta1/healthz"
#: Where the API is on the project's cluster: kind-cluster.yaml maps the KFP UI (which proxies the API) there.
DEFAULT_HOST = "http://localhost:18080"
#: How a user gets the API (README, manifests/README.md).
PORT_FORWARD_HINT = (
    f"is the cluster up (make cluster-up serves KFP at {DEFAULT_HOST}) or a port-forward running "
    "(kubectl -n kubeflow port-forward svc/ml-pipeline-ui 18080:80)? "
    "--host (make: KFP_HOST=) points elsewhere"
)


def _reason(exc: BaseException) -> str:
    """The short cause of a connection failure: 'Connection refused', 'timed out', ..."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "no answer in time"
    if "connection aborted" in lowered or "remotedisconnected" in lowered or "reset" in lowered:
        return "the connection was closed"
    return type(exc).__name__


def _server_message(body: Any) -> str:
    """The message a KFP API error response carries (its JSON ``message``/``error``), else its text."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return " ".join(str(body).split())[:300]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or "").strip()[:300]
    return ""


def unreachable(host: str, exc: BaseException) -> ServiceError:
    """The error for a KFP API that cannot be reached at all."""
    return ServiceError(f"cannot reach the KFP API at {host} ({_reason(exc)}); {PORT_FORWARD_HINT}")


class KfpApi:
    """A connected ``kfp.Client`` whose calls fail with one line.

    Args:
        host: The KFP API (and UI) base URL, e.g. ``http://localhost:8080``.
        ui_url: Where run links point; the host by default (the UI's port-forward serves both).
        timeout: Seconds to wait for the API to connect and answer one call.

    Raises:
        ServiceError: the API is unreachable, or answers the health check with an error.
    """

    def __init__(self, host: str, *, ui_url: str | None = None, timeout: float = 30.0) -> None:
        self.host = host.rstrip("/")
        self.ui_url = (ui_url or host).rstrip("/")
        self.timeout = timeout
        self._check_health()
        self.client = self._connect()

    def _check_health(self) -> None:
        """One quick GET of the healthz endpoint, with a timeout ``kfp.Client`` does not have."""
        import requests

        url = f"{self.host}{HEALTHZ_PATH}"
        try:
            # No redirects: a login page (Kubeflow's dashboard in front of KFP) is not the API.
            answer = requests.get(url, timeout=(min(self.timeout, 10.0), self.timeout), allow_redirects=False)
        except requests.RequestException as exc:
            raise unreachable(self.host, exc) from None
        problem = None
        if answer.status_code != 200:
            detail = _server_message(answer.content)
            problem = f"answered HTTP {answer.status_code} on {HEALTHZ_PATH}" + (
                f": {detail}" if detail else ""
            )
        else:
            try:
                answer.json()
            except ValueError:
                problem = f"answered {HEALTHZ_PATH} with something other than JSON"
        if problem:
            raise ServiceError(f"{self.host} is not the KFP API: it {problem}; {PORT_FORWARD_HINT}")

    def _connect(self) -> Any:
        import kfp

        with warnings.catch_warnings():
            # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later versions."
            warnings.simplefilter("ignore", FutureWarning)
            client = self.call("connect", kfp.Client, host=self.host, ui_host=self.ui_url)
        _set_request_timeout(client, self.timeout)
        return client

    def call(self, what: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``method`` (a ``kfp.Client`` method); translate its failures into :class:`ServiceError`.

        Args:
            what: The call, as the message names it ("create run", ...).
            method: The callable.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments.
        """
        import urllib3
        from kfp_server_api.exceptions import ApiException

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return method(*args, **kwargs)
        except ApiException as exc:
            if not exc.status:  # the generated client's own wrapping of an SSL failure
                raise unreachable(self.host, Exception(exc.reason)) from None
            detail = _server_message(exc.body)
            raise ServiceError(
                f"KFP API at {self.host}: {what} failed: HTTP {exc.status} {exc.reason or ''}".rstrip()
                + (f": {detail}" if detail else "")
            ) from None
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise unreachable(self.host, exc) from None
        except ValueError as exc:
            # kfp.Client's own refusals: several experiments or pipelines of one name, and the like.
            raise ServiceError(f"KFP API at {self.host}: {what} failed: {exc}") from None

    def run_url(self, run_id: str) -> str:
        """The run's page in the KFP UI."""
        return f"{self.ui_url}/#/runs/details/{run_id}"

    def pipeline_version_url(self, pipeline_id: str, version_id: str) -> str:
        """The pipeline version's page in the KFP UI (where a run can be started from)."""
        return f"{self.ui_url}/#/pipelines/details/{pipeline_id}/version/{version_id}"

    def recurring_run_url(self, recurring_run_id: str) -> str:
        """The recurring run's page in the KFP UI."""
        return f"{self.ui_url}/#/recurringrun/details/{recurring_run_id}"


def _set_request_timeout(client: Any, seconds: float) -> None:
    """Bound every API call: the generated client sets no timeout, so a stalled API would hang forever.

    Best effort: reaches into ``kfp.Client``'s generated API client (kfp 2.17), and
    leaves the client as it is if that layout changes.
    """
    import urllib3

    rest = getattr(getattr(getattr(client, "_run_api", None), "api_client", None), "rest_client", None)
    pool = getattr(rest, "pool_manager", None)
    if pool is not None and hasattr(pool, "connection_pool_kw"):
        pool.connection_pool_kw["timeout"] = urllib3.Timeout(connect=min(seconds, 10.0), read=seconds)
