"""The plain-Python check path for small requests agrees with the vectorised one."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from serving_support import oip_request

from tabpipe.serving.validation import Limits, RequestDecoder, RequestError


@pytest.mark.parametrize("name", ["phishing-v1", "housing-v1"])
def test_small_and_large_requests_decode_alike(name: str, bundles: dict[str, Any]) -> None:
    bundle = bundles[name]
    decoder = RequestDecoder(bundle.spec, Limits(), ["predict"])
    rows = bundle.rows.head(40)
    together = decoder.decode(json.dumps(oip_request(bundle.spec, rows)).encode()).columns
    for i in (0, 17, 39):  # one row at a time takes the fast path
        alone = decoder.decode(json.dumps(oip_request(bundle.spec, rows.iloc[[i]])).encode()).columns
        for column, values in alone.items():
            expected = together[column][i : i + 1]
            if values.dtype == object:
                assert values.tolist() == expected.tolist()
            else:
                np.testing.assert_array_equal(values, expected)


def test_a_bad_single_row_still_gets_the_precise_message(bundles: dict[str, Any]) -> None:
    bundle = bundles["phishing-v1"]
    request = oip_request(bundle.spec, bundle.rows.head(1))
    column = request["inputs"][0]
    column["data"] = [7]
    with pytest.raises(RequestError) as excinfo:
        RequestDecoder(bundle.spec, Limits(), ["predict"]).decode(json.dumps(request).encode())
    assert excinfo.value.status == 422
    assert column["name"] in str(excinfo.value) and "not in allowed set" in str(excinfo.value)
