"""The binary tensor data extension over real HTTP: tritonclient with its defaults, and raw bodies."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest
from serving_support import Bundle, Server

PHISHING = "phishing-e2e"
HOUSING = "housing-price"


def _triton_inputs(httpclient: Any, bundle: Bundle, rows: Any) -> list[Any]:
    """One tritonclient input per column, with tritonclient's default (binary) encoding."""
    inputs = []
    for inp in bundle.spec.inputs:
        column = rows[inp.name]
        if inp.rules.dtype.value == "string":
            values = column.to_numpy(dtype=object)
            tensor = httpclient.InferInput(inp.name, [len(values)], "BYTES")
        elif column.isna().any() or inp.rules.dtype.value == "float":
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            tensor = httpclient.InferInput(inp.name, [len(values)], "FP64")
        else:
            values = column.to_numpy(dtype=np.int64)
            tensor = httpclient.InferInput(inp.name, [len(values)], "INT64")
        tensor.set_data_from_numpy(values)  # binary_data=True: tritonclient's default
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize(("key", "name"), [("phishing-v1", PHISHING), ("housing-v1", HOUSING)])
def test_tritonclient_http_with_its_defaults(
    key: str, name: str, bundles: dict[str, Bundle], request: pytest.FixtureRequest
) -> None:
    import tritonclient.http as httpclient

    server: Server = request.getfixturevalue(
        "phishing_server" if key.startswith("phishing") else "housing_server"
    )
    bundle = bundles[key]
    strings = [i.name for i in bundle.spec.inputs if i.rules.dtype.value == "string"]
    rows = bundle.rows.dropna(subset=strings).head(40)
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        # Before: HTTP 400 "the binary tensor extension is not supported".
        result = client.infer(name, _triton_inputs(httpclient, bundle, rows), request_id="bin-1")
        response = result.get_response()
        assert response["id"] == "bin-1" and response["model_version"] == "1"
        assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in response["outputs"])
        expected = bundle.model.predict(rows)
        np.testing.assert_array_equal(
            result.as_numpy("predict"), expected.astype(result.as_numpy("predict").dtype)
        )
        if bundle.spec.task.is_classification:
            np.testing.assert_allclose(result.as_numpy("probabilities"), bundle.model.predict_proba(rows))
            # A mix: probabilities in binary, predict in JSON, as each requested output asks.
            outputs = [
                httpclient.InferRequestedOutput("predict", binary_data=False),
                httpclient.InferRequestedOutput("probabilities"),
            ]
            mixed = client.infer(name, _triton_inputs(httpclient, bundle, rows), outputs=outputs)
            kinds = {o["name"]: "data" in o for o in mixed.get_response()["outputs"]}
            assert kinds == {"predict": True, "probabilities": False}
            np.testing.assert_array_equal(mixed.as_numpy("predict"), expected)
            np.testing.assert_allclose(mixed.as_numpy("probabilities"), bundle.model.predict_proba(rows))
    finally:
        client.close()


def _binary_body(
    tensors: list[tuple[str, str, list[int], bytes]], **request: Any
) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
                for n, d, s, b in tensors
            ],
            **request,
        }
    ).encode()
    body = header + b"".join(b for *_, b in tensors)
    return body, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def _housing_tensors(bundle: Bundle, n: int = 2) -> list[tuple[str, str, list[int], bytes]]:
    rows = bundle.rows.dropna().head(n)
    tensors = []
    for inp in bundle.spec.inputs:
        if inp.rules.dtype.value == "string":
            data = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in rows[inp.name])
            tensors.append((inp.name, "BYTES", [n], data))
        else:
            tensors.append(
                (inp.name, "FP64", [n], rows[inp.name].to_numpy(np.float64).astype("<f8").tobytes())
            )
    return tensors


def test_raw_binary_request_and_json_answer(housing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["housing-v1"]
    body, headers = _binary_body(_housing_tensors(bundle, 3))
    answer = httpx.post(f"{housing_server.url}/v2/models/{HOUSING}/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")  # no binary output asked
    np.testing.assert_allclose(
        answer.json()["outputs"][0]["data"], bundle.model.predict(bundle.rows.dropna().head(3))
    )


def test_malformed_binary_bodies_are_400(housing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["housing-v1"]
    url = f"{housing_server.url}/v2/models/{HOUSING}/infer"
    good = _housing_tensors(bundle)
    string_index = next(i for i, t in enumerate(good) if t[1] == "BYTES")
    number_index = next(i for i, t in enumerate(good) if t[1] == "FP64")

    def replaced(index: int, data: bytes, datatype: str | None = None) -> list[Any]:
        tensors = list(good)
        name, dt, shape, _ = tensors[index]
        tensors[index] = (name, datatype or dt, shape, data)
        return tensors

    cases: list[tuple[bytes, dict[str, str], str]] = []
    body, headers = _binary_body(good)
    cases.append((body, {**headers, "Inference-Header-Content-Length": "x"}, "not an integer"))
    cases.append((body, {**headers, "Inference-Header-Content-Length": str(len(body) + 1)}, "outside"))
    cases.append((body, {**headers, "Inference-Header-Content-Length": "-5"}, "outside"))
    cases.append((body + b"\0", headers, "add up to"))  # a stray byte after the tensors
    cases.append((*_binary_body(replaced(number_index, b"\0" * 15)), "take 16"))
    cases.append((*_binary_body(replaced(string_index, b"\3\0\0")), "cut short"))
    cases.append((*_binary_body(replaced(string_index, struct.pack("<I", 99) + b"ab")), "runs past"))
    cases.append(
        (
            *_binary_body(
                replaced(string_index, struct.pack("<I", 2) + b"\xff\xfe" * 1 + struct.pack("<I", 1) + b"a")
            ),
            "UTF-8",
        )
    )
    cases.append((*_binary_body(replaced(string_index, struct.pack("<I", 1) + b"a")), "shape says 2"))
    cases.append((*_binary_body(replaced(string_index, (struct.pack("<I", 1) + b"a") * 3)), "more than"))
    # binary_data_size without the header, and both data and binary_data_size.
    body, headers = _binary_body(good)
    cases.append((body[: int(headers["Inference-Header-Content-Length"])], {}, "needs the Inference-Header"))
    doc = json.loads(body[: int(headers["Inference-Header-Content-Length"])])
    doc["inputs"][0]["data"] = [1.0, 2.0]
    header = json.dumps(doc).encode()
    cases.append(
        (
            header + body[int(headers["Inference-Header-Content-Length"]) :],
            {"Inference-Header-Content-Length": str(len(header))},
            "both data",
        )
    )
    doc["inputs"][0].pop("data")
    doc["inputs"][0]["parameters"]["binary_data_size"] = -1
    header = json.dumps(doc).encode()
    cases.append((header, {"Inference-Header-Content-Length": str(len(header))}, "non-negative"))
    doc["parameters"] = {"binary_data_output": "yes"}
    doc["inputs"][0]["parameters"]["binary_data_size"] = 16
    header = json.dumps(doc).encode()
    cases.append(
        (
            header + body[int(headers["Inference-Header-Content-Length"]) :],
            {"Inference-Header-Content-Length": str(len(header))},
            "true or false",
        )
    )
    with httpx.Client(timeout=10) as client:
        for body, headers, expected in cases:
            answer = client.post(url, content=body, headers=headers)
            assert answer.status_code == 400, (expected, answer.text)
            assert expected in answer.json()["error"], (expected, answer.text)


def test_bool_bytes_must_be_0_or_1(phishing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["phishing-v1"]
    rows = bundle.rows.head(2)
    tensors = [
        (i.name, "INT64", [2], rows[i.name].to_numpy(np.int64).astype("<i8").tobytes())
        for i in bundle.spec.inputs
    ]
    body, headers = _binary_body(tensors)
    url = f"{phishing_server.url}/v2/models/{PHISHING}/infer"
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    tensors[0] = (tensors[0][0], "BOOL", [2], b"\x01\x02")
    body, headers = _binary_body(tensors)
    answer = httpx.post(url, content=body, headers=headers)
    assert answer.status_code == 400 and "0 or 1" in answer.json()["error"]
