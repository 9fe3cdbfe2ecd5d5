"""The real server process over real HTTP: OIP endpoints, predictions, metrics, tritonclient."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
from serving_support import Bundle, Server, oip_request

pytestmark = pytest.mark.slow

PHISHING = "phishing-e2e"
HOUSING = "housing-price"


def test_health_and_metadata(phishing_server: Server, bundles: dict[str, Bundle]) -> None:
    spec = bundles["phishing-v1"].spec
    with httpx.Client(base_url=phishing_server.url) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        for path in (f"/v2/models/{PHISHING}", f"/v2/models/{PHISHING}/versions/1"):
            meta = client.get(path).json()
            assert meta["name"] == PHISHING and meta["versions"] == ["1"]
            assert [i["name"] for i in meta["inputs"]] == [i.name for i in spec.inputs]
            assert {i["datatype"] for i in meta["inputs"]} == {"INT64"}
            assert meta["inputs"][0]["shape"] == [-1]
            assert meta["inputs"][0]["parameters"]["contract"]["allowed"] == [-1, 1]
            assert meta["outputs"] == [
                {"name": "predict", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
            ]
            assert meta["parameters"]["classes"] == [-1, 1]
        assert client.get(f"/v2/models/{PHISHING}/ready").json() == {"name": PHISHING, "ready": True}
        assert client.get(f"/v2/models/{PHISHING}/versions/1/ready").status_code == 200
        assert client.get(f"/v2/models/{PHISHING}/versions/9/ready").status_code == 404
        assert client.get("/v2/models/nope").status_code == 404
        index = client.get("/v2/repository/index", headers=phishing_server.admin).json()
        assert index == [
            {
                "name": PHISHING,
                "version": "1",
                "state": "READY",
                "reason": "",
                "default": True,
                "source": str(bundles["phishing-v1"].path),
            }
        ]


def test_infer_matches_in_process_model(phishing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["phishing-v1"]
    rows = bundle.rows.head(200)
    with httpx.Client(base_url=phishing_server.url) as client:
        for path in (f"/v2/models/{PHISHING}/infer", f"/v2/models/{PHISHING}/versions/1/infer"):
            response = client.post(path, json=oip_request(bundle.spec, rows, "req-42"))
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model_name"], body["model_version"], body["id"]) == (PHISHING, "1", "req-42")
            assert body["parameters"]["classes"] == [-1, 1]
            predict, proba = body["outputs"]
            assert predict["name"] == "predict" and predict["shape"] == [200]
            assert predict["data"] == bundle.model.predict(rows).tolist()
            assert proba["name"] == "probabilities" and proba["shape"] == [200, 2]
            expected = bundle.model.predict_proba(rows)
            np.testing.assert_allclose(np.reshape(proba["data"], (200, 2)), expected, rtol=1e-9, atol=1e-12)
        assert client.post("/v2/models/nope/infer", json={}).status_code == 404
        assert client.post(f"/v2/models/{PHISHING}/versions/7/infer", json={}).status_code == 404


def test_housing_regression_with_missing_values(housing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["housing-v1"]
    rows = bundle.rows.head(300)
    assert rows.isna().any().any()  # the request carries nulls in nullable columns
    with httpx.Client(base_url=housing_server.url) as client:
        response = client.post(f"/v2/models/{HOUSING}/infer", json=oip_request(bundle.spec, rows))
        assert response.status_code == 200, response.text
        body = response.json()
        assert "id" not in body and [o["name"] for o in body["outputs"]] == ["predict"]
        np.testing.assert_allclose(body["outputs"][0]["data"], bundle.model.predict(rows), rtol=1e-9)
        bad = oip_request(bundle.spec, rows.head(2))
        bad["inputs"][0]["data"] = [1.0, 2.0]  # area_sqm below its minimum of 20
        response = client.post(f"/v2/models/{HOUSING}/infer", json=bad)
        assert response.status_code == 422 and "area_sqm" in response.json()["error"]


def test_body_limits_over_http(phishing_server: Server, bundles: dict[str, Bundle]) -> None:
    spec = bundles["phishing-v1"].spec
    url = f"{phishing_server.url}/v2/models/{PHISHING}/infer"
    big = b" " * (10 * 1024 * 1024 + 1)
    assert httpx.post(url, content=big).status_code == 413

    def chunks() -> Any:  # no Content-Length: the actual read size is what counts
        for _ in range(11):
            yield b" " * (1024 * 1024)

    assert httpx.post(url, content=chunks()).status_code == 413
    too_many = oip_request(spec, bundles["phishing-v1"].rows.head(1))
    for tensor in too_many["inputs"]:
        tensor["shape"] = [10_001]
        tensor["data"] = tensor["data"] * 10_001
    response = httpx.post(url, json=too_many)
    assert response.status_code == 413 and "rows" in response.json()["error"]


def test_metrics_after_requests(housing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["housing-v1"]
    with httpx.Client(base_url=housing_server.url) as client:
        client.post(f"/v2/models/{HOUSING}/infer", json=oip_request(bundle.spec, bundle.rows.head(10)))
        client.post(f"/v2/models/{HOUSING}/infer", content=b"{")
        text = client.get("/metrics").text
    labels = f'model="{HOUSING}",status="200",version="1"'
    assert f'tabpipe_serving_requests_total{{endpoint="infer",{labels}}}' in text
    assert 'tabpipe_serving_request_errors_total{endpoint="infer"' in text and 'status="400"' in text
    assert "tabpipe_serving_request_duration_seconds_bucket" in text
    assert 'tabpipe_serving_prediction_value_count{model="housing-price",version="1"}' in text
    assert 'tabpipe_serving_feature_sum{feature="area_sqm"' in text
    assert "tabpipe_serving_feature_nulls_total{feature=" in text or bundle.rows.head(10).notna().all().all()
    assert 'tabpipe_serving_feature_category_total{feature="neighbourhood"' in text
    assert 'tabpipe_serving_model_loaded{model="housing-price",predictor="sklearn",version="1"} 1.0' in text


def test_classification_metrics(phishing_server: Server, bundles: dict[str, Bundle]) -> None:
    bundle = bundles["phishing-v1"]
    with httpx.Client(base_url=phishing_server.url) as client:
        client.post(f"/v2/models/{PHISHING}/infer", json=oip_request(bundle.spec, bundle.rows.head(20)))
        text = client.get("/metrics").text
    assert 'tabpipe_serving_prediction_class_total{label="1",model="phishing-e2e",version="1"}' in text
    # Integer codes with an allowed set are counted per value, labelled with the contract's values.
    assert 'tabpipe_serving_feature_category_total{feature="SFH",model="phishing-e2e",value="-1"' in text


def test_tritonclient(phishing_server: Server, housing_server: Server, bundles: dict[str, Bundle]) -> None:
    import tritonclient.http as httpclient

    for server, key, name in (
        (phishing_server, "phishing-v1", PHISHING),
        (housing_server, "housing-v1", HOUSING),
    ):
        bundle = bundles[key]
        strings = [i.name for i in bundle.spec.inputs if i.rules.dtype.value == "string"]
        # tritonclient turns None into the text "None" in BYTES tensors, so it cannot send a
        # missing string; those rows are covered by the JSON tests. NaN numbers do go through.
        rows = bundle.rows.dropna(subset=strings).head(25)
        client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert [i["name"] for i in meta["inputs"]] == [i.name for i in bundle.spec.inputs]
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
            tensor.set_data_from_numpy(values, binary_data=False)
            inputs.append(tensor)
        result = client.infer(name, inputs, request_id="triton-1", parameters={"content_type": "pd"})
        response = result.get_response()
        assert response["model_version"] == "1" and response["id"] == "triton-1"
        np.testing.assert_allclose(
            result.as_numpy("predict").astype(np.float64), bundle.model.predict(rows).astype(np.float64)
        )
        if bundle.spec.task.is_classification:
            np.testing.assert_allclose(result.as_numpy("probabilities"), bundle.model.predict_proba(rows))
        client.close()


def test_bad_json_shapes_are_4xx(phishing_server: Server) -> None:
    url = f"{phishing_server.url}/v2/models/{PHISHING}/infer"
    for body in (
        b"",
        b"null",
        b"[]",
        b'{"inputs": null}',
        b'{"inputs": [1]}',
        json.dumps({"inputs": [{}]}).encode(),
    ):
        response = httpx.post(url, content=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "error" in response.json()
