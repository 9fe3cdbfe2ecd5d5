"""The Open Inference Protocol (V2) REST server: a lean Starlette app.

Endpoints (see ``openapi.yaml`` next to this file):

* ``GET /v2/health/live``, ``GET /v2/health/ready``
* ``GET /v2/models/{name}[/versions/{version}]`` (metadata) and ``.../ready``
* ``POST /v2/models/{name}[/versions/{version}]/infer``
* ``GET|POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load|unload``
  (several models by name, :mod:`tabpipe.serving.state`: a load of one name loads in a
  worker thread, then swaps that name alone; requests already running keep the model
  they started with)
* ``GET /metrics`` (Prometheus)

Bad requests answer 400/413/422 (see :mod:`tabpipe.serving.validation`); an
unknown model or version answers 404, and a model still loading (or nothing loaded) 503.

The repository endpoints need the operator's bearer token (:mod:`tabpipe.serving.auth`;
403 when none is configured, 401 for a missing or wrong one); inference too when asked.
Infer bodies may use the binary tensor data extension (:mod:`tabpipe.serving.binary`).
At most ``Limits.max_inflight`` infer requests, holding at most ``max_inflight_bytes`` of
bodies, run at once (503 with ``Retry-After``); one load at a time, and a bounded number a
minute (429). A too-large body is read and discarded, bounded, before
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tabpipe.errors import TabpipeError
from tabpipe.serving.auth import AuthError
from tabpipe.serving.binary import HEADER as BINARY_HEADER
from tabpipe.serving.binary import encode_tensor
from tabpipe.serving.metrics import CONTENT_TYPE_LATEST, ServingMetrics
from tabpipe.serving.request_error import Busy
from tabpipe.serving.state import (
    INLINE_MAX_BODY_BYTES,
    UNKNOWN,
    ActiveModel,
    LoadRequest,
    Output,
    Reservation,
    ServerConfig,
    ServingState,
    predict,
    unload_version,
)
from tabpipe.serving.validation import DEFAULT_BODY_READ_SECONDS, RequestError

log = logging.getLogger(__name__)

JSON = "application/json"
# Batches above these sizes run off the event loop so health probes keep answering.
INLINE_MAX_ROWS = 256
#: The metrics' status for a request whose client left before its body arrived (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_dumps(payload), status_code=status, media_type=JSON)


def _dumps(payload: Any) -> bytes:
    """Compact JSON: orjson (a 1,000-row answer in 0.07 ms instead of 1.2 ms), json for what it refuses.

    orjson raises on a lone surrogate (a client's ``id`` may hold one) and on integers past
    64 bits; json writes those as before. (orjson writes NaN as null, which is valid JSON.)
    """
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, separators=(",", ":")).encode()


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


Handler = Callable[[Request], Awaitable[tuple[Response, str, str]]]


def create_app(config: ServerConfig, load_on_startup: bool = True) -> Starlette:
    """Build the ASGI app; with ``load_on_startup`` the startup models load in a thread after startup.

    Args:
        config: What to load and the request limits.
        load_on_startup: Start loading ``config.model_uris`` when the server starts
            (liveness answers at once; readiness turns true when every load has finished).
    """
    metrics = ServingMetrics()
    state = ServingState(config, metrics)

    def resolve(request: Request) -> ActiveModel:
        return state.resolve(request.path_params["name"], request.path_params.get("version"))

    def request_labels(request: Request) -> tuple[str, str]:
        return state.labels(request.path_params.get("name"), request.path_params.get("version"))

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
                # Break the cycle asyncio's future makes with the traceback's frames (one holds the
                # body): without it a 30 MB body stays until a full garbage collection.
                exc.__traceback__ = None
                model, version = request_labels(request)
                response = _error(exc.status, exc.message)
                if exc.status in (408, 413):
                    # The body was drained or refused unread: start afresh on a new connection.
                    response.headers["Connection"] = "close"
                else:
                    await _discard_unread_body(request)
                if isinstance(exc, Busy):
                    response.headers["Retry-After"] = str(exc.retry_after)
            except AuthError as exc:
                model, version = request_labels(request)
                response = _error(exc.status, exc.message)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="tabpipe-serving"'
                await _discard_unread_body(request)
            except RecursionError:
                # A body nested deeper than Python can walk (orjson parses 1,023 levels).
                response = _error(400, "the request is nested too deeply")
            except ClientDisconnect:
                # The client went away mid-body: nobody reads an answer; 499 only labels the metric.
                model, version = request_labels(request)
                response = _error(CLIENT_CLOSED_REQUEST, "the client closed the connection")
            except Exception:
                log.exception("unexpected error on %s", request.url.path)
                response = _error(500, "internal server error")
            metrics.observe_request(
                model, version, endpoint, response.status_code, time.perf_counter() - start
            )
            return response

        return run

    async def live(request: Request) -> tuple[Response, str, str]:
        return _json({"live": True}), UNKNOWN, ""

    async def ready(request: Request) -> tuple[Response, str, str]:
        is_ready = state.ready
        return _json({"ready": is_ready}, 200 if is_ready else 503), UNKNOWN, ""

    async def model_metadata(request: Request) -> tuple[Response, str, str]:
        active = resolve(request)
        return Response(active.metadata, media_type=JSON), active.name, active.version

    async def model_ready(request: Request) -> tuple[Response, str, str]:
        active = resolve(request)
        return _json({"name": active.name, "ready": True}), active.name, active.version

    async def infer(request: Request) -> tuple[Response, str, str]:
        active = resolve(request)  # one snapshot: a swap mid-request does not affect it
        with state.admission.admit() as reservation:
            return await infer_admitted(request, active, reservation)

    async def infer_admitted(
        request: Request, active: ActiveModel, reservation: Reservation
    ) -> tuple[Response, str, str]:
        body = await _read_body(request, config.limits.max_body_bytes, reservation, config.body_read_seconds)
        header_length = request.headers.get(BINARY_HEADER)  # the binary tensor extension
        decoder = active.decoder
        if len(body) > INLINE_MAX_BODY_BYTES:
            state.trimmer.note_large()
            decoded = await run_in_threadpool(decoder.decode, body, header_length)
        else:
            decoded = decoder.decode(body, header_length)
        if decoded.n_rows > INLINE_MAX_ROWS:
            state.trimmer.note_large()
            outputs = await run_in_threadpool(predict, state, active, decoded)
        else:
            outputs = predict(state, active, decoded)
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
        ready_only = False
        if request.method == "POST":
            body = await _read_body(request, 64 * 1024)
            ready_only = _index_ready_only(body)
        return _json([entry.as_json() for entry in state.index(ready_only)]), UNKNOWN, ""

    async def repository_load(request: Request) -> tuple[Response, str, str]:
        name = request.path_params["name"]
        body = await _read_body(request, 64 * 1024)
        wanted = LoadRequest.from_parameters(_request_parameters(body, "load"))
        uri = wanted.uri
        if uri is None:
            uri = state.source_to_reload(name)
        else:
            state.check_load_uri(uri)
        state.check_can_load(name, wanted.make_default)
        try:
            active = await run_in_threadpool(state.load, uri, name, make_default=wanted.make_default)
        except TabpipeError as exc:
            # OIP repository extension: a failed load answers 400 with the reason.
            raise RequestError(400, f"loading {name!r} from {uri} failed: {exc}") from None
        return _json({"name": active.name, "version": active.version}), active.name, active.version

    async def repository_unload(request: Request) -> tuple[Response, str, str]:
        name = request.path_params["name"]
        body = await _read_body(request, 64 * 1024)
        only = unload_version(_request_parameters(body, "unload"))
        version = await run_in_threadpool(state.unload, name, only)
        answer = {"name": name, "unloaded": True} | ({"version": only} if only else {})
        return _json(answer), name, version

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if config.inference_log is not None:
            from tabpipe.serving.inference_log import InferenceLog

            state.inference_log = InferenceLog(config.inference_log, registry=metrics.registry)
            state.inference_log.start()
        if load_on_startup and config.model_uris:
            state.mark_startup_loading()
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
            state.stopping.set()
            if grpc_server is not None:
                grpc_server.stop(grace=2).wait(5)
            if state.inference_log is not None:
                # Whatever is queued is written before the process ends.
                await run_in_threadpool(state.inference_log.close)

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
    header = _dumps(payload)
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


async def _read_body(
    request: Request,
    limit: int,
    reservation: Reservation | None = None,
    timeout: float = DEFAULT_BODY_READ_SECONDS,
) -> bytes:
    """The request body, refusing more than ``limit`` bytes by header and by actual size.

    A too-large body is answered 413 with ``Connection: close`` after the rest of it
    is read and discarded (:func:`_drain`), so the client reads the status instead of
    a connection reset. With ``Expect: 100-continue`` the 413 goes before the body. An
    infer request's bytes count against the server's in-flight bound as they arrive
    (``reservation``; 503 past it), never by what a header promises, and a body that
    does not arrive within ``timeout`` seconds is answered 408: a client that
    declares a large body and sends nothing holds nothing.
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
    try:
        async with asyncio.timeout(timeout):
            async for chunk in stream:
                read += len(chunk)
                if read > limit:
                    await _drain(stream, DRAIN_MAX_BYTES)
                    raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
                if reservation is not None:
                    reservation.grow(len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)


def _json_object(body: bytes, what: str) -> dict[str, Any] | None:
    """A small repository request body as a JSON object; None when it is empty."""
    if not body.strip():
        return None
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, f"{what} request body is not valid JSON") from None
    if not isinstance(request, dict):
        raise RequestError(400, f"{what} request body must be a JSON object")
    return request


def _index_ready_only(body: bytes) -> bool:
    """The ``ready`` flag of a repository index request (False without a body)."""
    request = _json_object(body, "index") or {}
    ready = request.get("ready", False)
    if not isinstance(ready, bool):
        raise RequestError(400, "ready: must be a boolean")
    return ready


def _request_parameters(body: bytes, what: str) -> dict[str, Any]:
    """The ``parameters`` object of a repository load or unload request ({} without a body)."""
    request = _json_object(body, what) or {}
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise RequestError(400, "parameters: must be an object")
    return parameters
