"""Fuzzing the two binary wire formats of a real server: REST binary tensor data, and gRPC ModelInfer.

Bounded (a fixed number of derandomised examples each, well under a minute together) so
they run in make test. Every answer must be a client error or a success, never a server
error: below 500 over REST, never INTERNAL or UNKNOWN over gRPC.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import Bundle, Server, fill_grpc_parameter

HOUSING = "housing-price"
EXAMPLES = 250
DATATYPES = [
    "BOOL",
    "INT8",
    "INT32",
    "INT64",
    "UINT8",
    "UINT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
    "",
    "FP128",
]
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

texts = st.text(max_size=12) | st.sampled_from(["centre", "riverside", "\x00", "名前", "None"])
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=6)
)


@pytest.fixture(scope="module")
def wire_server(housing_grpc_endpoint: tuple[Server, str]) -> tuple[Server, str]:
    return housing_grpc_endpoint


def _encode(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in map(str, values))
    return np.asarray(values, dtype=np.float64).astype("<f8").tobytes()


def _valid_tensors(bundle: Bundle, n: int) -> list[dict[str, Any]]:
    rows = bundle.rows.dropna().head(n)
    tensors = []
    for inp in bundle.spec.inputs:
        datatype = "BYTES" if inp.rules.dtype.value == "string" else "FP64"
        tensors.append(
            {"name": inp.name, "datatype": datatype, "shape": [n], "data": rows[inp.name].tolist()}
        )
    return tensors


@st.composite
def binary_requests(draw: Any, bundle: Bundle) -> tuple[bytes, dict[str, str]]:
    n = draw(st.integers(1, 3))
    tensors = _valid_tensors(bundle, n)
    header_inputs, blobs = [], []
    if draw(st.integers(0, 2)) == 0:  # a third stay valid, so the success path is exercised too
        for tensor in tensors:
            blob = _encode(tensor["datatype"], tensor["data"])
            header_inputs.append(
                {"name": tensor["name"], "datatype": tensor["datatype"], "shape": [n],
                 "parameters": {"binary_data_size": len(blob)}}
            )  # fmt: skip
            blobs.append(blob)
        tensors = []
    for tensor in tensors:
        datatype = draw(st.sampled_from([tensor["datatype"]] * 3 + DATATYPES))
        blob = _encode(tensor["datatype"], tensor["data"])
        choice = draw(st.integers(0, 6))
        if choice == 1:
            blob = draw(st.binary(max_size=40))
        elif choice == 2:
            blob = blob[: draw(st.integers(0, len(blob)))]
        elif choice == 3:
            blob = blob + draw(st.binary(min_size=1, max_size=8))
        size: Any = len(blob)
        if draw(st.integers(0, 5)) == 0:
            size = draw(json_scalars | st.integers(-5, 10**12))
        shape: Any = [n]
        if draw(st.integers(0, 5)) == 0:
            shape = draw(st.lists(st.integers(-3, 10**10), max_size=3) | json_scalars)
        entry: dict[str, Any] = {"name": tensor["name"], "datatype": datatype, "shape": shape}
        entry["parameters"] = {"binary_data_size": size}
        if draw(st.integers(0, 8)) == 0:
            entry["data"] = tensor["data"]
        if draw(st.integers(0, 8)) == 0:
            entry["parameters"] = draw(json_scalars)
        if draw(st.integers(0, 10)) > 0:
            header_inputs.append(entry)
            blobs.append(blob)
    document: dict[str, Any] = {"inputs": header_inputs}
    if draw(st.booleans()):
        document["parameters"] = {"binary_data_output": draw(json_scalars)}
    if draw(st.booleans()):
        document["outputs"] = [
            {
                "name": draw(st.sampled_from(["predict", "probabilities", "x"])),
                "parameters": {"binary_data": draw(json_scalars)},
            }
        ]
    header = json.dumps(document, allow_nan=True).encode()
    body = header + b"".join(blobs)
    length: Any = len(header)
    if draw(st.integers(0, 4)) == 0:
        length = draw(st.integers(-2, len(body) + 2) | st.sampled_from(["", "x", "1e3", "+12", "0x1"]))
    return body, {"Inference-Header-Content-Length": str(length)}


def test_fuzz_binary_tensor_data(wire_server: tuple[Server, str], bundles: dict[str, Bundle]) -> None:
    server, _ = wire_server
    url = f"{server.url}/v2/models/{HOUSING}/infer"
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:

        @FUZZ
        @given(request=binary_requests(bundles["housing-v1"]))
        def check(request: tuple[bytes, dict[str, str]]) -> None:
            body, headers = request
            answer = client.post(url, content=body, headers=headers)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (body[:300], headers, answer.text[:300])
            if answer.status_code >= 400:
                assert answer.json()["error"]

        check()
        assert client.get(f"{server.url}/v2/health/ready").status_code == 200
    assert 200 in statuses and any(400 <= s < 500 for s in statuses), statuses


def _contents(draw: Any, contents: Any) -> None:
    field = draw(
        st.sampled_from(
            ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
             "fp32_contents", "fp64_contents", "bytes_contents"]
        )
    )  # fmt: skip
    values = {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": st.integers(-(2**63), 2**63 - 1),
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=8) | texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    }[field]
    getattr(contents, field).extend(draw(st.lists(values, max_size=4)))


@st.composite
def grpc_requests(draw: Any, bundle: Bundle) -> Any:
    from tritonclient.grpc import service_pb2

    n = draw(st.integers(1, 3))
    request = service_pb2.ModelInferRequest(
        model_name=draw(st.sampled_from([HOUSING] * 6 + ["", "nope"])),
        model_version=draw(st.sampled_from(["", "", "1", "9"])),
        id=draw(texts),
    )
    if draw(st.booleans()):
        request.parameters["content_type"].string_param = draw(st.sampled_from(["pd", "np", ""]))
    if draw(st.integers(0, 3)) == 0:
        fill_grpc_parameter(draw, request.parameters[draw(texts)], texts)
    raw = draw(st.booleans())
    wild = draw(st.integers(0, 2)) > 0  # a third stay valid, so the success path is exercised too
    for tensor in _valid_tensors(bundle, n):
        if not wild:
            entry = request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=[n])
            if raw:
                request.raw_input_contents.append(_encode(tensor["datatype"], tensor["data"]))
            elif tensor["datatype"] == "BYTES":
                entry.contents.bytes_contents.extend(str(v).encode() for v in tensor["data"])
            else:
                entry.contents.fp64_contents.extend(tensor["data"])
            continue
        if draw(st.integers(0, 10)) == 0:
            continue
        datatype = draw(st.sampled_from([tensor["datatype"]] * 3 + DATATYPES))
        shape = [n] if draw(st.integers(0, 4)) else draw(st.lists(st.integers(-3, 2**40), max_size=3))
        entry = request.inputs.add(
            name=draw(st.sampled_from([tensor["name"]] * 8 + ["", "zzz"])), datatype=datatype, shape=shape
        )
        if raw:
            blob = _encode(tensor["datatype"], tensor["data"])
            if draw(st.integers(0, 3)) == 0:
                blob = draw(st.binary(max_size=40))
            request.raw_input_contents.append(blob)
        elif draw(st.integers(0, 3)) == 0:
            _contents(draw, entry.contents)
        elif tensor["datatype"] == "BYTES":
            entry.contents.bytes_contents.extend(str(v).encode() for v in tensor["data"])
        else:
            entry.contents.fp64_contents.extend(tensor["data"])
    if wild and raw and draw(st.integers(0, 6)) == 0:
        request.raw_input_contents.append(draw(st.binary(max_size=8)))  # one too many
    if draw(st.integers(0, 4)) == 0:
        request.outputs.add(name=draw(st.sampled_from(["predict", "probabilities", "x", ""])))
    return request


def test_fuzz_grpc_model_infer(wire_server: tuple[Server, str], bundles: dict[str, Bundle]) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    _, address = wire_server
    codes: dict[str, int] = {}
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        @FUZZ
        @given(request=grpc_requests(bundles["housing-v1"]))
        def check(request: Any) -> None:
            try:
                stub.ModelInfer(request, timeout=30)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
                assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                    str(request)[:500],
                    err.details(),
                )
            codes[code] = codes.get(code, 0) + 1

        check()
        assert stub.ServerReady(service_pb2.ServerReadyRequest()).ready
    assert "OK" in codes and "INVALID_ARGUMENT" in codes, codes
