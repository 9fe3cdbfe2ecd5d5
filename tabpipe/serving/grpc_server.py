"""The Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService`` beside the REST server.

Runs in the same process as the REST app and shares its :class:`~tabpipe.serving.app.ServingState`:
the same model snapshot, decoder (every contract check), predictor, metrics and
admin token. Inputs may come typed (``contents``) or raw (``raw_input_contents``,
``tritonclient.grpc``'s default, little-endian with length-prefixed BYTES); raw
inputs get raw outputs (``raw_output_contents``), typed inputs typed outputs.

The repository RPCs (index, load, unload) need ``authorization: Bearer <token>``
metadata, as the REST endpoints need the header; inference too when the operator
requires it. Errors map to gRPC status codes: 400/422 INVALID_ARGUMENT, 401
UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED,
503 UNAVAILABLE; anything unexpected is INTERNAL with no details.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from tabpipe import __version__
from tabpipe.errors import TabpipeError
from tabpipe.serving.auth import AuthError
from tabpipe.serving.binary import encode_tensor
from tabpipe.serving.oip import grpc_predict_v2_pb2 as pb
from tabpipe.serving.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tabpipe.serving.request_error import Busy, RequestError
from tabpipe.serving.state import INLINE_MAX_BODY_BYTES, UNKNOWN, LoadRequest, predict, unload_version

if TYPE_CHECKING:
    from tabpipe.serving.state import ActiveModel, ServingState

log = logging.getLogger(__name__)

#: Worker threads answering RPCs (the model runs in them; 2 cores here).
DEFAULT_WORKERS = 4

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}

# Which typed contents field holds each datatype's values.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class _Abort(Exception):
    """A refused RPC: the HTTP-equivalent status (for the metrics) and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parameter(value: Any) -> Any:
    """The Python value of an InferParameter or ModelRepositoryParameter (None when unset)."""
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def _parameters(parameters: Any) -> dict[str, Any]:
    return {key: _parameter(value) for key, value in parameters.items()}


def _typed_values(where: str, tensor: Any) -> list[Any]:
    """The values of an input given in ``contents``.

    Raises:
        RequestError: the datatype has no contents field (FP16), or BYTES are not UTF-8.
    """
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise RequestError(400, f"{where}.contents: datatype {tensor.datatype!r} must be sent raw")
    filled = [f.name for f, _ in tensor.contents.ListFields()]
    if any(name != field for name in filled):
        raise RequestError(400, f"{where}.contents: datatype {tensor.datatype} goes in {field}, got {filled}")
    values = list(getattr(tensor.contents, field))
    if field == "bytes_contents":
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise RequestError(400, f"{where}.contents.bytes_contents: not valid UTF-8") from None
    return values


def request_to_dict(request: Any) -> tuple[dict[str, Any], memoryview | None]:
    """The JSON-shaped request the shared decoder validates, and the raw input bytes.

    Raw inputs become ``binary_data_size`` parameters over the concatenated
    ``raw_input_contents``, so the REST binary extension's checks apply unchanged.

    Raises:
        RequestError: raw and typed inputs are mixed, or their counts disagree.
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise RequestError(
            400, f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} input(s); one each"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{tensor.name!r}]"
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        parameters = _parameters(tensor.parameters)
        if raw:
            if tensor.HasField("contents"):
                raise RequestError(400, f"{where}: contents and raw_input_contents both given")
            parameters["binary_data_size"] = len(raw[i])
        else:
            entry["data"] = _typed_values(where, tensor)
            parameters.pop("binary_data_size", None)  # typed contents: no binary section to point into
        entry["parameters"] = parameters
        inputs.append(entry)
    document: dict[str, Any] = {"inputs": inputs, "parameters": _parameters(request.parameters)}
    document["parameters"].pop("binary_data_output", None)  # the gRPC answer chooses its own encoding
    if request.id:
        document["id"] = request.id
    if request.outputs:
        document["outputs"] = [{"name": o.name} for o in request.outputs]
    return document, (memoryview(b"".join(raw)) if raw else None)


def _typed_contents(datatype: str, values: np.ndarray) -> Any:
    contents = pb.InferTensorContents()
    flat = values.ravel()
    if datatype == "BYTES":
        contents.bytes_contents.extend(str(v).encode("utf-8", "surrogatepass") for v in flat.tolist())
    elif datatype == "BOOL":
        contents.bool_contents.extend(bool(v) for v in flat.tolist())
    else:
        getattr(contents, _CONTENTS_FIELD[datatype]).extend(flat.tolist())
    return contents


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The gRPC servicer over the REST app's serving state."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.admin = state.config.admin

    # ---- plumbing: auth, metrics, error mapping ----

    def _authorise(self, context: grpc.ServicerContext, guard: str | None) -> None:
        if guard == "admin" or (guard == "inference" and self.admin.require_for_inference):
            metadata = dict(context.invocation_metadata())
            value = metadata.get("authorization")
            self.admin.check(value if isinstance(value, str) else None)

    def _call(
        self,
        endpoint: str,
        context: grpc.ServicerContext,
        guard: str | None,
        work: Callable[[], tuple[Any, str, str]],
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> Any:
        start = time.perf_counter()
        status, model, version = 200, UNKNOWN, ""
        try:
            self._authorise(context, guard)
            response, model, version = work()
            return response
        except (RequestError, AuthError, _Abort) as exc:
            status = exc.status
            model, version = self.state.labels(model_name, model_version)
            if isinstance(exc, Busy):
                context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            context.abort(_STATUS.get(status, grpc.StatusCode.INVALID_ARGUMENT), _shortened(exc.message))
        except Exception:
            status = 500
            log.exception("unexpected error in gRPC %s", endpoint)
            context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        finally:
            self.state.metrics.observe_request(
                model, version, f"grpc_{endpoint}", status, time.perf_counter() - start
            )

    def _resolve(self, name: str, version: str) -> ActiveModel:
        return self.state.resolve(name, version)

    # ---- health and metadata ----

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC names)
        """The server answers."""
        return self._call(
            "server_live", context, None, lambda: (pb.ServerLiveResponse(live=True), UNKNOWN, "")
        )

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """A model is loaded."""

        def work() -> tuple[Any, str, str]:
            return pb.ServerReadyResponse(ready=self.state.ready), UNKNOWN, ""

        return self._call("server_ready", context, None, work)

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The named model (and version) is loaded; false for any other name."""

        def work() -> tuple[Any, str, str]:
            ready = self.state.serves(request.name, request.version)
            return pb.ModelReadyResponse(ready=ready), *self.state.labels(request.name, request.version)

        return self._call("model_ready", context, "inference", work, request.name, request.version)

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Name, version and the extensions served."""
        response = pb.ServerMetadataResponse(
            name="tabpipe", version=__version__, extensions=["model_repository", "binary_tensor_data"]
        )
        return self._call("server_metadata", context, None, lambda: (response, UNKNOWN, ""))

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The model's inputs (one per contract column) and outputs."""

        def work() -> tuple[Any, str, str]:
            active = self._resolve(request.name, request.version)
            meta = json.loads(active.metadata)

            def tensors(items: list[dict[str, Any]]) -> list[Any]:
                return [
                    pb.ModelMetadataResponse.TensorMetadata(
                        name=t["name"], datatype=t["datatype"], shape=t["shape"]
                    )
                    for t in items
                ]

            response = pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=tensors(meta["inputs"]),
                outputs=tensors(meta["outputs"]),
            )
            return response, active.name, active.version

        return self._call("metadata", context, "inference", work, request.name, request.version)

    # ---- inference ----

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Validate against the contract (the REST decoder), predict, answer raw or typed as asked."""

        def work() -> tuple[Any, str, str]:
            active = self._resolve(request.model_name, request.model_version)
            with self.state.admission.admit() as reservation:
                size = request.ByteSize()
                reservation.grow(size)
                if size > INLINE_MAX_BODY_BYTES:
                    self.state.trimmer.note_large()
                document, binary = request_to_dict(request)
                decoded = active.decoder.decode_request(document, binary)
                outputs = predict(self.state, active, decoded)
            response = pb.ModelInferResponse(model_name=active.name, model_version=active.version)
            if decoded.id is not None:
                response.id = decoded.id
            for output in outputs:
                tensor = response.outputs.add(
                    name=output.name, datatype=output.datatype, shape=output.values.shape
                )
                if binary is not None:
                    response.raw_output_contents.append(encode_tensor(output.datatype, output.values))
                else:
                    tensor.contents.CopyFrom(_typed_contents(output.datatype, output.values))
            if active.classifier:
                response.parameters["classes"].string_param = json.dumps(active.loaded.spec.classes)
            return response, active.name, active.version

        return self._call("infer", context, "inference", work, request.model_name, request.model_version)

    # ---- repository extension (admin token) ----

    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Every model the server is meant to serve, its state and why."""

        def work() -> tuple[Any, str, str]:
            response = pb.RepositoryIndexResponse()
            for entry in self.state.index(ready_only=request.ready):
                response.models.add(
                    name=entry.name, version=entry.version, state=entry.state.value, reason=entry.reason
                )
            return response, UNKNOWN, ""

        return self._call("repository_index", context, "admin", work)

    def RepositoryModelLoad(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Load (or reload) ``model_name`` from ``parameters["uri"]`` beside the other models."""

        def work() -> tuple[Any, str, str]:
            state = self.state
            wanted = LoadRequest.from_parameters(_parameters(request.parameters))
            uri = wanted.uri
            if uri is None:
                uri = state.source_to_reload(request.model_name)
            else:
                state.check_load_uri(uri)
            state.check_can_load(request.model_name, wanted.make_default)
            try:
                active = state.load(uri, request.model_name, make_default=wanted.make_default)
            except TabpipeError as exc:
                raise RequestError(400, f"loading {request.model_name!r} from {uri} failed: {exc}") from None
            return pb.RepositoryModelLoadResponse(), active.name, active.version

        return self._call("repository_load", context, "admin", work, request.model_name)

    def RepositoryModelUnload(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """Stop serving ``model_name`` only."""

        def work() -> tuple[Any, str, str]:
            only = unload_version(_parameters(request.parameters))
            version = self.state.unload(request.model_name, only)
            return pb.RepositoryModelUnloadResponse(), request.model_name, version

        return self._call("repository_unload", context, "admin", work, request.model_name)


SERVICE_NAME = "inference.GRPCInferenceService"
#: Each RPC's endpoint label in the metrics (as :meth:`InferenceService._call` names them).
_ENDPOINTS = {
    "ServerLive": "server_live",
    "ServerReady": "server_ready",
    "ModelReady": "model_ready",
    "ServerMetadata": "server_metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "infer",
    "RepositoryIndex": "repository_index",
    "RepositoryModelLoad": "repository_load",
    "RepositoryModelUnload": "repository_unload",
}
#: The longest error message sent: messages quote client-chosen names, and the grpc-message
#: trailer must stay under clients' 16 KB metadata limit even percent-encoded.
MAX_MESSAGE_CHARS = 1000


def _shortened(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def _method_handlers(servicer: InferenceService) -> dict[str, grpc.RpcMethodHandler]:
    """The service's handlers, each parsing its own request bytes.

    With the generated deserializers, bytes that are not a valid request message are
    answered INTERNAL by grpc-python before any code here runs; parsing in the handler
    answers them INVALID_ARGUMENT, naming the message, like any other bad request.
    """
    from google.protobuf.message import DecodeError

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        implementation = getattr(servicer, method.name)

        def parse_then_call(
            data: bytes,
            context: grpc.ServicerContext,
            request_type: Any = request_type,
            implementation: Callable[..., Any] = implementation,
            endpoint: str = _ENDPOINTS[method.name],
        ) -> Any:
            try:
                request = request_type.FromString(data)
            except DecodeError as exc:
                servicer.state.metrics.observe_request(UNKNOWN, "", f"grpc_{endpoint}", 400, 0.0)
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    _shortened(f"the request is not a valid inference.{request_type.__name__}: {exc}"),
                )
            return implementation(request, context)

        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            parse_then_call, response_serializer=response_type.SerializeToString
        )
    return handlers


def start_grpc_server(
    state: ServingState, host: str, port: int, workers: int = DEFAULT_WORKERS
) -> grpc.Server:
    """Start the gRPC endpoint on ``host:port`` (messages up to the REST body limit).

    Raises:
        TabpipeError: the port cannot be bound.
    """
    limit = state.config.limits.max_body_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 0),
        ],
    )
    handlers = _method_handlers(InferenceService(state))
    # As the generated code registers them: by name for any caller, and pre-registered for speed.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise TabpipeError(f"gRPC: cannot listen on {host}:{port}: {exc}") from None
    if not bound:
        raise TabpipeError(f"gRPC: cannot listen on {host}:{port}")
    server.start()
    log.info("gRPC Open Inference Protocol on %s:%d", host, bound)
    return server
