"""The estimator registry: building, search-space checks at the YAML boundary, and the ONNX decision.

Every registered estimator is built for each of its tasks, fitted on a small
synthetic data set with tabpipe's real preprocessing, saved and loaded through
the skops allow-list, and exported to ONNX with parity (or shown to declare why not).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tabpipe.config import Estimator, PipelineConfig, TaskType, load_config, parse_config
from tabpipe.errors import ConfigError
from tabpipe.estimators import (
    ESTIMATORS,
    EstimatorClass,
    EstimatorSpec,
    NotExportable,
    OnnxConverter,
    check_search_spaces,
    import_object,
)

REPO = Path(__file__).resolve().parents[2]
COMMITTED_CONFIGS = [
    REPO / "configs" / "phishing.yaml",
    REPO / "configs" / "housing.yaml",
    REPO / "configs" / "wine.yaml",
    REPO / "tests" / "fixtures" / "e2e" / "phishing_small.yaml",
]
PAIRS = [(name, task) for name, spec in ESTIMATORS.items() for task in sorted(spec.tasks)]

# What the train stage built before the registry existed (seed 7); the registry must keep it.
EXPECTED: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("logistic_regression", "classification"): ("LogisticRegression", {"max_iter": 2000, "random_state": 7}),
    ("random_forest", "classification"): (
        "RandomForestClassifier",
        {"n_estimators": 100, "random_state": 7, "n_jobs": 1},
    ),
    ("random_forest", "regression"): (
        "RandomForestRegressor",
        {"n_estimators": 100, "random_state": 7, "n_jobs": 1},
    ),
    ("hist_gradient_boosting", "classification"): ("HistGradientBoostingClassifier", {"random_state": 7}),
    ("hist_gradient_boosting", "regression"): ("HistGradientBoostingRegressor", {"random_state": 7}),
    ("ridge", "regression"): ("Ridge", {"random_state": 7}),
    ("linear_regression", "regression"): ("LinearRegression", {}),
}


# --------------------------------------------------------------------------- the table


def test_the_config_enum_is_the_registry() -> None:
    assert [e.value for e in Estimator] == list(ESTIMATORS)
    assert Estimator("random_forest").spec is ESTIMATORS["random_forest"]
    assert ESTIMATORS["ridge"].tasks == frozenset({TaskType.REGRESSION})
    assert ESTIMATORS["logistic_regression"].tasks == frozenset({TaskType.BINARY, TaskType.MULTICLASS})
    with pytest.raises(TypeError):
        ESTIMATORS["new"] = ESTIMATORS["ridge"]  # type: ignore[index]


def test_importing_the_config_does_not_import_scikit_learn() -> None:
    code = (
        "import sys, tabpipe.config, tabpipe.estimators; "
        "heavy = {'sklearn', 'skl2onnx', 'onnx', 'onnxruntime'}; "
        "print([m for m in sys.modules if m.split('.')[0] in heavy])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("name", "task"), PAIRS, ids=[f"{n}-{t.value}" for n, t in PAIRS])
def test_every_estimator_builds_for_each_of_its_tasks(name: str, task: TaskType) -> None:
    built = ESTIMATORS[name].build(task, seed=7)
    kind = "classification" if task.is_classification else "regression"
    class_name, defaults = EXPECTED[(name, kind)]
    assert type(built).__name__ == class_name
    assert type(built) is ESTIMATORS[name].estimator_class(task).load()
    params = built.get_params()
    assert {key: params[key] for key in defaults} == defaults
    assert (task.is_classification and hasattr(built, "predict_proba")) or not task.is_classification


def test_an_unsupported_task_is_refused() -> None:
    with pytest.raises(ValueError, match="'ridge' cannot do binary_classification"):
        ESTIMATORS["ridge"].build(TaskType.BINARY, seed=0)


def test_an_entry_must_decide_its_onnx_export() -> None:
    lasso = EstimatorClass("sklearn.linear_model:Lasso")
    with pytest.raises(TypeError):
        EstimatorSpec(name="lasso", classifier=None, regressor=lasso)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="onnx must be"):
        EstimatorSpec(name="lasso", classifier=None, regressor=lasso, onnx=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a reason"):
        EstimatorSpec(name="lasso", classifier=None, regressor=lasso, onnx=NotExportable(" "))
    with pytest.raises(ValueError, match="classifier or a regressor"):
        EstimatorSpec(name="nothing", classifier=None, regressor=None, onnx=OnnxConverter())


def test_every_class_and_converter_path_resolves() -> None:
    for spec in ESTIMATORS.values():
        for estimator_class in spec.classes:
            assert estimator_class.load().__name__ == estimator_class.class_name
        if isinstance(spec.onnx, OnnxConverter) and spec.onnx.path is not None:
            assert callable(import_object(spec.onnx.path))


def test_every_class_is_on_the_skops_allow_list() -> None:
    from tabpipe.modelio import TRUSTED_MODULE_PREFIXES

    for spec in ESTIMATORS.values():
        for estimator_class in spec.classes:
            assert estimator_class.load().__module__.startswith(TRUSTED_MODULE_PREFIXES), estimator_class.path


# --------------------------------------------------------------------------- search spaces at load_config

CONTRACT: dict[str, Any] = {
    "name": "demo",
    "columns": {
        "a": {"dtype": "float"},
        "b": {"dtype": "integer", "min": 0},
        "s": {"dtype": "string"},
        "y": {"dtype": "string", "allowed": ["no", "yes"]},
    },
}
BASE: dict[str, Any] = {
    "name": "demo",
    "task": "binary_classification",
    "target": "y",
    "source": {"uri": "/tmp/demo.csv"},
    "contract": CONTRACT,
    "features": {"engineered": [{"name": "a_per_b", "op": "ratio", "inputs": ["a", "b"]}]},
    "models": [
        {"estimator": "logistic_regression", "params": {"C": {"low": 0.1, "high": 1.0, "log": True}}},
        {"estimator": "random_forest", "params": {"max_depth": [3, None], "n_estimators": [10, 20]}},
    ],
    "evaluation": {"primary_metric": "f1"},
    "registry": {"model_name": "demo-model"},
}


def write_config(tmp_path: Path, models: list[dict[str, Any]]) -> Path:
    data = copy.deepcopy(BASE)
    data["models"] = models
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_problems(tmp_path: Path, models: list[dict[str, Any]]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, models))
    return str(info.value)


@pytest.mark.parametrize("path", COMMITTED_CONFIGS, ids=lambda p: p.name)
def test_committed_configs_have_valid_search_spaces(path: Path) -> None:
    assert check_search_spaces(load_config(path)) == []


def test_a_misspelt_parameter_is_named_with_a_suggestion(tmp_path: Path) -> None:
    message = load_problems(tmp_path, [{"estimator": "random_forest", "params": {"max_dept": [3, 5]}}])
    assert message.startswith(f"invalid config {tmp_path / 'demo.yaml'}:")
    assert (
        "models.0.params.max_dept: not a parameter of RandomForestClassifier (did you mean max_depth?)"
        in message
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param(
            {"estimator": "logistic_regression", "params": {"C": [-1.0, 1.0]}},
            ["models.0.params.C: -1.0 is invalid", "'C' parameter of LogisticRegression", "(0.0, inf]"],
            id="negative-C-listed",
        ),
        pytest.param(
            {"estimator": "logistic_regression", "params": {"C": {"low": -1.0, "high": 1.0}}},
            ["models.0.params.C: low -1.0 is invalid", "Got -1.0 instead"],
            id="negative-C-range",
        ),
        pytest.param(
            {"estimator": "random_forest", "params": {"n_estimators": [0, 10]}},
            ["models.0.params.n_estimators: 0 is invalid", "range [1, inf)"],
            id="zero-trees",
        ),
        pytest.param(
            {
                "estimator": "random_forest",
                "params": {"min_samples_leaf": {"low": 0, "high": 4, "integer": True}},
            },
            ["models.0.params.min_samples_leaf: low 0 is invalid"],
            id="integer-range-below-minimum",
        ),
        pytest.param(
            # Without integer: true the search would draw floats, which n_estimators refuses.
            {"estimator": "random_forest", "params": {"n_estimators": {"low": 10, "high": 50}}},
            ["models.0.params.n_estimators: low 10.0 is invalid", "must be an int"],
            id="float-range-for-an-int",
        ),
        pytest.param(
            {"estimator": "hist_gradient_boosting", "params": {"loss": ["log_loss", "hinge"]}},
            ["models.0.params.loss: 'hinge' is invalid"],
            id="unknown-option",
        ),
    ],
)
def test_an_invalid_value_is_named(tmp_path: Path, model: dict[str, Any], expected: list[str]) -> None:
    message = load_problems(tmp_path, [model])
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_every_search_space_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = load_problems(
        tmp_path,
        [
            {"estimator": "logistic_regression", "params": {"C": [0.0], "penalti": ["l2"]}},
            {"estimator": "random_forest", "params": {"n_estimators": [0], "max_depth": [0, None]}},
        ],
    )
    for fragment in (
        "models.0.params.C: 0.0 is invalid",
        "models.0.params.penalti: not a parameter of LogisticRegression (did you mean penalty?)",
        "models.1.params.n_estimators: 0 is invalid",
        "models.1.params.max_depth: 0 is invalid",
    ):
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "None is invalid" not in message


def test_parse_config_leaves_the_search_space_check_to_load_config() -> None:
    # parse_config runs in every pipeline task on JSON load_config already checked; it stays sklearn-free.
    data = copy.deepcopy(BASE)
    data["models"] = [{"estimator": "random_forest", "params": {"max_dept": [3]}}]
    config = parse_config(data)
    assert check_search_spaces(config) == [
        "models.0.params.max_dept: not a parameter of RandomForestClassifier (did you mean max_depth?)"
    ]


# --------------------------------------------------------------------------- ONNX: parity, or a reason


def _config(task: TaskType) -> PipelineConfig:
    data = copy.deepcopy(BASE)
    data["task"] = task.value
    data["models"] = [{"estimator": "random_forest"}]
    if task is TaskType.MULTICLASS:
        data["contract"]["columns"]["y"] = {"dtype": "integer", "allowed": [0, 1, 2]}
        data["evaluation"] = {"primary_metric": "accuracy"}
    elif task is TaskType.REGRESSION:
        data["contract"]["columns"]["y"] = {"dtype": "float"}
        data["evaluation"] = {"primary_metric": "rmse"}
    return parse_config(data)


def _frame(task: TaskType, n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    a = rng.normal(10.0, 3.0, n)
    a[rng.random(n) < 0.1] = np.nan
    b = pd.array(rng.integers(0, 6, n), dtype="Int64")
    b[rng.random(n) < 0.1] = pd.NA
    s = rng.choice(["red", "green", "blue"], n).astype(object)
    s[rng.random(n) < 0.1] = None
    signal = np.nan_to_num(a, nan=10.0) / 3 + (s == "red") * 2.0 + rng.normal(0, 1, n)
    if task is TaskType.BINARY:
        y: Any = np.where(signal > np.median(signal), "yes", "no")
    elif task is TaskType.MULTICLASS:
        y = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))
    else:
        y = signal * 1000.0
    return pd.DataFrame({"a": a, "b": b, "s": s, "y": y})


def _fit(name: str, task: TaskType) -> tuple[Any, Any, pd.DataFrame]:
    from sklearn.pipeline import Pipeline

    from tabpipe.features import build_preprocessor, split_xy
    from tabpipe.serving_spec import build_serving_spec

    config = _config(task)
    frame = _frame(task)
    x, y = split_xy(frame, config)
    model = Pipeline(
        [("preprocess", build_preprocessor(config)), ("model", ESTIMATORS[name].build(task, seed=3))]
    )
    model.fit(x, y)
    classes = list(model.classes_) if task.is_classification else []
    return model, build_serving_spec(config, classes, sha256="0" * 64), frame


@pytest.mark.parametrize(("name", "task"), PAIRS, ids=[f"{n}-{t.value}" for n, t in PAIRS])
def test_every_estimator_exports_with_parity_or_declares_why_not(
    name: str, task: TaskType, tmp_path: Path
) -> None:
    from tabpipe.modelio import load_model, save_model
    from tabpipe.onnx.export import convert_bundle
    from tabpipe.onnx.parity import check_parity

    model, spec, frame = _fit(name, task)
    # The bundle must survive the skops allow-list too.
    sha = save_model(model, tmp_path / "model.skops")
    loaded = load_model(tmp_path / "model.skops", sha)
    features = frame[[c.name for c in spec.inputs]]
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))

    result = convert_bundle(model, spec)
    declared = ESTIMATORS[name].onnx
    if isinstance(declared, NotExportable):
        assert result.onnx_bytes is None and declared.reason in (result.reason or "")
        return
    assert result.reason is None, result.reason
    assert result.onnx_bytes is not None
    parity = check_parity(model, result.onnx_bytes, frame, spec, tolerance=1e-6)
    assert parity.passed, parity.detail
    assert parity.n_rows == len(frame)


def test_an_estimator_outside_the_registry_is_refused_with_a_reason() -> None:
    from sklearn.base import clone
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.pipeline import Pipeline

    from tabpipe.onnx.export import convert_bundle

    fitted, spec, frame = _fit("random_forest", TaskType.BINARY)
    model = Pipeline([("preprocess", clone(fitted[0])), ("model", ExtraTreesClassifier(n_estimators=5))])
    model.fit(frame[[c.name for c in spec.inputs]], frame["y"])
    result = convert_bundle(model, spec)
    assert result.onnx_bytes is None
    assert result.reason == (
        "estimator ExtraTreesClassifier is not in tabpipe's estimator registry (tabpipe.estimators), "
        "so it has no verified ONNX conversion"
    )
