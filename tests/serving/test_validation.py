"""Unit tests of request decoding and validation against real bundles' specs."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_support import oip_request

from tabpipe.serving.validation import Limits, RequestDecoder, RequestError


def decoder(spec: Any, **limits: int) -> RequestDecoder:
    outputs = ["predict", "probabilities"] if spec.task.is_classification else ["predict"]
    return RequestDecoder(spec, Limits(**limits), outputs)


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def phishing(bundles: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    b = bundles["phishing-v1"]
    return b.spec, oip_request(b.spec, b.rows.head(4), "req-1")


@pytest.fixture(scope="module")
def housing(bundles: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    b = bundles["housing-v1"]
    rows = b.rows
    # Rows with missing values in nullable columns, so nulls are part of the valid request.
    picked = rows[rows.isna().any(axis=1)].head(3)
    return b.spec, oip_request(b.spec, pd.concat([rows.head(3), picked]), None)


def test_valid_requests_decode_in_spec_order(phishing: Any, housing: Any) -> None:
    spec, body = phishing
    body = copy.deepcopy(body)
    body["inputs"].reverse()  # order of inputs in the request does not matter
    decoded = decoder(spec).decode(encode(body))
    assert list(decoded.columns) == [i.name for i in spec.inputs]
    assert decoded.id == "req-1" and decoded.n_rows == 4
    assert all(v.dtype == np.float64 for v in decoded.columns.values())

    spec, body = housing
    decoded = decoder(spec).decode(encode(body))
    assert decoded.columns["neighbourhood"].dtype == object
    nulls = sum(
        int(np.isnan(v).sum()) if v.dtype.kind == "f" else sum(x is None for x in v)
        for v in decoded.columns.values()
    )
    assert nulls >= 3  # the three rows picked for having a missing value


def test_no_content_type_and_nested_shape_accepted(phishing: Any) -> None:
    spec, body = phishing
    body = copy.deepcopy(body)
    del body["parameters"]
    first = body["inputs"][0]
    first["shape"] = [4, 1]
    first["data"] = [[v] for v in first["data"]]
    body["inputs"][1]["datatype"] = "FP32"  # integers as whole floats
    body["inputs"][1]["data"] = [float(v) for v in body["inputs"][1]["data"]]
    assert decoder(spec).decode(encode(body)).n_rows == 4


def _mutate(body: dict[str, Any], name: str | None, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor.update(changes)
    return body


PHISHING_CASES = [
    ("malformed json", b"{not json", 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 400, "JSON object"),
    ("missing inputs", b'{"id": "x"}', 400, "inputs: missing"),
    ("inputs not a list", b'{"inputs": {"a": 1}}', 400, "inputs: must be a list"),
    ("deep nesting", b"[" * 100_000, 400, "nested too deeply"),
]


@pytest.mark.parametrize(
    ("case", "raw", "status", "text"), PHISHING_CASES, ids=[c[0] for c in PHISHING_CASES]
)
def test_structural_errors(phishing: Any, case: str, raw: bytes, status: int, text: str) -> None:
    spec, _ = phishing
    with pytest.raises(RequestError) as err:
        decoder(spec).decode(raw)
    assert err.value.status == status and text in err.value.message


def _cases(body: dict[str, Any]) -> list[tuple[str, dict[str, Any], int, str]]:
    extra = copy.deepcopy(body)
    extra["inputs"].append({"name": "surprise", "datatype": "FP64", "shape": [4], "data": [1, 2, 3, 4]})
    missing = copy.deepcopy(body)
    missing["inputs"] = [t for t in missing["inputs"] if t["name"] != "SFH"]
    duplicate = copy.deepcopy(body)
    duplicate["inputs"].append(copy.deepcopy(duplicate["inputs"][0]))
    bad_content_type = copy.deepcopy(body)
    bad_content_type["parameters"] = {"content_type": "np"}
    bad_id = copy.deepcopy(body)
    bad_id["id"] = 5
    return [
        ("extra column", extra, 422, "'surprise'"),
        ("missing column", missing, 422, "'SFH'"),
        ("duplicate column", duplicate, 400, "more than once"),
        ("content type", bad_content_type, 400, "parameters.content_type"),
        ("id type", bad_id, 400, "id:"),
        ("bytes for int", _mutate(body, "SFH", datatype="BYTES", data=["1"] * 4), 422, "'SFH'"),
        ("strings as numbers", _mutate(body, "SFH", data=["1", 0, 1, 1]), 422, "'SFH'"),
        ("bool as number", _mutate(body, "SFH", data=[True, 1, 1, 1]), 422, "'SFH'"),
        ("unknown datatype", _mutate(body, "SFH", datatype="FP128"), 400, "'SFH'"),
        ("fraction for int", _mutate(body, "SFH", datatype="FP64", data=[0.5, 1, 1, 1]), 422, "'SFH'"),
        ("not allowed", _mutate(body, "SFH", data=[7, 1, 1, 1]), 422, "allowed"),
        ("null not nullable", _mutate(body, "SFH", data=[None, 1, 1, 1]), 422, "nullable is false"),
        (
            "nan not nullable",
            _mutate(body, "SFH", datatype="FP64", data=[math.nan, 1, 1, 1]),
            422,
            "nullable",
        ),
        ("infinite", _mutate(body, "SFH", datatype="FP64", data=[math.inf, 1, 1, 1]), 422, "infinite"),
        ("huge int", _mutate(body, "SFH", data=[10**400, 1, 1, 1]), 422, "'SFH'"),
        ("int8 overflow", _mutate(body, "SFH", datatype="INT8", data=[1000, 1, 1, 1]), 422, "INT8"),
        ("shape vs data", _mutate(body, "SFH", shape=[5]), 400, "'SFH'"),
        ("ragged rows", _mutate(body, "SFH", shape=[3], data=[1, 1, 1]), 400, "'SFH'"),
        ("matrix shape", _mutate(body, "SFH", shape=[2, 2], data=[1, 1, 1, 1]), 400, "one input per column"),
        ("nested values", _mutate(body, "SFH", data=[[1], 1, 1, 1]), 400, "'SFH'"),
        ("negative shape", _mutate(body, "SFH", shape=[-4]), 400, "'SFH'].shape"),
        ("data not list", _mutate(body, "SFH", data="1,1,1,1"), 400, "'SFH'].data"),
    ]


def test_contract_and_shape_errors_name_the_field(phishing: Any) -> None:
    spec, body = phishing
    d = decoder(spec)
    for case, bad, status, text in _cases(body):
        with pytest.raises(RequestError) as err:
            d.decode(encode(bad) if case != "huge int" else json.dumps(bad).encode())
        assert (err.value.status, case) == (status, case), err.value.message
        assert text in err.value.message, (case, err.value.message)


def test_housing_strings_ranges_and_nullable(housing: Any) -> None:
    spec, body = housing
    d = decoder(spec)
    ok = _mutate(body, "rooms", data=[None, 2, 3, 4, None, 6])  # nullable integer column
    ok = _mutate(ok, "age_years", data=[math.nan, 1.5, 2, 3, 4, 5])  # NaN literal is a missing value
    assert d.decode(json.dumps(ok).encode()).n_rows == 6
    cases = [
        (_mutate(body, "neighbourhood", data=["moon"] + ["centre"] * 5), 422, "'neighbourhood'"),
        (_mutate(body, "neighbourhood", data=[1] * 6), 422, "needs strings"),
        (_mutate(body, "neighbourhood", datatype="FP64"), 422, "datatype FP64"),
        (_mutate(body, "area_sqm", data=[5.0] * 6), 422, "column 'area_sqm': 6 value(s) below min"),
        (_mutate(body, "area_sqm", data=[1e6] * 6), 422, "column 'area_sqm': 6 value(s) above max"),
        (_mutate(body, "area_sqm", data=[None] * 6), 422, "6 null value(s) but nullable is false"),
        (_mutate(body, "rooms", datatype="FP64", data=[2.5] * 6), 422, "6 non-integer value(s) (e.g. 2.5)"),
        # Not text at all (a lone surrogate): malformed, whichever rules the column has.
        (_mutate(body, "heating", data=["\ud800"] * 6), 400, "inputs['heating'].data[0]: not valid Unicode"),
    ]
    for bad, status, text in cases:
        with pytest.raises(RequestError) as err:
            d.decode(json.dumps(bad).encode())
        assert err.value.status == status and text in err.value.message, err.value.message


def test_limits(phishing: Any) -> None:
    spec, body = phishing
    raw = encode(body)
    with pytest.raises(RequestError) as err:
        decoder(spec, max_rows=3).decode(raw)
    assert err.value.status == 413 and "rows" in err.value.message
    with pytest.raises(RequestError) as err:
        decoder(spec, max_body_bytes=100).decode(raw)
    assert err.value.status == 413
    empty = copy.deepcopy(body)
    for tensor in empty["inputs"]:
        tensor.update(shape=[0], data=[])
    with pytest.raises(RequestError) as err:
        decoder(spec).decode(encode(empty))
    assert err.value.status == 400 and "no rows" in err.value.message


def test_requested_outputs(phishing: Any) -> None:
    spec, body = phishing
    body = copy.deepcopy(body)
    body["outputs"] = [{"name": "probabilities"}]
    assert decoder(spec).decode(encode(body)).outputs == ["probabilities"]
    body["outputs"] = [{"name": "nope"}]
    with pytest.raises(RequestError) as err:
        decoder(spec).decode(encode(body))
    assert err.value.status == 400 and "outputs[0].name" in err.value.message
