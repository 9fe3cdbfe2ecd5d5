"""ONNX export for any column name, and the reason an export was refused, kept end to end.

Column names such as scikit-learn's own data sets use ("mean radius",
"od280/od315_of_diluted_wines") are not valid ONNX identifiers. The graph's
inputs get safe names, the model's metadata maps them back to the contract's
names, and every caller (parity, the predictor, batch scoring, the server)
keeps using the contract's names. When an export is refused, the real reason
travels into ``bundle.json`` and the served model's metadata.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tabpipe.config import PipelineConfig, TaskType, parse_config

REPO = Path(__file__).resolve().parents[2]
PARITY = 1e-6

# Spaces, parentheses, a slash, a leading digit, non-ASCII letters, and "a b" / "a-b"
# which any character-replacing scheme turns into the same identifier.
NUMERIC = ["mean radius", "od280/od315_of_diluted_wines", "area (mm2)", "2nd reading", "a b", "a-b"]
STRING = "größe"
ENGINEERED = "radius per reading"

BASE: dict[str, Any] = {
    "name": "awkward",
    "task": "binary_classification",
    "target": "y",
    "source": {"uri": "/tmp/awkward.csv"},
    "contract": {
        "name": "awkward",
        "columns": {
            "mean radius": {"dtype": "float", "nullable": True},
            "od280/od315_of_diluted_wines": {"dtype": "float"},
            "area (mm2)": {"dtype": "float", "min": 0},
            "2nd reading": {"dtype": "integer", "min": 0, "nullable": True},
            "a b": {"dtype": "float"},
            "a-b": {"dtype": "float"},
            "größe": {"dtype": "string", "nullable": True},
            "y": {"dtype": "string", "allowed": ["no", "yes"]},
        },
    },
    "features": {
        "engineered": [
            {"name": ENGINEERED, "op": "ratio", "inputs": ["mean radius", "2nd reading"]},
            {"name": "log area", "op": "log1p", "inputs": ["area (mm2)"]},
        ]
    },
    "search": {"n_iter": 1, "cv_folds": 2},
    "evaluation": {"primary_metric": "f1"},
    "registry": {"model_name": "awkward-names"},
}


def make_config(task: TaskType, estimator: str) -> PipelineConfig:
    data = copy.deepcopy(BASE)
    data["task"] = task.value
    data["models"] = [{"estimator": estimator}]
    if task is TaskType.REGRESSION:
        data["contract"]["columns"]["y"] = {"dtype": "float"}
        data["evaluation"] = {"primary_metric": "rmse"}
    return parse_config(data)


def make_frame(task: TaskType, n: int = 480) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    radius = rng.normal(14.0, 3.0, n)
    radius[rng.random(n) < 0.08] = np.nan
    od = rng.normal(2.6, 0.7, n)
    area = rng.gamma(2.0, 300.0, n)
    reading = pd.array(rng.integers(0, 6, n), dtype="Int64")  # 0 makes the ratio NaN
    reading[rng.random(n) < 0.08] = pd.NA
    ab, a_b = rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)
    size = rng.choice(["klein", "mittel", "groß"], n).astype(object)
    size[rng.random(n) < 0.08] = None
    signal = (
        np.nan_to_num(radius, nan=14.0) / 3
        - od
        + np.log1p(area) / 4
        + 1.5 * ab
        - a_b
        + (size == "groß") * 1.5
        + rng.normal(0.0, 0.5, n)
    )
    y: Any = np.where(signal > np.median(signal), "yes", "no") if task.is_classification else signal * 100
    return pd.DataFrame(
        {
            "mean radius": radius,
            "od280/od315_of_diluted_wines": od,
            "area (mm2)": area,
            "2nd reading": reading,
            "a b": ab,
            "a-b": a_b,
            "größe": size,
            "y": y,
        }
    )


def fit(task: TaskType, estimator: str) -> tuple[PipelineConfig, Any, Any, pd.DataFrame]:
    """Fit tabpipe's real preprocessing and search; return config, model, spec and held-out rows."""
    from tabpipe.serving_spec import build_serving_spec
    from tabpipe.stages.train import train
    from tabpipe.stages.transform import fit_preprocessor

    config = make_config(task, estimator)
    frame = make_frame(task)
    train_rows, validation_rows, test_rows = frame.iloc[:300], frame.iloc[300:380], frame.iloc[380:]
    preprocessor, _ = fit_preprocessor(config, train_rows)
    model = train(config, train_rows, validation_rows, preprocessor).best.model
    classes = list(model.classes_) if task.is_classification else []
    spec = build_serving_spec(config, classes, sha256="0" * 64)
    return config, model, spec, test_rows.reset_index(drop=True)


CASES = [(TaskType.BINARY, "random_forest"), (TaskType.REGRESSION, "hist_gradient_boosting")]


@pytest.fixture(scope="module")
def fitted() -> dict[TaskType, tuple[PipelineConfig, Any, Any, pd.DataFrame]]:
    return {task: fit(task, estimator) for task, estimator in CASES}


def features_of(spec: Any, rows: pd.DataFrame) -> pd.DataFrame:
    return rows[[c.name for c in spec.inputs]]


# --------------------------------------------------------------------------- the names


def test_graph_input_names_are_safe_unique_deterministic_and_in_order() -> None:
    from tabpipe.onnx.export import graph_input_names

    contract = ["mean radius", "a b", "a-b", "2nd reading", "größe", "od280/od315_of_diluted_wines", "", "if"]
    names = graph_input_names(contract)
    assert names == graph_input_names(list(contract))  # deterministic
    assert len(names) == len(contract) and len(set(names)) == len(names)
    for name in names:
        assert name.isidentifier() and name.isascii(), name
    assert names[0] == "c0_mean_radius" and names[5].startswith("c5_od280")
    # Order is the contract's: position i carries column i.
    assert [int(name[1:].split("_")[0]) for name in names] == list(range(len(contract)))


@pytest.mark.parametrize(("task", "estimator"), CASES, ids=[f"{t.value}-{e}" for t, e in CASES])
def test_awkward_names_export_with_parity_and_map_back_to_the_contract(
    fitted: dict, task: TaskType, estimator: str
) -> None:
    import onnx

    from tabpipe.onnx.export import convert_bundle, graph_input_names
    from tabpipe.onnx.parity import check_parity
    from tabpipe.onnx.predictor import META_INPUT_NAMES, OnnxPredictor, columns_from_frame

    _, model, spec, test = fitted[task]
    contract_names = [c.name for c in spec.inputs]
    assert contract_names[:6] == NUMERIC and STRING in contract_names
    result = convert_bundle(model, spec)
    assert result.reason is None, result.reason
    assert result.onnx_bytes is not None

    graph = onnx.load_from_string(result.onnx_bytes)
    graph_inputs = [i.name for i in graph.graph.input]
    assert graph_inputs == graph_input_names(contract_names)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta[META_INPUT_NAMES]) == dict(zip(graph_inputs, contract_names, strict=True))

    parity = check_parity(model, result.onnx_bytes, test, spec, tolerance=PARITY)
    assert parity.passed, parity.detail
    assert parity.n_rows == len(test)
    features = features_of(spec, test)
    pred, proba = OnnxPredictor(result.onnx_bytes, spec).predict(columns_from_frame(features, spec))
    if task.is_classification:
        assert parity.max_abs_proba_diff is not None and parity.max_abs_proba_diff <= PARITY
        assert pred.tolist() == model.predict(features).tolist()
        np.testing.assert_allclose(proba, model.predict_proba(features), rtol=0, atol=PARITY)
    else:
        assert parity.max_abs_pred_diff is not None
        np.testing.assert_allclose(pred, model.predict(features), rtol=PARITY, atol=PARITY)


def test_every_column_reaches_the_graph_under_its_own_name(fitted: dict) -> None:
    # Feeding the wrong column to a graph input would still run; changing one column at a
    # time and comparing with scikit-learn catches a swapped or mis-mapped name.
    from tabpipe.onnx.export import convert_bundle
    from tabpipe.onnx.predictor import OnnxPredictor, columns_from_frame

    _, model, spec, test = fitted[TaskType.REGRESSION]
    predictor = OnnxPredictor(convert_bundle(model, spec).onnx_bytes, spec)
    base = features_of(spec, test).head(40).copy()
    moved = []
    for name in NUMERIC + [STRING]:
        rows = base.copy()
        if name == STRING:
            rows[name] = rows[name].map({"klein": "groß", "mittel": "groß", "groß": "klein", None: "klein"})
        elif name == "2nd reading":
            rows[name] = (rows[name].fillna(0) + 3).astype("Int64")
        else:
            rows[name] = rows[name] * -2.0 + 1.0
        pred, _ = predictor.predict(columns_from_frame(rows, spec))
        expected = model.predict(rows)
        np.testing.assert_allclose(pred, expected, rtol=PARITY, atol=PARITY, err_msg=name)
        if not np.allclose(expected, model.predict(base)):
            moved.append(name)
    # The check means something only for columns the model actually uses.
    assert len(moved) >= 5, moved


# --------------------------------------------------------------------------- bundle, batch, server


def _serving_support() -> Any:
    """tests/serving/serving_support.py: the real server process helper the serving tests use."""
    if "serving_support" in sys.modules:
        return sys.modules["serving_support"]
    spec = importlib.util.spec_from_file_location(
        "serving_support", REPO / "tests/serving/serving_support.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_support"] = module
    spec.loader.exec_module(module)
    return module


def write_bundle(tmp_path: Path, model: Any, spec: Any, onnx_bytes: bytes | None) -> tuple[Path, Any]:
    """What train then deploy do: save the model, record the export or its reason, assemble."""
    from tabpipe.bundle import assemble_bundle
    from tabpipe.io import sha256_bytes
    from tabpipe.modelio import save_model

    sha = save_model(model, tmp_path / "model.skops")
    spec = spec.model_copy(update={"sha256": sha, "version": "1"})
    onnx_path = None
    if onnx_bytes is not None:
        onnx_path = tmp_path / "model.onnx"
        onnx_path.write_bytes(onnx_bytes)
        spec = spec.model_copy(update={"onnx_sha256": sha256_bytes(onnx_bytes)})
    bundle = tmp_path / "bundle"
    return bundle, assemble_bundle(bundle, spec, tmp_path / "model.skops", onnx_path)


def infer(server: Any, spec: Any, rows: pd.DataFrame) -> dict[str, Any]:
    body = _serving_support().oip_request(spec, rows)
    answer = httpx.post(f"{server.url}/v2/models/{spec.model_name}/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return {o["name"]: o["data"] for o in answer.json()["outputs"]}


def test_served_by_onnx_under_the_contract_names(fitted: dict, tmp_path: Path) -> None:
    from tabpipe.onnx.export import convert_bundle
    from tabpipe.serving.batch import score_file

    _, model, spec, test = fitted[TaskType.BINARY]
    bundle, written = write_bundle(tmp_path, model, spec, convert_bundle(model, spec).onnx_bytes)
    on_disk = json.loads((bundle / "bundle.json").read_text())
    assert on_disk["onnx_sha256"] == written.onnx_sha256 and on_disk["onnx_reason"] is None
    features = features_of(spec, test)

    # Batch scoring reads columns by their contract names.
    source = tmp_path / "rows.parquet"
    features.to_parquet(source)
    summary = score_file(str(bundle), source, tmp_path / "scored.parquet", progress=False)
    assert summary.predictor == "onnx"
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["prediction"].tolist() == model.predict(features).tolist()

    server = _serving_support().Server(bundle, log_path=tmp_path / "server.log")
    try:
        server.wait_ready()
        meta = httpx.get(f"{server.url}/v2/models/{spec.model_name}", timeout=10).json()
        assert meta["platform"] == "tabpipe-onnx"
        assert [i["name"] for i in meta["inputs"]] == [c.name for c in spec.inputs]
        assert "onnx_reason" not in meta["parameters"]
        outputs = infer(server, spec, features)
        assert outputs["predict"] == model.predict(features).tolist()
        np.testing.assert_allclose(
            np.asarray(outputs["probabilities"]).reshape(len(features), -1),
            model.predict_proba(features),
            rtol=0,
            atol=PARITY,
        )
    finally:
        server.stop()


def test_a_refused_export_carries_its_reason_into_the_bundle_and_the_served_metadata(
    fitted: dict, tmp_path: Path
) -> None:
    from sklearn.base import clone
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.pipeline import Pipeline

    from tabpipe.onnx.export import convert_bundle

    config, fitted_model, spec, test = fitted[TaskType.BINARY]
    frame = make_frame(TaskType.BINARY)
    model = Pipeline(
        [
            ("preprocess", clone(fitted_model[0])),
            ("model", ExtraTreesClassifier(n_estimators=5, random_state=0)),
        ]
    )
    model.fit(features_of(spec, frame), frame["y"])
    result = convert_bundle(model, spec)
    assert result.onnx_bytes is None
    reason = result.reason
    assert reason == (
        "estimator ExtraTreesClassifier is not in tabpipe's estimator registry (tabpipe.estimators), "
        "so it has no verified ONNX conversion"
    )
    # What train records: the reason, never the checksum of an export that does not exist.
    spec = spec.model_copy(update={"onnx_reason": reason})
    bundle, written = write_bundle(tmp_path, model, spec, None)
    on_disk = json.loads((bundle / "bundle.json").read_text())
    assert on_disk["onnx_reason"] == reason and on_disk["onnx_sha256"] is None
    assert not (bundle / "model.onnx").exists()

    server = _serving_support().Server(bundle, log_path=tmp_path / "server.log")
    try:
        server.wait_ready()
        meta = httpx.get(f"{server.url}/v2/models/{spec.model_name}", timeout=10).json()
        assert meta["platform"] == "tabpipe-sklearn"
        assert meta["parameters"]["onnx_reason"] == reason
        features = features_of(spec, test)
        assert infer(server, spec, features)["predict"] == model.predict(features).tolist()
    finally:
        server.stop()


# --------------------------------------------------------------------------- the spec's invariant


def test_the_spec_records_an_export_or_a_real_reason_never_both_never_none(fitted: dict) -> None:
    from pydantic import ValidationError

    from tabpipe.serving_spec import ServingSpec

    _, _, spec, _ = fitted[TaskType.BINARY]
    data = spec.model_dump(mode="json")
    with_reason = ServingSpec.model_validate({**data, "onnx_sha256": None, "onnx_reason": "refused: X"})
    assert with_reason.onnx_reason == "refused: X"
    for bad in ("None", "none", " ", ""):
        with pytest.raises(ValidationError, match="onnx_reason"):
            ServingSpec.model_validate({**data, "onnx_sha256": None, "onnx_reason": bad})
    with pytest.raises(ValidationError, match="not both"):
        ServingSpec.model_validate({**data, "onnx_sha256": "a" * 64, "onnx_reason": "refused: X"})
    # A copy is validated too: it cannot record an export and a refusal at once.
    with pytest.raises(ValidationError, match="not both"):
        with_reason.model_copy(update={"onnx_sha256": "a" * 64})
    with pytest.raises(ValidationError, match="onnx_reason"):
        with_reason.model_copy(update={"onnx_reason": "None"})
    # Neither recorded (a spec written before its export was decided, or an old bundle):
    # it says so in words rather than leaving the reason empty.
    unrecorded = ServingSpec.model_validate({**data, "onnx_sha256": None, "onnx_reason": None})
    assert unrecorded.onnx_reason and unrecorded.onnx_reason != "None"
    assert unrecorded.model_copy(update={"onnx_sha256": "b" * 64}).onnx_reason is None


def test_a_conversion_result_without_bytes_must_say_why() -> None:
    from tabpipe.onnx.export import ConversionResult

    for bad in (None, "", "None"):
        with pytest.raises(ValueError, match="reason"):
            ConversionResult(onnx_bytes=None, reason=bad, opset={})
    with pytest.raises(ValueError, match="reason"):
        ConversionResult(onnx_bytes=b"x", reason="refused", opset={})
