"""Small builders shared by the validate tests."""

from __future__ import annotations

from tabpipe.config import PipelineConfig
from tabpipe.contract import DataContract


def contract(columns: dict, **extra) -> DataContract:
    return DataContract.model_validate({"name": "t", "columns": columns, **extra})


def config(
    contract_doc: dict, task: str = "binary_classification", target: str = "y", **extra
) -> PipelineConfig:
    metric = "mae" if task == "regression" else "accuracy"
    estimator = "ridge" if task == "regression" else "logistic_regression"
    return PipelineConfig.model_validate(
        {
            "name": "demo",
            "task": task,
            "target": target,
            "source": {"uri": "/tmp/demo.csv"},
            "contract": contract_doc,
            "models": [{"estimator": estimator}],
            "evaluation": {"primary_metric": metric},
            "registry": {"model_name": "demo"},
            **extra,
        }
    )
