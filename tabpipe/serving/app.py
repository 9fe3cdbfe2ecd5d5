"""The Open Inference Protocol (V2) REST server: a lean Starlette app.

Endpoints (see ``openapi.yaml`` next to this file):

* ``GET /v2/health/live``, ``GET /v2/health/ready``
* ``GET /v2/models/{name}[/versions/{version}]`` (metadata) and ``.../ready``
* ``POST /v2/models/{name}[/versions/{version}]/infer``
* ``GET|POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load``
  (hot swap: the new model loads in a worker thread, then one reference is
  replaced; requests already running keep the object they started with)
* ``GET /metrics`` (Prometheus)

Bad requests answer 400/413/422 (see :mod:`tabpipe.serving.validation`); an
unknown model or version answers 404, and anything before the first model is
loaded answers 503.

The repository endpoints need the operator's bearer token (:mod:`tabpipe.serving.auth`;
403 when none is configured, 401 for a missing or wrong one); inference too when asked.
Infer bodies may use the binary tensor data extension (:mod:`tabpipe.serving.binary`).
At most ``Limits.max_inflight`` infer requests run at once (503 with ``Retry-After``),
and one load at a time (429). A too-large body is read and discarded, bounded, before
its 413, so the client can read it. The same state also answers gRPC
(:mod:`tabpipe.serving.grpc_server`) when a gRPC port is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tabpipe.errors import TabpipeError
from tabpipe.serving.auth import AdminToken, AuthError
from tabpipe.serving.binary import HEADER as BINARY_HEADER
from tabpipe.serving.binary import encode_tensor
from tabpipe.serving.metrics import CONTENT_TYPE_LATEST, ModelMetrics, ServingMetrics
from tabpipe.serving.request_error import Busy
from tabpipe.serving.store import LoadedModel, is_registry_uri, load_uri
from tabpipe.serving.validation import CONTRACT_DATATYPE, DecodedRequest, Limits, RequestDecoder, RequestError

log = logging.getLogger(__name__)

JSON = "application/json"
UNKNOWN = "__unknown__"
# Batches above these sizes run off the event loop so health probes keep answering.
INLINE_MAX_ROWS = 256
INLINE_MAX_BODY_BYTES = 256 * 1024


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")).encode(), status_code=status, media_type=JSON)


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _datatype_of(values: list[Any]) -> str:
    """The OIP datatype of a list of labels (classes) for the ``predict`` output."""
    if values and all(type(v) is bool for v in values):
        return "BOOL"
    if values and all(type(v) is int for v in values):
        return "INT64"
    if values and all(type(v) in (int, float) for v in values):
        return "FP64"
    return "BYTES"


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model with everything a request needs, built once at load."""

    loaded: LoadedModel
    decoder: RequestDecoder
    metrics: ModelMetrics
    outputs: list[str]
    predict_datatype: str
    metadata: bytes

    @property
    def name(self) -> str:
        """The model's name."""
        return self.loaded.spec.model_name

    @property
    def version(self) -> str:
        """The version it answers as."""
        return self.loaded.version

    @property
    def classifier(self) -> bool:
        """Whether it answers class probabilities too."""
        return "probabilities" in self.outputs


def _metadata(loaded: LoadedModel, outputs: list[str], predict_datatype: str) -> bytes:
    spec = loaded.spec
    inputs = [
        {
            "name": inp.name,
            "datatype": CONTRACT_DATATYPE[inp.rules.dtype],
            "shape": [-1],
            "parameters": {"contract": inp.rules.model_dump(mode="json", exclude_none=True)},
        }
        for inp in spec.inputs
    ]
    out = [{"name": "predict", "datatype": predict_datatype, "shape": [-1]}]
    if "probabilities" in outputs:
        out.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(spec.classes)]})
    payload = {
        "name": spec.model_name,
        "versions": [loaded.version],
        "platform": f"tabpipe-{loaded.predictor.kind}",
        "inputs": inputs,
        "outputs": out,
        "parameters": {
            "content_type": "pd",
            "task": spec.task.value,
            "target": spec.target,
            "classes": spec.classes,
            "sha256": spec.sha256,
        },
    }
    if loaded.onnx_reason is not None:
        # Why this model is served by scikit-learn rather than its ONNX export.
        payload["parameters"]["onnx_reason"] = loaded.onnx_reason
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Output:
    """One output tensor of an answer."""

    name: str
    datatype: str
    values: np.ndarray

    def header(self) -> dict[str, Any]:
        """Its JSON description without data."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.values.shape)}

    def as_json(self) -> dict[str, Any]:
        """Its JSON description with the data (flat, row-major)."""
        return {**self.header(), "data": self.values.ravel().tolist()}


def predict(active: ActiveModel, decoded: DecodedRequest) -> list[Output]:
    """Run the model on a validated request, count it in the metrics, and return the requested outputs."""
    pred, proba = active.loaded.predictor.predict(decoded.columns)
    active.metrics.observe(decoded.columns, pred, decoded.n_rows, warnings=decoded.warnings)
    wanted = decoded.outputs or active.outputs
    outputs = []
    if "predict" in wanted:
        outputs.append(Output("predict", active.predict_datatype, np.asarray(pred)))
    if proba is not None and "probabilities" in wanted:
        outputs.append(Output("probabilities", "FP64", proba))
    return outputs


@dataclass
class ServerConfig:
    """How the server loads models.

    Attributes:
        model_uri: What to load at startup: a bundle directory or a ``models:/`` URI.
        tracking_uri: MLflow tracking URI, needed for ``models:/`` URIs.
        limits: Request size limits.
        bundle_root: Directories the load endpoint may load from (it must not read
            arbitrary paths a client names); defaults to the parent of a startup bundle directory.
        admin: The bearer token the repository extension (and, if the operator asks,
            inference) requires; without one the repository endpoints answer 403.
        grpc_port: Also serve the OIP gRPC API (:mod:`tabpipe.serving.grpc_server`) on this port.
        grpc_host: The address the gRPC endpoint listens on.
    """

    model_uri: str | None
    tracking_uri: str | None = None
    limits: Limits = field(default_factory=Limits)
    bundle_root: Path | None = None
    admin: AdminToken = field(default_factory=lambda: AdminToken(env={}))
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.bundle_root is None and self.model_uri and not is_registry_uri(self.model_uri):
            self.bundle_root = Path(self.model_uri).resolve().parent


class Admission:
    """Counts infer requests in progress (REST and gRPC) and refuses those over the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place while the block runs.

        Raises:
            Busy: 503 with ``Retry-After: 1`` when ``limit`` requests are in progress already.
        """
        with self._lock:
            if self.current >= self.limit:
                raise Busy(503, f"the server has {self.limit} requests in progress; retry shortly", 1)
            self.current += 1
        try:
            yield
        finally:
            with self._lock:
                self.current -= 1


class MemoryTrimmer:
    """Hands freed heap back to the system after large requests (glibc's ``malloc_trim``).

    Python frees a 10 MB body or a 10,000-row batch into the C heap, which glibc keeps
    for reuse; after hostile or bursty traffic the process would stay at its peak. A
    background thread trims at most every ``interval`` seconds, only after a large
    request was seen: nothing on the hot path but setting a flag. A no-op off glibc.
    """

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.pending = False
        self._stop = threading.Event()
        self._trim = _malloc_trim()

    def note_large(self) -> None:
        """A large request just finished: trim at the next tick."""
        self.pending = True

    def run(self) -> None:
        """The thread's loop; returns when :meth:`stop` is called."""
        while not self._stop.wait(self.interval):
            if self.pending and self._trim is not None:
                self.pending = False
                self._trim(0)

    def stop(self) -> None:
        """End the loop."""
        self._stop.set()


def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


class ServingState:
    """The model being served and the load machinery around it."""

    def __init__(self, config: ServerConfig, metrics: ServingMetrics) -> None:
        self.config = config
        self.metrics = metrics
        # Replaced as a whole on a swap; readers take one snapshot per request.
        self.active: ActiveModel | None = None
        self.state = "UNAVAILABLE"
        self.reason = "not loaded yet"
        self._load_lock = threading.Lock()
        self.admission = Admission(config.limits.max_inflight)
        self.trimmer = MemoryTrimmer()

    def check_not_loading(self) -> None:
        """Refuse a load while another runs: loads are one at a time, and a queue of them helps no one.

        Raises:
            Busy: 429 with ``Retry-After: 5``.
        """
        if self._load_lock.locked():
            raise Busy(429, "another load is in progress; retry when it has finished", 5)

    def build(self, loaded: LoadedModel) -> ActiveModel:
        """Wrap a loaded model with its decoder, metrics and metadata."""
        spec = loaded.spec
        classifier = spec.task.is_classification
        outputs = ["predict", "probabilities"] if classifier else ["predict"]
        predict_datatype = _datatype_of(spec.classes) if classifier else "FP64"
        return ActiveModel(
            loaded=loaded,
            decoder=RequestDecoder(spec, self.config.limits, outputs),
            metrics=ModelMetrics(self.metrics, spec, loaded.version),
            outputs=outputs,
            predict_datatype=predict_datatype,
            metadata=_metadata(loaded, outputs, predict_datatype),
        )

    def load(self, uri: str, expected_name: str | None = None) -> ActiveModel:
        """Load ``uri`` and swap it in; blocking, so call it from a worker thread.

        Raises:
            TabpipeError: the model cannot be loaded or verified, or its name is not ``expected_name``.
        """
        with self._load_lock:
            previous_state = self.state
            self.state = "LOADING"
            try:
                try:
                    loaded = load_uri(uri, self.config.tracking_uri)
                except OSError as exc:  # a path the file system refuses (too long, a loop, ...)
                    raise TabpipeError(f"cannot read {uri[:300]}: {exc.strerror or exc}") from None
                active = self.build(loaded)
                if expected_name is not None and active.name != expected_name:
                    raise TabpipeError(f"{uri} holds model {active.name!r}, not {expected_name!r}")
            except Exception as exc:
                self.metrics.loads.labels("failed").inc()
                # A failed load keeps serving the current model.
                self.state = previous_state if self.active is not None else "UNAVAILABLE"
                self.reason = f"loading {uri} failed: {exc}"
                raise
            old = self.active
            self.active = active
            self.state, self.reason = "READY", ""
            self.metrics.loads.labels("ok").inc()
            if old is not None:
                self.metrics.model_info.labels(old.name, old.version, old.loaded.predictor.kind).set(0)
            self.metrics.model_info.labels(active.name, active.version, active.loaded.predictor.kind).set(1)
            log.info("serving %s version %s from %s", active.name, active.version, uri)
            return active

    def unload(self) -> None:
        """Stop serving the current model (readiness turns false); used to roll back a first deploy."""
        with self._load_lock:
            old = self.active
            self.active = None
            self.state, self.reason = "UNAVAILABLE", "unloaded"
            if old is not None:
                self.metrics.model_info.labels(old.name, old.version, old.loaded.predictor.kind).set(0)

    def load_initial(self) -> None:
        """Load the startup model; failures are logged and leave the server not ready."""
        uri = self.config.model_uri
        if not uri:
            return
        try:
            self.load(uri)
        except Exception as exc:  # noqa: BLE001 (the server stays up, not ready, and says why)
            log.error("could not load %s: %s", uri, exc)

    def check_load_uri(self, uri: str) -> None:
        """Refuse load-endpoint URIs outside what the operator allowed.

        Raises:
            RequestError: the URI is a directory outside the bundle root, or a
                registry URI without a tracking server.
        """
        if is_registry_uri(uri):
            if not self.config.tracking_uri:
                raise RequestError(400, "parameters.uri: registry URIs need the server's --tracking-uri")
            return
        root = self.config.bundle_root
        try:
            inside = root is not None and Path(uri).resolve().is_relative_to(root.resolve())
        except (ValueError, OSError, RuntimeError):  # a NUL byte, a name too long, a symlink loop
            inside = False
        if not inside:
            raise RequestError(400, f"parameters.uri: {uri!r} is outside the allowed bundle root {root}")


Handler = Callable[[Request], Awaitable[tuple[Response, str, str]]]


def create_app(config: ServerConfig, load_on_startup: bool = True) -> Starlette:
    """Build the ASGI app; with ``load_on_startup`` the model loads in a thread after startup.

    Args:
        config: What to load and the request limits.
        load_on_startup: Start loading ``config.model_uri`` when the server starts
            (liveness answers at once; readiness turns true when the load finishes).
    """
    metrics = ServingMetrics()
    state = ServingState(config, metrics)

    def labels(active: ActiveModel | None, name: str | None) -> tuple[str, str]:
        if active is not None and (name is None or name == active.name):
            return active.name, active.version
        return UNKNOWN, ""

    def resolve(request: Request) -> ActiveModel:
        active = state.active
        if active is None:
            raise RequestError(503, f"no model is loaded yet ({state.reason})")
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != active.name:
            raise RequestError(404, f"model {name!r} not found; serving {active.name!r}")
        if version is not None and version != active.version:
            raise RequestError(404, f"model {name!r} has no version {version!r}; serving {active.version!r}")
        return active

    admin = config.admin

    def instrumented(
        endpoint: str, handler: Handler, guard: str | None = None
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with metrics and error answers.

        ``guard`` "admin" always needs the token; "inference" only when the operator
        requires it for inference too.
        """
        guarded = guard == "admin" or (guard == "inference" and admin.require_for_inference)

        async def run(request: Request) -> Response:
            start = time.perf_counter()
            model, version = UNKNOWN, ""
            try:
                if guarded:
                    admin.check(request.headers.get("authorization"))
                response, model, version = await handler(request)
            except RequestError as exc:
                model, version = labels(state.active, request.path_params.get("name"))
                response = _error(exc.status, exc.message)
                if exc.status == 413:
                    # The body was drained or refused unread: start afresh on a new connection.
                    response.headers["Connection"] = "close"
                else:
                    await _discard_unread_body(request)
                if isinstance(exc, Busy):
                    response.headers["Retry-After"] = str(exc.retry_after)
            except AuthError as exc:
                model, version = labels(state.active, request.path_params.get("name"))
                response = _error(exc.status, exc.message)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="tabpipe-serving"'
                await _discard_unread_body(request)
            except Exception:
                log.exception("unexpected error on %s", request.url.path)
                response = _error(500, "internal server error")
            metrics.observe_request(
                model, version, endpoint, response.status_code, time.perf_counter() - start
            )
            return response

        return run

    async def live(request: Request) -> tuple[Response, str, str]:
        return _json({"live": True}), *labels(state.active, None)

    async def ready(request: Request) -> tuple[Response, str, str]:
        active = state.active
        return _json({"ready": active is not None}, 200 if active is not None else 503), *labels(active, None)

    async def model_metadata(request: Request) -> tuple[Response, str, str]:
        active = resolve(request)
        return Response(active.metadata, media_type=JSON), active.name, active.version

    async def model_ready(request: Request) -> tuple[Response, str, str]:
        active = resolve(request)
        return _json({"name": active.name, "ready": True}), active.name, active.version

    async def infer(request: Request) -> tuple[Response, str, str]:
        active = resolve(request)  # one snapshot: a swap mid-request does not affect it
        with state.admission.admit():
            return await infer_admitted(request, active)

    async def infer_admitted(request: Request, active: ActiveModel) -> tuple[Response, str, str]:
        body = await _read_body(request, config.limits.max_body_bytes)
        header_length = request.headers.get(BINARY_HEADER)  # the binary tensor extension
        decoder = active.decoder
        if len(body) > INLINE_MAX_BODY_BYTES:
            state.trimmer.note_large()
            decoded = await run_in_threadpool(decoder.decode, body, header_length)
        else:
            decoded = decoder.decode(body, header_length)
        if decoded.n_rows > INLINE_MAX_ROWS:
            state.trimmer.note_large()
            outputs = await run_in_threadpool(predict, active, decoded)
        else:
            outputs = predict(active, decoded)
        payload: dict[str, Any] = {"model_name": active.name, "model_version": active.version}
        if decoded.id is not None:
            payload["id"] = decoded.id
        payload["parameters"] = {"classes": active.loaded.spec.classes} if active.classifier else {}
        if decoded.binary_outputs:
            payload["outputs"] = [o.header() for o in outputs]
            return _binary_response(payload, outputs, decoded.binary_outputs), active.name, active.version
        payload["outputs"] = [o.as_json() for o in outputs]
        return _json(payload), active.name, active.version

    async def repository_index(request: Request) -> tuple[Response, str, str]:
        active = state.active
        entries = []
        if active is not None:
            entries.append(
                {
                    "name": active.name,
                    "version": active.version,
                    "state": state.state,
                    "reason": state.reason,
                    # Where it was loaded from, so a deployer can roll back to it.
                    "source": active.loaded.source,
                }
            )
        elif config.model_uri:
            entries.append(
                {"name": config.model_uri, "version": "", "state": state.state, "reason": state.reason}
            )
        return _json(entries), *labels(active, None)

    async def repository_load(request: Request) -> tuple[Response, str, str]:
        name = request.path_params["name"]
        body = await _read_body(request, 64 * 1024)
        uri = _load_uri(body)
        if uri is None:
            active = state.active
            uri = active.loaded.source if active is not None else config.model_uri
            if uri is None:
                raise RequestError(400, "parameters.uri: no model URI given and none configured")
        else:
            state.check_load_uri(uri)
        state.check_not_loading()
        try:
            active = await run_in_threadpool(state.load, uri, name)
        except TabpipeError as exc:
            # OIP repository extension: a failed load answers 400 with the reason.
            raise RequestError(400, f"loading {name!r} from {uri} failed: {exc}") from None
        return _json({"name": active.name, "version": active.version}), active.name, active.version

    async def repository_unload(request: Request) -> tuple[Response, str, str]:
        name = request.path_params["name"]
        active = state.active
        if active is None or active.name != name:
            raise RequestError(404, f"model {name!r} is not loaded")
        await run_in_threadpool(state.unload)
        return _json({"name": name, "unloaded": True}), name, active.version

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if load_on_startup and config.model_uri:
            state.state = "LOADING"
            # A thread, not awaited: the server starts answering /v2/health/live at once.
            threading.Thread(target=state.load_initial, name="model-load", daemon=True).start()
        trimmer = threading.Thread(target=state.trimmer.run, name="malloc-trim", daemon=True)
        trimmer.start()
        grpc_server = None
        if config.grpc_port is not None:
            from tabpipe.serving.grpc_server import start_grpc_server

            grpc_server = start_grpc_server(state, config.grpc_host, config.grpc_port)
        try:
            yield
        finally:
            state.trimmer.stop()
            if grpc_server is not None:
                grpc_server.stop(grace=2).wait(5)

    routes = [
        Route("/v2/health/live", instrumented("health_live", live), methods=["GET"]),
        Route("/v2/health/ready", instrumented("health_ready", ready), methods=["GET"]),
        Route("/v2/models/{name}", instrumented("metadata", model_metadata, "inference"), methods=["GET"]),
        Route(
            "/v2/models/{name}/versions/{version}",
            instrumented("metadata", model_metadata, "inference"),
            methods=["GET"],
        ),
        Route(
            "/v2/models/{name}/ready", instrumented("model_ready", model_ready, "inference"), methods=["GET"]
        ),
        Route(
            "/v2/models/{name}/versions/{version}/ready",
            instrumented("model_ready", model_ready, "inference"),
            methods=["GET"],
        ),
        Route("/v2/models/{name}/infer", instrumented("infer", infer, "inference"), methods=["POST"]),
        Route(
            "/v2/models/{name}/versions/{version}/infer",
            instrumented("infer", infer, "inference"),
            methods=["POST"],
        ),
        Route(
            "/v2/repository/index",
            instrumented("repository_index", repository_index, "admin"),
            methods=["GET", "POST"],
        ),
        Route(
            "/v2/repository/models/{name}/load",
            instrumented("repository_load", repository_load, "admin"),
            methods=["POST"],
        ),
        Route(
            "/v2/repository/models/{name}/unload",
            instrumented("repository_unload", repository_unload, "admin"),
            methods=["POST"],
        ),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.serving = state
    return app


def _binary_response(payload: dict[str, Any], outputs: list[Output], binary: frozenset[str]) -> Response:
    """Answer the outputs in ``binary`` as raw tensors after the JSON (the binary tensor extension)."""
    chunks: list[bytes] = []
    for output, entry in zip(outputs, payload["outputs"], strict=True):
        if output.name in binary:
            data = encode_tensor(output.datatype, output.values)
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = output.values.ravel().tolist()
    header = json.dumps(payload, separators=(",", ":")).encode()
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


#: How much of a too-large body is read and thrown away so the client can read its 413.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
#: How long draining may take before the connection is closed anyway.
DRAIN_SECONDS = 30.0


async def _drain(chunks: AsyncIterator[bytes], budget: int) -> None:
    """Read and discard up to ``budget`` bytes for at most :data:`DRAIN_SECONDS`.

    A server that answers 413 and closes with the body still arriving makes the
    client's TCP stack see a reset: its sends fail and it never reads the answer
    (http.client, requests, urllib). Reading the rest first (bounded in bytes and
    time, never kept) lets the 413 through; only a body past the bound is cut off.
    """
    with contextlib.suppress(TimeoutError, ClientDisconnect):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in chunks:
                budget -= len(chunk)
                if budget < 0:
                    return


async def _discard_unread_body(request: Request) -> None:
    """Drain a body an early refusal (401, 404, 503, ...) left unread, for the same reason as a 413's."""
    if request.method != "POST" or getattr(request.state, "body_read", False):
        return
    declared = request.headers.get("content-length")
    if declared == "0" or (
        declared is None and "chunked" not in request.headers.get("transfer-encoding", "")
    ):
        return
    request.state.body_read = True
    with contextlib.suppress(RuntimeError):  # consumed after all
        await _drain(request.stream(), DRAIN_MAX_BYTES)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes by header and by actual size.

    A too-large body is answered 413 with ``Connection: close`` after the rest of it
    is read and discarded (:func:`_drain`), so the client reads the status instead of
    a connection reset. With ``Expect: 100-continue`` the 413 goes before the body.
    """
    request.state.body_read = True
    declared = request.headers.get("content-length")
    if declared is not None and len(declared) > 6:  # a megabyte or more
        request.app.state.serving.trimmer.note_large()
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, "Content-Length: not an integer") from None
        if size > limit:
            message = f"request body of {size} bytes exceeds the limit of {limit}"
            # uvicorn sends "100 Continue" only once the body is read: not reading it refuses it cleanly.
            if "100-continue" not in request.headers.get("expect", "").lower() and size <= DRAIN_MAX_BYTES:
                await _drain(request.stream(), size)
            raise RequestError(413, message)
    chunks: list[bytes] = []
    read = 0
    stream = request.stream()
    async for chunk in stream:
        read += len(chunk)
        if read > limit:
            await _drain(stream, DRAIN_MAX_BYTES)
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _load_uri(body: bytes) -> str | None:
    """The ``parameters.uri`` of a repository load request, if any."""
    if not body.strip():
        return None
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, "load request body is not valid JSON") from None
    if not isinstance(request, dict):
        raise RequestError(400, "load request body must be a JSON object")
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise RequestError(400, "parameters: must be an object")
    uri = parameters.get("uri")
    if uri is not None and (not isinstance(uri, str) or not uri):
        raise RequestError(400, "parameters.uri: must be a non-empty string")
    return uri
