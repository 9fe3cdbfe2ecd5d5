"""`infer-schema` drafts a contract a user can keep (the user-facing issue, defect by defect).

Each test drafts a contract from a small real frame and asserts on the drafted YAML or
contract, then on what that contract does: the validation report, a served answer
(the in-process decoder, or the Starlette app for the metrics) and a trained model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tabpipe.cli import main
from tabpipe.config import PipelineConfig, SourceFormat, parse_config
from tabpipe.contract import DataContract, dump_contract, parse_contract
from tabpipe.contract.frame import check_frame, messages, warning_messages
from tabpipe.contract.infer import draft_contract, infer_contract
from tabpipe.io import parse_table
from tabpipe.serving.validation import Limits, RequestDecoder, RequestError
from tabpipe.serving_spec import ServingInput, ServingSpec
from tabpipe.stages.validate import validate_frame

N = 200


def _config(contract: DataContract, target: str, **extra: Any) -> PipelineConfig:
    return parse_config(
        {
            "name": "keep",
            "task": "binary_classification",
            "target": target,
            "source": {"uri": "/tmp/keep.csv"},
            "contract": contract.model_dump(mode="json", exclude_defaults=True),
            "models": [{"estimator": "logistic_regression"}],
            "search": {"n_iter": 1, "cv_folds": 2},
            "evaluation": {"primary_metric": "f1"},
            "registry": {"model_name": "keep"},
            **extra,
        }
    )


def _decoder(contract: DataContract, names: list[str]) -> RequestDecoder:
    spec = ServingSpec(
        model_name="keep",
        task="binary_classification",
        target="y",
        inputs=[ServingInput(name=n, rules=contract.columns[n]) for n in names],
        sha256="0" * 64,
    )
    return RequestDecoder(spec, Limits(), ["predict"])


def _request(columns: dict[str, tuple[str, list[Any]]]) -> bytes:
    inputs = [{"name": n, "shape": [len(d)], "datatype": t, "data": d} for n, (t, d) in columns.items()]
    return json.dumps({"inputs": inputs}).encode()


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 85, N)
    age[0], age[1] = 18, 84  # the sample's extremes
    return pd.DataFrame({"age": age, "y": rng.choice(["a", "b"], N)})


# --------------------------------------------------------------------------- 1. soft bounds


def test_ranges_are_drafted_as_soft_bounds_with_a_margin_and_a_hard_min_zero() -> None:
    df = _frame()
    drafted = yaml.safe_load(dump_contract(infer_contract(df, "keep")))
    assert drafted["columns"]["age"] == {"dtype": "integer", "min": 0.0, "soft_min": 10.0, "soft_max": 95.0}


def test_a_plausible_row_past_the_samples_maximum_passes_validation_and_serving() -> None:
    df = _frame()
    contract = infer_contract(df, "keep")
    config = _config(contract, "y")
    newer = df.copy()
    newer.loc[2, "age"] = 85  # beyond the sample's 84: no longer rejected
    newer.loc[3, "age"] = 97  # beyond the soft range: accepted and flagged
    report = validate_frame(newer, config, None, "keep")
    assert report.violations == []
    assert "column 'age': 1 value(s) above soft_max 95 (accepted, flagged) (e.g. 97)" in report.warnings
    decoded = _decoder(contract, ["age"]).decode(_request({"age": ("INT64", [85, 97])}))
    assert [w.message for w in decoded.warnings] == [
        "column 'age': 1 value(s) above soft_max 95 (accepted, flagged) (e.g. 97)"
    ]
    with pytest.raises(RequestError) as caught:  # the hard min still rejects
        _decoder(contract, ["age"]).decode(_request({"age": ("INT64", [-1])}))
    assert caught.value.status == 422 and "below min 0" in caught.value.message


# --------------------------------------------------------------------------- 2. na_values


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_a_numeric_column_with_a_few_question_marks_is_numeric_with_na_values() -> None:
    df = _frame()
    ages = df["age"].astype(str).to_numpy(dtype=object)
    ages[[5, 6]] = "?"  # 1% of the rows
    raw = pd.DataFrame({"age": ages, "note": ["x" if i % 5 else "?" for i in range(N)], "y": df["y"]})
    data = _csv(raw)
    read_plain = parse_table(data, SourceFormat.CSV, "keep.csv")  # as infer-schema reads it
    contract = infer_contract(read_plain, "keep")
    assert contract.na_values == ["?"]
    assert contract.columns["age"].dtype.value == "integer" and contract.columns["age"].nullable
    # 20% "?" is text, not numbers with a missing-value token.
    assert contract.columns["note"].dtype.value == "string"
    # Reading with the contract's na_values turns the tokens into nulls, and the data passes.
    read = parse_table(data, SourceFormat.CSV, "keep.csv", na_values=contract.na_values)
    assert read["age"].isna().sum() == 2 and read["age"].dtype.kind == "f"
    assert messages(check_frame(read, contract)) == []
    assert parse_contract(yaml.safe_load(dump_contract(contract))) == contract


# --------------------------------------------------------------------------- 3. booleans


def test_yes_no_text_is_drafted_boolean_and_accepted_by_validation_and_serving() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "smoker": rng.choice(["yes", "no", "Yes", "NO"], N),
            "paid": rng.choice(["t", "f"], N),
            "y": rng.choice(["a", "b"], N),
        }
    )
    read = parse_table(_csv(df), SourceFormat.CSV, "keep.csv")
    contract = infer_contract(read, "keep")
    assert contract.columns["smoker"].dtype.value == "boolean"
    assert contract.columns["paid"].dtype.value == "boolean"
    assert check_frame(read, contract) == []
    decoded = _decoder(contract, ["smoker", "paid"]).decode(
        _request({"smoker": ("BYTES", ["Yes", "no", "Y"]), "paid": ("BOOL", [True, False, True])})
    )
    assert decoded.columns["smoker"].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(RequestError) as caught:
        _decoder(contract, ["smoker", "paid"]).decode(
            _request({"smoker": ("BYTES", ["perhaps"]), "paid": ("BOOL", [True])})
        )
    assert caught.value.status == 422 and "'perhaps'" in caught.value.message


# --------------------------------------------------------------------------- 4. normalisation


def test_case_and_space_variants_are_one_category_everywhere() -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {"color": rng.choice(["Red ", "red", "RED", "blue", " Blue"], N), "y": rng.choice(["a", "b"], N)}
    )
    contract = infer_contract(df, "keep")
    color = contract.columns["color"]
    assert [step.value for step in color.normalize or []] == ["strip", "casefold"]
    assert color.allowed == ["blue", "red"]
    assert check_frame(df, contract) == []
    decoded = _decoder(contract, ["color"]).decode(_request({"color": ("BYTES", [" RED", "Blue "])}))
    assert decoded.columns["color"].tolist() == ["red", "blue"]
    # Inside the model: one one-hot column per normalised value.
    from tabpipe.features import build_preprocessor, split_xy

    config = _config(contract, "y")
    x, _ = split_xy(df, config)
    fitted = build_preprocessor(config).fit(x)
    assert [n for n in fitted.get_feature_names_out() if n.startswith("categorical__")] == [
        "categorical__color_blue",
        "categorical__color_red",
    ]


# --------------------------------------------------------------------------- 5. flags


def test_constant_and_identifier_columns_are_flagged_and_summarised(tmp_path: Path, capsys: Any) -> None:
    df = _frame()
    df["source"] = "web"
    df["order_id"] = [f"o-{i}" for i in range(N)]
    draft = draft_contract(df, "keep")
    cols = draft.contract.columns
    assert "constant" in (cols["source"].description or "") and "features.drop" in (
        cols["source"].description or ""
    )
    assert cols["source"].allowed is None
    assert cols["order_id"].unique and "not used as a feature" in (cols["order_id"].description or "")
    path = tmp_path / "keep.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "contract.yaml"
    assert main(["infer-schema", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "source: constant; consider adding it to features.drop" in printed
    assert "order_id: identifier-like" in printed
    text = out.read_text()
    assert "# - source: constant" in text
    assert parse_contract(yaml.safe_load(text)).columns["source"].description == cols["source"].description


# --------------------------------------------------------------------------- 6. date parts


def _listings(n: int = 240, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, n), unit="h")
    hour = stamps.hour.to_numpy()
    # Listings posted in the afternoon or evening sell: the label depends on the hour only.
    y = np.where(hour >= 12, "sold", "open")
    return pd.DataFrame(
        {
            "listed_on": stamps.strftime("%Y-%m-%d %H:%M"),
            "area": rng.uniform(20, 200, n).round(1),
            "y": y,
        }
    )


def test_a_model_trained_with_date_parts_serves_datetime_strings(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from tabpipe.features import feature_columns
    from tabpipe.modelio import save_model
    from tabpipe.onnx.export import convert_bundle
    from tabpipe.serving.app import create_app
    from tabpipe.serving.state import ServerConfig
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.stages.train import train

    df = _listings()
    contract = infer_contract(df, "keep")
    assert contract.columns["listed_on"].dtype.value == "datetime"
    assert contract.columns["area"].soft_max is not None
    config = _config(
        contract,
        "y",
        features={"date_parts": [{"column": "listed_on", "parts": ["year", "month", "dayofweek", "hour"]}]},
    )
    columns = feature_columns(config)
    assert columns.raw == ["area", "listed_on"]
    assert columns.date_parts == [
        "listed_on_year",
        "listed_on_month",
        "listed_on_dayofweek",
        "listed_on_hour",
    ]
    result = train(config, df.iloc[:180], df.iloc[180:])
    model = result.best.model
    held_out = _listings(60, seed=4)
    accuracy = float((model.predict(held_out[columns.raw]) == held_out["y"]).mean())
    assert accuracy > 0.7  # the hour, only reachable through the date parts, is learned

    spec = build_serving_spec(config, list(model.classes_), "0" * 64)
    onnx = convert_bundle(model, spec)
    assert onnx.onnx_bytes is None and onnx.reason is not None and "DateParts" in onnx.reason

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    sha = save_model(model, bundle / "model.skops")
    spec = build_serving_spec(config, list(model.classes_), sha).model_copy(update={"version": "1"})
    (bundle / "bundle.json").write_text(spec.model_dump_json(indent=2))
    with TestClient(create_app(ServerConfig(model_uris=[str(bundle)]))) as client:
        deadline = time.monotonic() + 60  # the model loads in a thread after startup
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the bundle did not load"
            time.sleep(0.05)
        body = {
            "inputs": [
                {"name": "area", "shape": [2], "datatype": "FP64", "data": [50.0, 900.0]},
                {
                    "name": "listed_on",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": ["2025-03-04 10:30", "2025-03-04 22:00"],
                },
            ]
        }
        answer = client.post("/v2/models/keep/infer", json=body)
        assert answer.status_code == 200, answer.text
        predicted = next(o for o in answer.json()["outputs"] if o["name"] == "predict")["data"]
        assert predicted == ["open", "sold"]
        bad = dict(body)
        bad["inputs"] = [body["inputs"][0], {**body["inputs"][1], "data": ["soon", "2025-03-04"]}]
        refused = client.post("/v2/models/keep/infer", json=bad)
        assert refused.status_code == 422 and "do not parse as dates" in refused.text
        exposition = client.get("/metrics").text
    # area 900 is past the drafted soft_max: answered, and counted once.
    hits = [
        line
        for line in exposition.splitlines()
        if line.startswith("tabpipe_serving_soft_rule_hits_total{") and 'column="area"' in line
    ]
    assert len(hits) == 1 and 'rule="soft_max"' in hits[0] and hits[0].endswith(" 1.0")


def test_date_parts_must_name_a_datetime_column() -> None:
    from tabpipe.errors import ConfigError

    contract = infer_contract(_listings(), "keep")
    with pytest.raises(
        ConfigError, match=r"features\.date_parts\.0\.column: 'area' is float, not a datetime"
    ):
        _config(contract, "y", features={"date_parts": [{"column": "area", "parts": ["year"]}]})


def test_validation_reports_soft_warnings_not_violations_for_the_whole_frame() -> None:
    contract = parse_contract(
        {"name": "k", "columns": {"age": {"dtype": "integer", "min": 0, "soft_max": 90}}}
    )
    found = check_frame(pd.DataFrame({"age": [30, 91, 95]}), contract)
    assert messages(found) == []
    assert warning_messages(found) == [
        "column 'age': 2 value(s) above soft_max 90 (accepted, flagged) (e.g. 91, 95)"
    ]
