"""Fuzzing the gRPC endpoint of a real server with raw bytes, below the generated stubs.

Requests go out through ``channel.unary_unary(path)`` with no serializer, so the bytes on the
wire are exactly the ones drawn: arbitrary bytes, truncated and garbled protobufs, valid
requests with bits flipped, fields of the wrong wire type or with huge declared lengths, and
well-formed messages whose ``raw_input_contents`` disagree with their shapes and datatypes.
Every answer must be OK or a client error with a message, never UNKNOWN or INTERNAL (the
gRPC equivalents of a 5xx), and the server must go on answering valid requests.

Bytes that do not parse as the request message (:data:`UNDECODABLE`) used to get grpc-python's
own INTERNAL "Exception deserializing request!"; and a 20 KB name quoted whole in an error
overflowed the client's 16 KB metadata limit. Both now have tests of their own below.

Bounded like the other wire fuzzers (a fixed number of derandomised examples, the whole file
well under 30 s), so it runs in make test. tritonclient's messages (wire-compatible with
tabpipe's proto, see test_grpc.py) build the valid requests and decide what parses.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import Bundle, Server, fill_grpc_parameter

HOUSING = "housing-price"
PREFIX = "/inference.GRPCInferenceService/"
#: The request message of each RPC fuzzed here (tritonclient's service_pb2 names).
REQUEST_TYPES = {
    "ModelInfer": "ModelInferRequest",
    "ModelMetadata": "ModelMetadataRequest",
    "ModelReady": "ModelReadyRequest",
    "ServerReady": "ServerReadyRequest",
}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def raw_endpoint(housing_grpc_endpoint: tuple[Server, str]) -> tuple[Server, str]:
    return housing_grpc_endpoint


@pytest.fixture(scope="module")
def raw_server(raw_endpoint: tuple[Server, str]) -> Server:
    return raw_endpoint[0]


@pytest.fixture(scope="module")
def channel(raw_endpoint: tuple[Server, str]) -> Iterator[Any]:
    import grpc

    with grpc.insecure_channel(raw_endpoint[1]) as chan:
        grpc.channel_ready_future(chan).result(timeout=30)
        yield chan


def call(channel: Any, method: str, data: bytes) -> tuple[str, str, bytes | None]:
    """Send ``data`` as the request of ``method``; return the status name, its details, the answer."""
    import grpc

    rpc = channel.unary_unary(PREFIX + method)  # no (de)serializers: bytes in, bytes out
    try:
        return "OK", "", rpc(data, timeout=30)
    except grpc.RpcError as err:
        return err.code().name, err.details() or "", None


def parses(method: str, data: bytes) -> bool:
    """Whether ``data`` is a valid encoding of ``method``'s request message."""
    from google.protobuf.message import DecodeError
    from tritonclient.grpc import service_pb2

    try:
        getattr(service_pb2, REQUEST_TYPES[method]).FromString(data)
    except DecodeError:
        return False
    return True


def check(server: Server, channel: Any, method: str, data: bytes, codes: dict[str, int]) -> str:
    """Send one request and apply the invariants; return the status name."""
    from tritonclient.grpc import service_pb2

    code, details, answer = call(channel, method, data)
    codes[code] = codes.get(code, 0) + 1
    where = (method, data[:200], details[:300])
    assert server.proc.poll() is None, f"server exited: {where}\n{server.log()[-3000:]}"
    assert code not in ("UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"), where
    assert code != "INTERNAL", where
    if code != "OK":
        assert details.strip(), f"{code} without a message: {where}"
    elif method == "ModelInfer":
        assert answer is not None
        response = service_pb2.ModelInferResponse.FromString(answer)
        assert response.model_name == HOUSING and response.outputs, where
    return code


def encode(datatype: str, values: list[Any]) -> bytes:
    """Little-endian raw tensor bytes (BYTES: 4-byte length prefixes), as tritonclient sends them."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in map(str, values))
    return np.asarray(values, dtype=np.float64).astype("<f8").tobytes()


def valid_request(bundle: Bundle, n: int, raw: bool) -> Any:
    """A request the housing server answers OK: raw_input_contents or typed contents."""
    from tritonclient.grpc import service_pb2

    rows = bundle.rows.dropna().head(n)
    request = service_pb2.ModelInferRequest(model_name=HOUSING, id="raw-fuzz")
    request.parameters["content_type"].string_param = "pd"
    for inp in bundle.spec.inputs:
        values = rows[inp.name].tolist()
        datatype = "BYTES" if inp.rules.dtype.value == "string" else "FP64"
        tensor = request.inputs.add(name=inp.name, datatype=datatype, shape=[n])
        if raw:
            request.raw_input_contents.append(encode(datatype, values))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
        else:
            tensor.contents.fp64_contents.extend(values)
    return request


def assert_still_serving(server: Server, channel: Any, bundle: Bundle) -> None:
    """The server answers a valid request, raw and typed, after the fuzzing."""
    for raw in (True, False):
        data = valid_request(bundle, 2, raw).SerializeToString()
        assert check(server, channel, "ModelInfer", data, {}) == "OK"
    assert call(channel, "ServerReady", b"")[:2] == ("OK", "")


# ------------------------------------------------------------------ byte-level strategies


def varint(value: int) -> bytes:
    """Protobuf base-128 varint (values up to 2**64 - 1)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def stray_fields(draw: Any) -> bytes:
    """One field of any number and wire type (valid or not), its payload honest or not."""
    number = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 2**29 - 1]) | st.integers(0, 40))
    wire_type = draw(st.integers(0, 7))  # 6 and 7 do not exist
    tag = varint((number << 3) | wire_type)
    if wire_type == 0:
        payload = varint(draw(st.integers(0, 2**64 - 1)))
        if draw(st.integers(0, 5)) == 0:
            payload = b"\xff" * draw(st.integers(1, 11))  # an unterminated or 11-byte varint
    elif wire_type == 1:
        payload = draw(st.binary(min_size=0, max_size=8))
    elif wire_type == 5:
        payload = draw(st.binary(min_size=0, max_size=4))
    elif wire_type == 2:
        body = draw(st.binary(max_size=24))
        declared = draw(
            st.sampled_from([len(body)] * 4 + [len(body) + 1, 2**31 - 1, 2**32 + 3, 2**63, 2**64 - 1])
        )
        payload = varint(declared) + body
    else:  # groups (deprecated) and the two undefined wire types
        payload = draw(st.binary(max_size=6))
    return tag + payload


@st.composite
def mutated_requests(draw: Any, bundle: Bundle) -> bytes:
    """A valid ModelInfer request's bytes, then one to three byte-level mutations."""
    data = bytearray(valid_request(bundle, draw(st.integers(1, 3)), draw(st.booleans())).SerializeToString())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip"] * 4 + ["truncate", "insert", "delete", "stray", "stray"]))
        position = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            index = min(position, len(data) - 1)
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:  # a stray field at the end (parsers must take fields in any order), or spliced in
            field = draw(stray_fields())
            if draw(st.booleans()):
                data += field
            else:
                data[position:position] = field
    return bytes(data)


# ------------------------------------------------------------------ message-level strategy

DATATYPES = ["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT64", "UINT8", "BOOL", "BYTES", "", "fp64"]
SHAPES = st.sampled_from(
    [[0], [-1], [-(2**63)], [2**63 - 1], [2**32, 2**32], [1, 1], [2, 1], [1, 0], [], [10**12], [3, 2**62]]
)


def _fill_parameter(draw: Any, parameter: Any) -> None:
    fill_grpc_parameter(draw, parameter, st.text(max_size=8), allow_unset=True)


@st.composite
def mismatched_requests(draw: Any, bundle: Bundle) -> bytes:
    """Well-formed ModelInfer messages whose raw tensors disagree with what they declare."""
    n = draw(st.integers(1, 3))
    request = valid_request(bundle, n, raw=True)
    raw = request.raw_input_contents
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(request.inputs) - 1))
        tensor = request.inputs[i]
        if i >= len(raw):  # an earlier step dropped its raw entry
            raw.append(b"")
        kind = draw(st.integers(0, 9))
        if kind == 0:  # the datatype changes, the bytes do not
            tensor.datatype = draw(st.sampled_from(DATATYPES))
        elif kind == 1:  # the shape changes, the bytes do not
            del tensor.shape[:]
            tensor.shape.extend(draw(SHAPES | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)))
        elif kind == 2:  # the bytes change, the shape does not
            raw[i] = draw(st.binary(max_size=40))
        elif kind == 3:  # BYTES elements whose length prefixes lie
            length = draw(st.sampled_from([0, 1, 7, 2**31, 2**32 - 1]))
            raw[i] = struct.pack("<I", length) + draw(st.binary(max_size=6))
            tensor.datatype = "BYTES"
        elif kind == 4:  # one raw entry too many, or one too few
            if draw(st.booleans()):
                raw.append(draw(st.binary(max_size=8)))
            else:
                del raw[-1]
        elif kind == 5:  # raw bytes and typed contents both
            tensor.contents.fp64_contents.extend(draw(st.lists(st.floats(), max_size=3)))
        elif kind == 6:  # a tensor parameter that contradicts the raw bytes
            _fill_parameter(
                draw, tensor.parameters[draw(st.sampled_from(["binary_data_size", "content_type"]))]
            )
        elif kind == 7:  # request parameters of the wrong type, or empty
            _fill_parameter(
                draw, request.parameters[draw(st.sampled_from(["content_type", "binary_data_output"]))]
            )
        elif kind == 8:  # the same input twice, or a name the model does not have
            if draw(st.booleans()):
                request.inputs.add().CopyFrom(tensor)
                raw.append(raw[i])
            else:
                tensor.name = draw(st.sampled_from(["", "zzz", tensor.name.upper(), "\x00"]))
        else:  # outputs nobody has, with parameters
            output = request.outputs.add(name=draw(st.sampled_from(["predict", "x", ""])))
            _fill_parameter(draw, output.parameters[draw(st.sampled_from(["binary_data", "classification"]))])
    if draw(st.integers(0, 5)) == 0:
        request.model_version = draw(st.sampled_from(["1", "2", "", "\u00e9"]))
    return request.SerializeToString()


# ------------------------------------------------------------------ the fuzzers


def test_arbitrary_bytes_to_every_method(
    raw_server: Server, channel: Any, bundles: dict[str, Bundle]
) -> None:
    codes: dict[str, int] = {}

    @FUZZ
    @given(method=st.sampled_from(sorted(REQUEST_TYPES)), data=st.binary(max_size=300) | stray_fields())
    def fuzz(method: str, data: bytes) -> None:
        check(raw_server, channel, method, data, codes)

    fuzz()
    assert_still_serving(raw_server, channel, bundles["housing-v1"])
    assert "OK" in codes and len(codes) > 2, codes


def test_mutated_valid_model_infer(raw_server: Server, channel: Any, bundles: dict[str, Bundle]) -> None:
    codes: dict[str, int] = {}

    @FUZZ
    @given(data=mutated_requests(bundles["housing-v1"]))
    def fuzz(data: bytes) -> None:
        check(raw_server, channel, "ModelInfer", data, codes)

    fuzz()
    assert_still_serving(raw_server, channel, bundles["housing-v1"])
    assert "INVALID_ARGUMENT" in codes, codes


def test_raw_contents_disagreeing_with_the_declared_tensors(
    raw_server: Server, channel: Any, bundles: dict[str, Bundle]
) -> None:
    codes: dict[str, int] = {}

    @FUZZ
    @given(data=mismatched_requests(bundles["housing-v1"]))
    def fuzz(data: bytes) -> None:
        assert parses("ModelInfer", data)
        check(raw_server, channel, "ModelInfer", data, codes)

    fuzz()
    assert_still_serving(raw_server, channel, bundles["housing-v1"])
    assert "INTERNAL" not in codes and "INVALID_ARGUMENT" in codes, codes


def test_metadata_and_readiness_of_any_name(
    raw_server: Server, channel: Any, bundles: dict[str, Bundle]
) -> None:
    from tritonclient.grpc import service_pb2

    codes: dict[str, int] = {}
    # Names up to 8 KB: longer ones come back whole in the error message (test_long_names_... below).
    names = st.sampled_from([HOUSING, "", "x" * 8_000, "../" * 50, "\x00"]) | st.text(max_size=40)

    @FUZZ
    @given(method=st.sampled_from(["ModelMetadata", "ModelReady"]), name=names, version=names)
    def fuzz(method: str, name: str, version: str) -> None:
        message = getattr(service_pb2, REQUEST_TYPES[method])(name=name, version=version)
        code = check(raw_server, channel, method, message.SerializeToString(), codes)
        assert code != "INTERNAL"

    fuzz()
    assert_still_serving(raw_server, channel, bundles["housing-v1"])
    assert "OK" in codes and "NOT_FOUND" in codes, codes


# ------------------------------------------------------------------ once gaps, now fixed

#: Bytes that do not parse as each method's request, and what is wrong with them. Before the
#: server parsed requests itself, grpc-python answered each with StatusCode.INTERNAL
#: "Exception deserializing request!" and logged an ERROR traceback.
UNDECODABLE = [
    ("ModelInfer", b"\xff", "an unterminated tag varint"),
    ("ModelInfer", b"\x0a\x02\xff\xfe", "model_name (a proto3 string) is not UTF-8"),
    ("ModelInfer", b"\x3a\xff\xff\xff\xff\x0fxx", "raw_input_contents declares 4 GiB, holds 2 bytes"),
    ("ModelInfer", b"\x2a\x05\x0a\x01", "an inputs entry cut short"),
    ("ModelInfer", b"\x0f", "field 1 with the undefined wire type 7"),
    ("ModelMetadata", b"\x0a\x02\xc3\x28", "name is not UTF-8"),
    ("ModelReady", b"\x12\x05ab", "version declares 5 bytes, holds 2"),
    ("ServerReady", b"\xff\xff", "an unterminated tag varint"),
]


@pytest.mark.parametrize(("method", "data", "what"), UNDECODABLE, ids=[f"{m}-{w}" for m, _, w in UNDECODABLE])
def test_undecodable_request_is_a_client_error(
    raw_server: Server, channel: Any, bundles: dict[str, Bundle], method: str, data: bytes, what: str
) -> None:
    """Undecodable bytes are INVALID_ARGUMENT naming the message, as any other bad request."""
    assert not parses(method, data), what
    code, details, _ = call(channel, method, data)
    assert_still_serving(raw_server, channel, bundles["housing-v1"])
    assert code == "INVALID_ARGUMENT" and f"not a valid inference.{REQUEST_TYPES[method]}" in details, details


#: Client-chosen names over 16 KB, which error messages quote. Quoted whole, they used to give
#: RESOURCE_EXHAUSTED "Stream removed (received metadata size exceeds hard limit ...)" at the
#: client instead of NOT_FOUND: the server now shortens its messages.
LONG = "x" * 20_000


def _long_name_requests(bundle: Bundle) -> list[tuple[str, str, bytes]]:
    from tritonclient.grpc import service_pb2

    stray_input = valid_request(bundle, 1, raw=True)
    stray_input.inputs[0].name = LONG
    return [
        ("ModelMetadata", "model name", service_pb2.ModelMetadataRequest(name=LONG).SerializeToString()),
        ("ModelInfer", "model name", service_pb2.ModelInferRequest(model_name=LONG).SerializeToString()),
        ("ModelInfer", "input name", stray_input.SerializeToString()),
    ]


@pytest.mark.parametrize(
    "case", range(3), ids=["metadata-model-name", "infer-model-name", "infer-input-name"]
)
def test_long_names_get_a_readable_error(
    raw_server: Server, channel: Any, bundles: dict[str, Bundle], case: int
) -> None:
    """A 20 KB name is answered NOT_FOUND or INVALID_ARGUMENT with a shortened message."""
    method, what, data = _long_name_requests(bundles["housing-v1"])[case]
    code, details, _ = call(channel, method, data)
    assert_still_serving(raw_server, channel, bundles["housing-v1"])
    assert code in ("NOT_FOUND", "INVALID_ARGUMENT") and 0 < len(details) < 2_000, (code, details[:200])
