"""Unit tests of the pipeline config: loading, path resolution and field-naming errors."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabpipe.config import (
    Estimator,
    Metric,
    ParamRange,
    PipelineConfig,
    TaskType,
    load_config,
    parse_config,
)
from tabpipe.contract import DataContract
from tabpipe.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PHISHING_CONFIG = REPO / "configs" / "phishing.yaml"

CONTRACT: dict[str, Any] = {
    "name": "demo",
    "columns": {
        "y": {"dtype": "string", "allowed": ["no", "yes"]},
        "a": {"dtype": "float"},
        "b": {"dtype": "integer", "min": 0, "max": 10},
        "s": {"dtype": "string"},
        "when": {"dtype": "datetime"},
    },
}

BASE: dict[str, Any] = {
    "name": "demo",
    "task": "binary_classification",
    "target": "y",
    "source": {"uri": "/tmp/demo.csv"},
    "contract": CONTRACT,
    "models": [{"estimator": "logistic_regression", "params": {"C": {"low": 0.1, "high": 1.0, "log": True}}}],
    "evaluation": {"primary_metric": "f1"},
    "registry": {"model_name": "demo-model"},
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the committed config


def test_load_phishing_config_resolves_paths_and_inlines_contract() -> None:
    config = load_config(PHISHING_CONFIG)

    assert config.name == "phishing"
    assert config.task is TaskType.BINARY
    assert config.target == "Result"
    source = Path(config.source.uri)
    assert source.is_absolute()
    assert source == (REPO / "data" / "phishing" / "phishing_websites.csv").resolve()
    assert source.is_file()
    assert isinstance(config.contract, DataContract)
    assert config.contract.name == "phishing"
    assert len(config.contract.columns) == 31
    assert "Result" in config.contract.columns
    assert list(config.contract.columns)[-1] == "Result"  # column order kept
    assert [m.estimator for m in config.models] == [
        Estimator.LOGISTIC_REGRESSION,
        Estimator.RANDOM_FOREST,
        Estimator.HIST_GRADIENT_BOOSTING,
    ]
    assert config.models[0].params["C"] == ParamRange(low=0.01, high=10.0, log=True)
    assert config.models[1].params["max_depth"] == [8, 16, None]
    assert config.evaluation.primary_metric is Metric.ROC_AUC
    assert config.experiment_name == "phishing"


def test_load_config_resolves_relative_paths_against_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "cfg"
    sub.mkdir()
    write_yaml(sub / "contract.yaml", CONTRACT)
    data = base()
    data["contract"] = "contract.yaml"
    data["source"] = {"uri": "../data/demo.csv"}
    data["drift"] = {"reference_uri": "ref/demo.parquet"}
    config = load_config(write_yaml(sub / "demo.yaml", data))

    assert config.source.uri == str((tmp_path / "data" / "demo.csv").resolve())
    assert config.drift.reference_uri == str((sub / "ref" / "demo.parquet").resolve())
    assert config.contract == parse_config(base()).contract


def test_load_config_keeps_uris_with_a_scheme(tmp_path: Path) -> None:
    data = base()
    data["source"] = {"uri": "s3://bucket/demo.csv"}
    config = load_config(write_yaml(tmp_path / "demo.yaml", data))
    assert config.source.uri == "s3://bucket/demo.csv"


# --------------------------------------------------------------------------- invalid fields


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutation setting a dotted path in the config mapping."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[last] = value

    return mutate


INVALID = [
    pytest.param(_set("bogus", 1), ["bogus", "Extra inputs are not permitted"], id="unknown-top-level-key"),
    pytest.param(_set("task", "clustering"), ["task", "binary_classification"], id="wrong-task"),
    pytest.param(
        _set("target", "nope"),
        ["target", "'nope'", "not a column of the contract"],
        id="target-not-in-contract",
    ),
    pytest.param(
        _set("models", [{"estimator": "ridge"}]),
        ["models.0.estimator", "'ridge'", "binary_classification"],
        id="ridge-for-classification",
    ),
    pytest.param(_set("models", []), ["models"], id="no-models"),
    pytest.param(_set("models.0.estimator", "xgboost"), ["models.0.estimator"], id="unknown-estimator"),
    pytest.param(
        _set("evaluation.primary_metric", "rmse"),
        ["evaluation", "'rmse'", "binary_classification"],
        id="rmse-for-classification",
    ),
    pytest.param(
        _set("evaluation.thresholds", {"r2": 0.5}),
        ["evaluation", "'r2'"],
        id="r2-threshold-for-classification",
    ),
    pytest.param(
        _set("split", {"test_size": 0.5, "validation_size": 0.45}),
        ["split", "test_size + validation_size", "10%"],
        id="split-leaves-under-10pct",
    ),
    pytest.param(
        _set("split", {"test_size": 0.45, "validation_size": 0.45}),
        ["split", "10%"],
        id="split-leaves-exactly-90pct-out",
    ),
    pytest.param(_set("split.test_size", 1.0), ["split.test_size"], id="test-size-1"),
    pytest.param(
        _set("models.0.params", {"C": {"low": 1.0, "high": 1.0}}),
        ["models.0.params.C", "low (1.0) must be below high (1.0)"],
        id="range-low-equals-high",
    ),
    pytest.param(
        _set("models.0.params", {"C": {"low": 2.0, "high": 1.0}}),
        ["models.0.params.C", "must be below high"],
        id="range-low-above-high",
    ),
    pytest.param(
        _set("models.0.params", {"C": {"low": 0.0, "high": 1.0, "log": True}}),
        ["models.0.params.C", "log range needs low > 0"],
        id="log-range-low-zero",
    ),
    pytest.param(
        _set("models.0.params", {"C": {"low": -1.0, "high": 1.0, "log": True}}),
        ["models.0.params.C", "log range needs low > 0"],
        id="log-range-low-negative",
    ),
    pytest.param(
        _set("features", {"engineered": [{"name": "r", "op": "ratio", "inputs": ["a", "s"]}]}),
        ["features.engineered", "'r'", "'s'", "not numeric"],
        id="engineered-input-not-numeric",
    ),
    pytest.param(
        _set("features", {"engineered": [{"name": "r", "op": "ratio", "inputs": ["a", "zz"]}]}),
        ["features.engineered", "'zz'", "not a contract column"],
        id="engineered-input-not-in-contract",
    ),
    pytest.param(
        _set("features", {"engineered": [{"name": "r", "op": "log1p", "inputs": ["a", "b"]}]}),
        ["features.engineered.0", "log1p", "takes 1 input"],
        id="engineered-wrong-arity",
    ),
    pytest.param(_set("features", {"drop": ["y"]}), ["features.drop", "target"], id="drop-the-target"),
    pytest.param(
        _set("registry.model_name", "bad name!"),
        ["registry.model_name", "pattern"],
        id="bad-registry-model-name",
    ),
    pytest.param(_set("registry.model_name", ""), ["registry.model_name"], id="empty-registry-model-name"),
    pytest.param(_set("name", "Demo_Set"), ["name", "pattern"], id="bad-config-name"),
    pytest.param(
        _set("evaluation.slices", ["nope"]), ["evaluation.slices", "'nope'"], id="slice-not-in-contract"
    ),
    pytest.param(
        _set("split.timestamp_column", "nope"),
        ["split.timestamp_column", "'nope'"],
        id="timestamp-not-in-contract",
    ),
    pytest.param(_set("search.cv_folds", 1), ["search.cv_folds"], id="one-cv-fold"),
    pytest.param(
        _set("contract.columns.a", {"dtype": "float", "min": 5, "max": 1}),
        ["contract.columns.a", "min (5.0) is greater than max (1.0)"],
        id="inline-contract-min-above-max",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), INVALID)
def test_invalid_config_raises_config_error_naming_the_field(
    mutate: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = str(info.value)
    assert message.startswith("invalid pipeline config")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_base_config_is_valid() -> None:
    config = parse_config(base())
    assert config.task is TaskType.BINARY
    assert config.registry.model_name == "demo-model"


def test_unknown_key_in_yaml_file_is_named(tmp_path: Path) -> None:
    data = base()
    data["split"] = {"test_size": 0.2, "sed": 1}
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "demo.yaml", data))
    assert "split.sed" in str(info.value)
    assert str(tmp_path / "demo.yaml") in str(info.value)


def test_parse_config_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["not", "a", "mapping"])


# --------------------------------------------------------------------------- invalid files


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    message = str(info.value)
    assert message.startswith("config: cannot read")
    assert str(missing) in message


def test_non_yaml_config_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: demo\ntask: [unclosed\n  : : :\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "is not valid YAML" in str(info.value)
    assert str(path) in str(info.value)


def test_yaml_scalar_config_file(tmp_path: Path) -> None:
    path = tmp_path / "scalar.yaml"
    path.write_text("just a string\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(path)


def test_missing_contract_file(tmp_path: Path) -> None:
    data = base()
    data["contract"] = "missing_contract.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "demo.yaml", data))
    message = str(info.value)
    assert message.startswith("contract: cannot read")
    assert str(tmp_path / "missing_contract.yaml") in message


def test_non_yaml_contract_file(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text("columns: {a: [\n")
    data = base()
    data["contract"] = "contract.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "demo.yaml", data))
    assert str(info.value).startswith("contract:")
    assert "not valid YAML" in str(info.value)


def test_contract_file_with_min_above_max(tmp_path: Path) -> None:
    contract = copy.deepcopy(CONTRACT)
    contract["columns"]["b"] = {"dtype": "integer", "min": 10, "max": 0}
    write_yaml(tmp_path / "contract.yaml", contract)
    data = base()
    data["contract"] = "contract.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "demo.yaml", data))
    message = str(info.value)
    assert "data contract" in message
    assert "columns.b" in message
    assert "min (10.0) is greater than max (0.0)" in message


def test_contract_file_with_unknown_dtype(tmp_path: Path) -> None:
    contract = copy.deepcopy(CONTRACT)
    contract["columns"]["b"] = {"dtype": "decimal"}
    write_yaml(tmp_path / "contract.yaml", contract)
    data = base()
    data["contract"] = "contract.yaml"
    with pytest.raises(ConfigError, match=r"columns\.b\.dtype"):
        load_config(write_yaml(tmp_path / "demo.yaml", data))


# --------------------------------------------------------------------------- parameter and fingerprint


def test_to_parameter_is_json_and_round_trips() -> None:
    config = load_config(PHISHING_CONFIG)
    parameter = config.to_parameter()
    decoded = json.loads(parameter)
    assert decoded["target"] == "Result"
    assert decoded["contract"]["columns"]["Result"]["allowed"] == [-1, 1]
    assert list(decoded["contract"]["columns"]) == list(config.contract.columns)  # order kept

    again = PipelineConfig.from_parameter(parameter)
    assert isinstance(again, PipelineConfig)
    assert again == config
    assert again.to_parameter() == parameter
    assert again.models[1].params["max_depth"] == [8, 16, None]
    assert again.models[0].params["C"] == ParamRange(low=0.01, high=10.0, log=True)


def test_fingerprint_is_stable() -> None:
    first = load_config(PHISHING_CONFIG)
    second = load_config(PHISHING_CONFIG)
    assert first.fingerprint() == second.fingerprint()
    assert first.fingerprint() == PipelineConfig.from_parameter(first.to_parameter()).fingerprint()
    assert len(first.fingerprint()) == 64
    int(first.fingerprint(), 16)


@pytest.mark.parametrize(
    "mutate",
    [
        _set("split.seed", 7),
        _set("search.n_iter", 3),
        _set("contract.columns.b.max", 11),
        _set("models.0.params.C.high", 2.0),
        _set("evaluation.thresholds", {"f1": 0.8}),
    ],
    ids=["split-seed", "n-iter", "contract-bound", "param-range", "threshold"],
)
def test_fingerprint_changes_when_a_field_changes(mutate: Callable[[dict[str, Any]], None]) -> None:
    original = parse_config(base())
    data = base()
    mutate(data)
    changed = parse_config(data)
    assert changed != original
    assert changed.fingerprint() != original.fingerprint()
    assert parse_config(base()).fingerprint() == original.fingerprint()


def test_every_cross_field_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (REPO / "configs" / "phishing.yaml").read_text()
    text = text.replace("estimator: logistic_regression", "estimator: ridge").replace(
        "roc_auc: 0.95", "rmse: 0.95"
    )
    bad = tmp_path / "phishing.yaml"
    bad.write_text(
        text.replace("phishing_contract.yaml", str(REPO / "configs" / "phishing_contract.yaml")).replace(
            "../data/phishing/phishing_websites.csv",
            str(REPO / "data" / "phishing" / "phishing_websites.csv"),
        )
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(bad)
    message = str(excinfo.value)
    assert "models.0.estimator 'ridge' cannot do binary_classification" in message
    assert "metric 'rmse' does not apply to binary_classification" in message
    assert "Value error" not in message


def test_drift_settings_name_unknown_columns_and_bad_effect_sizes() -> None:
    data = base()
    data["drift"] = {"critical_columns": ["nope"], "min_effect_by_column": {"ghost": 0.2, "y": 0.5}}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "drift.min_effect_by_column: ['ghost'] not contract column(s)" in str(err.value)
    assert "drift.critical_columns: ['nope'] not contract column(s)" in str(err.value)
    data["drift"] = {"min_effect_by_column": {"y": 1.5}}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "drift.min_effect_by_column.y: Input should be less than or equal to 1" in str(err.value)
