"""What a served model expects and returns, derived from the config and the data contract.

The train stage logs it next to the model bundle (``bundle/serving.json``) and the
deploy stage writes it into the deployable bundle (``bundle.json``), so a server
can validate requests against the contract without the pipeline config.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tabpipe.config import PipelineConfig, TaskType
from tabpipe.contract import ColumnContract

SERVING_SPEC_FILENAME = "serving.json"
ONNX_FILENAME = "model.onnx"


class ServingInput(BaseModel):
    """One input column of the model, with its contract rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rules: ColumnContract


class ServingSpec(BaseModel):
    """The model's interface: inputs in order, task, target and classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    task: TaskType
    target: str
    inputs: list[ServingInput]
    classes: list[Any] = []
    sha256: str
    version: str | None = None
    #: sha256 of the ONNX export (the fast path); None when the model could not be converted.
    onnx_sha256: str | None = None
    #: Why there is no ONNX export, recorded in the model's metadata.
    onnx_reason: str | None = None


def build_serving_spec(config: PipelineConfig, classes: list[Any], sha256: str) -> ServingSpec:
    """The serving interface of a model trained with ``config``."""
    from tabpipe.features import feature_columns

    columns = config.contract.columns
    return ServingSpec(
        model_name=config.registry.model_name,
        task=config.task,
        target=config.target,
        inputs=[ServingInput(name=name, rules=columns[name]) for name in feature_columns(config).raw],
        classes=[c.item() if hasattr(c, "item") else c for c in classes],
        sha256=sha256,
    )
