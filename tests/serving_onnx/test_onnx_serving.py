"""ONNX export and the onnxruntime predictor, on real pipelines fitted by tabpipe's own stages.

Each case trains one estimator with a one-trial search, converts it and checks
parity with scikit-learn on the test split; then the predictor is fed the
awkward rows serving sees (NaN, None, unseen categories, zero denominators).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabpipe.config import CandidateModel, Estimator, PipelineConfig, load_config
from tabpipe.onnx.export import ConversionResult, convert_bundle
from tabpipe.onnx.parity import check_parity, parity_verdict
from tabpipe.onnx.predictor import OnnxPredictor, columns_from_frame
from tabpipe.serving_spec import ServingSpec, build_serving_spec
from tabpipe.stages.ingest import ingest
from tabpipe.stages.train import train
from tabpipe.stages.transform import fit_preprocessor

REPO = Path(__file__).resolve().parents[2]
PHISHING = REPO / "tests/fixtures/e2e/phishing_small.yaml"
HOUSING = REPO / "configs/housing.yaml"
TOLERANCE = 1e-4

CASES = [
    ("phishing", "logistic_regression"),
    ("phishing", "random_forest"),
    ("phishing", "hist_gradient_boosting"),
    ("housing", "hist_gradient_boosting"),
    ("housing", "ridge"),
]


@dataclass
class Fitted:
    config: PipelineConfig
    model: Any
    test: pd.DataFrame
    spec: ServingSpec


def small_search(config: PipelineConfig, estimator: str | None = None, **features: Any) -> PipelineConfig:
    """The config with one search trial, two folds and optionally one estimator only."""
    models = config.models
    if estimator is not None:
        models = [m for m in models if m.estimator.value == estimator] or [
            CandidateModel(estimator=Estimator(estimator))
        ]
    update: dict[str, Any] = {
        "models": models,
        "search": config.search.model_copy(update={"n_iter": 1, "cv_folds": 2}),
    }
    if features:
        update["features"] = config.features.model_copy(update=features)
    return config.model_copy(update=update)


def fit(config: PipelineConfig, splits: Any) -> Fitted:
    preprocessor, _ = fit_preprocessor(config, splits.train)
    model = train(config, splits.train, splits.validation, preprocessor).best.model
    classes = list(model.classes_) if config.task.is_classification else []
    return Fitted(config, model, splits.test, build_serving_spec(config, classes, sha256="0" * 64))


@pytest.fixture(scope="module")
def splits() -> dict[str, Any]:
    return {"phishing": ingest(load_config(PHISHING)).splits, "housing": ingest(load_config(HOUSING)).splits}


@pytest.fixture(scope="module")
def fitted(splits: dict[str, Any]) -> dict[tuple[str, str], Fitted]:
    configs = {"phishing": load_config(PHISHING), "housing": load_config(HOUSING)}
    return {(data, est): fit(small_search(configs[data], est), splits[data]) for data, est in CASES}


def convert_ok(case: Fitted) -> bytes:
    result = convert_bundle(case.model, case.spec)
    assert result.reason is None, result.reason
    assert result.onnx_bytes is not None and result.opset
    return result.onnx_bytes


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize(("data", "estimator"), CASES)
def test_converts_with_parity_on_the_test_split(fitted: dict, data: str, estimator: str) -> None:
    case = fitted[(data, estimator)]
    parity = check_parity(case.model, convert_ok(case), case.test, case.spec, TOLERANCE)
    print(f"\n{data}/{estimator}: {parity.detail}")
    assert parity.passed, parity.detail
    assert parity.n_rows == len(case.test)
    if case.config.task.is_classification:
        assert parity.max_abs_proba_diff is not None and parity.max_abs_proba_diff <= TOLERANCE
        assert parity.mismatch_count == 0
    else:
        assert parity.max_rel_pred_diff is not None and parity.max_rel_pred_diff <= TOLERANCE


def test_search_winner_converts(splits: dict[str, Any]) -> None:
    # The model the pipeline would actually ship: the best of the config's candidates.
    case = fit(small_search(load_config(HOUSING)), splits["housing"])
    parity = check_parity(case.model, convert_ok(case), case.test, case.spec, TOLERANCE)
    assert parity.passed, parity.detail


def test_infrequent_categories_and_unknowns_go_to_the_infrequent_column(splits: dict[str, Any]) -> None:
    config = small_search(load_config(HOUSING), "ridge", max_categories=3)
    case = fit(config, splits["housing"])
    encoder = case.model[0].named_steps["columns"].named_transformers_["categorical"].named_steps["encode"]
    assert any(rare is not None for rare in encoder.infrequent_categories_)
    frame = case.test.copy()
    frame["neighbourhood"] = frame["neighbourhood"].astype(object)
    frame.loc[frame.index[:5], "neighbourhood"] = "atlantis"  # unseen: lands in "infrequent"
    parity = check_parity(case.model, convert_ok(case), frame, case.spec, TOLERANCE)
    assert parity.passed, parity.detail


# --------------------------------------------------------------------------- awkward rows


def awkward_housing_rows() -> pd.DataFrame:
    nan = np.nan
    return pd.DataFrame(
        {
            "area_sqm": [80.0, 120.5, 55.0, 300.0, 42.0, 99.9],
            "rooms": [nan, 0.0, 3.0, nan, 2.0, 4.0],  # nullable int; 0 -> ratio NaN
            "age_years": [nan, 10.0, nan, 0.0, 35.0, 1.0],
            "distance_km": [0.0, 1e-12, 5.0, -1.0, -3.0, 60.0],  # log1p at 0, tiny, and off-domain
            "neighbourhood": [None, "centre", "moon_base", None, "harbour", "old_town"],
            "energy_label": ["A", None, "Z", None, "G", "C"],
            "heating": [None, "gas", "district", "steam", None, "heat_pump"],
        },
    ).astype({c: object for c in ("neighbourhood", "energy_label", "heating")})


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "ridge"])
def test_predictor_handles_missing_values_and_unseen_categories(fitted: dict, estimator: str) -> None:
    case = fitted[("housing", estimator)]
    frame = awkward_housing_rows()
    predictor = OnnxPredictor(convert_ok(case), case.spec)
    pred, proba = predictor.predict(columns_from_frame(frame, case.spec))
    assert predictor.kind == "onnx" and proba is None
    expected = case.model.predict(frame)
    np.testing.assert_allclose(pred, expected, rtol=TOLERANCE, atol=TOLERANCE)
    assert np.isfinite(pred).all()


def test_predictor_maps_probabilities_to_the_spec_classes(fitted: dict) -> None:
    case = fitted[("phishing", "hist_gradient_boosting")]
    predictor = OnnxPredictor(convert_ok(case), case.spec)
    features = case.test[[c.name for c in case.spec.inputs]]
    pred, proba = predictor.predict(columns_from_frame(features, case.spec))
    assert proba is not None and proba.shape == (len(features), len(case.spec.classes))
    np.testing.assert_array_equal(pred, case.model.predict(features))
    assert pred.dtype.kind == "i"  # labels keep the bundle's integer type
    # NaN in an integer column: sklearn imputes it; so must the graph.
    row = {name: values[:1].copy() for name, values in columns_from_frame(features, case.spec).items()}
    row["SSLfinal_State"][0] = np.nan
    got, got_proba = predictor.predict(row)
    frame = pd.DataFrame({name: values for name, values in row.items()})
    np.testing.assert_allclose(got_proba, case.model.predict_proba(frame), atol=TOLERANCE)


def test_predictor_rejects_a_spec_that_does_not_match(fitted: dict) -> None:
    case = fitted[("phishing", "logistic_regression")]
    onnx_bytes = convert_ok(case)
    with pytest.raises(ValueError, match="classes"):
        OnnxPredictor(onnx_bytes, case.spec.model_copy(update={"classes": [0, 1]}))
    with pytest.raises(ValueError, match="inputs"):
        OnnxPredictor(onnx_bytes, case.spec.model_copy(update={"inputs": case.spec.inputs[::-1]}))


# --------------------------------------------------------------------------- refusals


def test_refuses_unverified_estimators_with_a_reason(fitted: dict) -> None:
    from sklearn.base import clone
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import Pipeline

    case = fitted[("housing", "ridge")]
    frame = case.test
    model = Pipeline([("preprocess", clone(case.model[0])), ("model", KNeighborsRegressor())])
    model.fit(frame[[c.name for c in case.spec.inputs]], frame["price"])
    result = convert_bundle(model, case.spec)
    assert result.onnx_bytes is None
    assert "KNeighborsRegressor is not in tabpipe's estimator registry" in (result.reason or "")


def test_refuses_encoders_that_raise_on_unknown_categories(fitted: dict) -> None:
    from sklearn.base import clone

    case = fitted[("housing", "ridge")]
    model = clone(case.model)
    model.set_params(preprocess__columns__categorical__encode__handle_unknown="error")
    model.fit(case.test[[c.name for c in case.spec.inputs]], case.test["price"])
    result = convert_bundle(model, case.spec)
    assert result.onnx_bytes is None
    assert "handle_unknown='error'" in (result.reason or "")


def test_refuses_a_spec_that_does_not_match_the_model(fitted: dict) -> None:
    case = fitted[("phishing", "random_forest")]
    result = convert_bundle(case.model, case.spec.model_copy(update={"classes": ["a", "b"]}))
    assert result.onnx_bytes is None and "classes" in (result.reason or "")
    reordered = case.spec.model_copy(update={"inputs": case.spec.inputs[::-1]})
    result = convert_bundle(case.model, reordered)
    assert result.onnx_bytes is None and "differ from the serving spec" in (result.reason or "")


# --------------------------------------------------------------------------- latency (printed, not asserted)


def _per_row_ms(fn: Any, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


@pytest.mark.parametrize(
    ("data", "estimator"), [("phishing", "logistic_regression"), ("housing", "hist_gradient_boosting")]
)
def test_print_per_row_latency(fitted: dict, data: str, estimator: str) -> None:
    case = fitted[(data, estimator)]
    predictor = OnnxPredictor(convert_ok(case), case.spec)
    one_row = case.test[[c.name for c in case.spec.inputs]].iloc[:1]
    columns = columns_from_frame(one_row, case.spec)
    from threadpoolctl import threadpool_limits

    sklearn_call = case.model.predict_proba if case.config.task.is_classification else case.model.predict
    # One thread for both: the predictor uses one, and OpenMP spin-waits on shared cores add noise.
    with threadpool_limits(limits=1):
        sklearn_ms = _per_row_ms(lambda: sklearn_call(one_row), 50)
    onnx_ms = _per_row_ms(lambda: predictor.predict(columns), 1000)
    print(
        f"\n{data}/{estimator} per row (median): OnnxPredictor.predict {onnx_ms:.4f} ms, "
        f"scikit-learn {sklearn_call.__name__} on a one-row DataFrame {sklearn_ms:.3f} ms "
        f"({sklearn_ms / onnx_ms:.0f}x)"
    )


def test_parity_verdict(fitted: dict) -> None:
    case = fitted[("housing", "ridge")]
    verdict = parity_verdict(case.model, convert_bundle(case.model, case.spec), case.test, case.spec)
    assert verdict.passed and "600 rows" in verdict.detail
    refused = ConversionResult(onnx_bytes=None, reason="estimator X is not verified", opset={})
    lenient = parity_verdict(case.model, refused, case.test, case.spec)
    assert lenient.passed and "no ONNX model (estimator X is not verified)" in lenient.detail
    strict = parity_verdict(case.model, refused, case.test, case.spec, require_onnx=True)
    assert not strict.passed and "estimator X is not verified" in strict.detail
    # A graph for another model must fail the gate, not pass silently.
    other = fitted[("housing", "hist_gradient_boosting")]
    wrong = convert_bundle(other.model, other.spec)
    assert not parity_verdict(case.model, wrong, case.test, case.spec).passed
    # A graph that cannot run on the rows fails with the error named.
    broken = ConversionResult(onnx_bytes=b"not an onnx model", reason=None, opset={})
    failed = parity_verdict(case.model, broken, case.test, case.spec)
    assert not failed.passed and "ONNX model failed on the test rows" in failed.detail


def test_onnx_package_imports_only_the_layers_below_it() -> None:
    import ast

    # Never tabpipe.stages, tabpipe.serving, tabpipe.tasks or tabpipe.adapters.
    allowed = (
        "tabpipe.errors",
        "tabpipe.io",
        "tabpipe.config",
        "tabpipe.contract",
        "tabpipe.features",
        "tabpipe.serving_spec",
        "tabpipe.artifacts",
        "tabpipe.estimators",
        "tabpipe.task_type",
        "tabpipe.onnx",
    )
    for path in sorted((REPO / "tabpipe" / "onnx").rglob("*.py")) + [REPO / "tabpipe" / "estimators.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "tabpipe" or name.startswith("tabpipe."):
                    ok = any(name == a or name.startswith((f"{a}.", f"{a}_")) for a in allowed)
                    assert ok, f"{path.relative_to(REPO)} imports {name}"
