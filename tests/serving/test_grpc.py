"""The OIP gRPC endpoint of a real server process, driven by tritonclient.grpc unchanged.

tritonclient's own generated messages (Triton's grpc_service.proto) are used for the
hand-built requests: they are wire-compatible with tabpipe's grpc_predict_v2.proto, which
is what a client of the standard protocol relies on. (tabpipe's generated module and
tritonclient's cannot share one process: both define ``inference.*`` in protobuf's
default pool, so the descriptor comparison below reads tabpipe's from its file.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_support import TEST_TOKEN, Bundle, Server, free_port, triton_inputs

import tabpipe.serving

PHISHING = "phishing-e2e"
HOUSING = "housing-price"
ADMIN = {"authorization": f"Bearer {TEST_TOKEN}"}


@pytest.fixture(scope="module")
def grpc_servers(
    bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Phishing and housing servers with REST and gRPC ports."""
    logs = tmp_path_factory.mktemp("grpc-logs")
    servers: dict[str, Any] = {}
    try:
        for key in ("phishing-v1", "housing-v1"):
            port = free_port()
            server = Server(bundles[key].path, "--grpc-port", str(port), log_path=logs / f"{key}.log")
            servers[key] = (server, f"127.0.0.1:{port}")
        for server, _ in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server, _ in servers.values():
            server.stop()


def _inputs(grpcclient: Any, bundle: Bundle, rows: Any) -> list[Any]:
    return triton_inputs(grpcclient, bundle.spec, rows)


@pytest.mark.parametrize(("key", "name"), [("phishing-v1", PHISHING), ("housing-v1", HOUSING)])
def test_tritonclient_grpc_unchanged(
    key: str, name: str, grpc_servers: dict[str, Any], bundles: dict[str, Bundle]
) -> None:
    import tritonclient.grpc as grpcclient

    _, address = grpc_servers[key]
    bundle = bundles[key]
    strings = [i.name for i in bundle.spec.inputs if i.rules.dtype.value == "string"]
    rows = bundle.rows.dropna(subset=strings).head(30)
    client = grpcclient.InferenceServerClient(url=address)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and client.is_model_ready(name, "1")
        assert not client.is_model_ready(name, "9") and not client.is_model_ready("nope")
        server_meta = client.get_server_metadata()
        assert server_meta.name == "tabpipe" and "model_repository" in server_meta.extensions
        meta = client.get_model_metadata(name)
        assert meta.name == name and list(meta.versions) == ["1"]
        assert [i.name for i in meta.inputs] == [i.name for i in bundle.spec.inputs]
        assert meta.outputs[0].name == "predict" and list(meta.inputs[0].shape) == [-1]

        result = client.infer(name, _inputs(grpcclient, bundle, rows), request_id="g-1")
        response = result.get_response()
        assert response.id == "g-1" and response.model_version == "1" and response.raw_output_contents
        expected = bundle.model.predict(rows)
        np.testing.assert_allclose(result.as_numpy("predict").astype(np.float64), expected.astype(np.float64))
        if bundle.spec.task.is_classification:
            np.testing.assert_allclose(result.as_numpy("probabilities"), bundle.model.predict_proba(rows))
            only = client.infer(
                name,
                _inputs(grpcclient, bundle, rows),
                outputs=[grpcclient.InferRequestedOutput("probabilities")],
            )
            assert [o.name for o in only.get_response().outputs] == ["probabilities"]
    finally:
        client.close()


def test_typed_contents_and_errors(grpc_servers: dict[str, Any], bundles: dict[str, Bundle]) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    _, address = grpc_servers["phishing-v1"]
    bundle = bundles["phishing-v1"]
    rows = bundle.rows.head(5)
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=PHISHING, id="typed")
        request.parameters["content_type"].string_param = "pd"
        for inp in bundle.spec.inputs:
            tensor = request.inputs.add(name=inp.name, datatype="INT64", shape=[len(rows)])
            tensor.contents.int64_contents.extend(int(v) for v in rows[inp.name])
        response = stub.ModelInfer(request)
        outputs = {o.name: o for o in response.outputs}
        assert list(outputs["predict"].contents.int64_contents) == bundle.model.predict(rows).tolist()
        np.testing.assert_allclose(
            np.reshape(outputs["probabilities"].contents.fp64_contents, (5, 2)),
            bundle.model.predict_proba(rows),
        )

        def code(req: Any, method: Any = stub.ModelInfer) -> tuple[Any, str]:
            with pytest.raises(grpc.RpcError) as err:
                method(req)
            return err.value.code(), err.value.details()

        bad = service_pb2.ModelInferRequest()
        bad.CopyFrom(request)
        bad.inputs[0].contents.int64_contents[0] = 7  # outside the contract's allowed set
        status, details = code(bad)
        assert status == grpc.StatusCode.INVALID_ARGUMENT and bundle.spec.inputs[0].name in details
        bad.model_name = "nope"
        assert code(bad)[0] == grpc.StatusCode.NOT_FOUND
        bad.CopyFrom(request)
        bad.raw_input_contents.append(b"\0" * 8)  # one raw entry for many inputs
        assert code(bad)[0] == grpc.StatusCode.INVALID_ARGUMENT
        bad.CopyFrom(request)
        bad.inputs[0].contents.Clear()
        bad.inputs[0].contents.fp64_contents.extend([1.0] * 5)  # INT64 values in the FP64 field
        assert code(bad)[0] == grpc.StatusCode.INVALID_ARGUMENT
        bad.CopyFrom(request)
        bad.inputs[0].shape[:] = [10**12]
        assert code(bad)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_repository_rpcs_need_the_token(grpc_servers: dict[str, Any], bundles: dict[str, Bundle]) -> None:
    import grpc
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import InferenceServerException

    server, address = grpc_servers["housing-v1"]
    client = grpcclient.InferenceServerClient(url=address)
    try:
        for call in (
            lambda h: client.get_model_repository_index(headers=h),
            lambda h: client.unload_model(HOUSING, headers=h),
            lambda h: client.load_model(HOUSING, headers=h),
        ):
            for headers in (None, {"authorization": "Bearer wrong-token-of-some-length"}):
                with pytest.raises(InferenceServerException) as err:
                    call(headers)
                assert "UNAUTHENTICATED" in str(err.value.status())
        assert client.is_server_ready()  # nothing was unloaded

        index = client.get_model_repository_index(headers=ADMIN)
        assert [(m.name, m.version, m.state) for m in index.models] == [(HOUSING, "1", "READY")]
        client.unload_model(HOUSING, headers=ADMIN)
        assert not client.is_server_ready() and not client.is_model_ready(HOUSING)
        client.load_model(HOUSING, headers=ADMIN)  # no uri: reload what was served last
        assert client.is_model_ready(HOUSING)

        # A uri outside the bundle root is refused (tritonclient's own messages, wire-compatible).
        request = service_pb2.RepositoryModelLoadRequest(model_name=HOUSING)
        request.parameters["uri"].string_param = "/etc"
        with grpc.insecure_channel(address) as channel:
            stub = grpcclient.service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.RepositoryModelLoad(request, metadata=list(ADMIN.items()))
            assert (
                err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bundle root" in err.value.details()
            )
            request.parameters["uri"].string_param = str(bundles["housing-v1"].path)
            stub.RepositoryModelLoad(request, metadata=list(ADMIN.items()))
        assert client.is_model_ready(HOUSING, "1")
    finally:
        client.close()
    assert TEST_TOKEN not in server.log()


def test_proto_is_wire_compatible_with_the_standard_one() -> None:
    from google.protobuf import descriptor_pb2, descriptor_pool
    from tritonclient.grpc import service_pb2

    source = (Path(tabpipe.serving.__file__).parent / "oip" / "grpc_predict_v2_pb2.py").read_text()
    literal = re.search(r"AddSerializedFile\((b'.*?')\)", source, flags=re.DOTALL)
    assert literal is not None
    pool = descriptor_pool.DescriptorPool()
    ours = pool.Add(descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(literal.group(1))))
    theirs = service_pb2.DESCRIPTOR

    def fields(message: Any) -> dict[str, tuple[int, int]]:
        return {f.name: (f.number, f.type) for f in message.fields}

    def compare(mine: Any, standard: Any) -> int:
        checked = 0
        for name, (number, kind) in fields(mine).items():
            assert fields(standard)[name] == (number, kind), f"{mine.full_name}.{name}"
            checked += 1
        for nested in mine.nested_types:
            checked += compare(nested, standard.nested_types_by_name[nested.name])
        return checked

    assert (
        sum(compare(m, theirs.message_types_by_name[m.name]) for m in ours.message_types_by_name.values())
        > 60
    )
    service = ours.services_by_name["GRPCInferenceService"]
    standard = theirs.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        other = standard.methods_by_name[method.name]
        assert (method.input_type.name, method.output_type.name) == (
            other.input_type.name,
            other.output_type.name,
        )
    assert ours.package == "inference"
