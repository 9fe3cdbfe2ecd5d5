"""What a served model expects and returns, derived from the config and the data contract.

The train stage logs it next to the model bundle (``bundle/serving.json``) and the
deploy stage writes it into the deployable bundle (``bundle.json``), so a server
can validate requests against the contract without the pipeline config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from tabpipe.config import PipelineConfig, TaskType
from tabpipe.contract import ColumnContract

SERVING_SPEC_FILENAME = "serving.json"
ONNX_FILENAME = "model.onnx"
#: The reason a spec records when it was written without the export's outcome (a spec
#: built before conversion, or a bundle from before the outcome was recorded).
ONNX_NOT_RECORDED = "no ONNX export was recorded with this model, so scikit-learn serves it"
#: Texts that are a stringified missing value, not a reason.
_NOT_A_REASON = {"", "none", "null", "nan"}


def reason_problem(reason: str | None) -> str | None:
    """What is wrong with an ``onnx_reason``, or None when it is a real reason.

    A reason is words: not missing, not blank, and not a stringified missing
    value such as ``"None"`` (what ``str(None)`` makes of a lost reason).
    """
    if reason is None:
        return "onnx_reason is missing"
    if reason.strip().lower() in _NOT_A_REASON:
        return f"onnx_reason {reason!r} is not a reason"
    return None


class ServingInput(BaseModel):
    """One input column of the model, with its contract rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rules: ColumnContract


class ServingSpec(BaseModel):
    """The model's interface: inputs in order, task, target and classes.

    It records either its ONNX export (``onnx_sha256``) or why there is none
    (``onnx_reason``), never both and never neither: a spec given neither
    records :data:`ONNX_NOT_RECORDED`, and a reason must be words, not
    ``"None"``. Copies are validated too (:meth:`model_copy`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    task: TaskType
    target: str
    inputs: list[ServingInput]
    classes: list[Any] = []
    sha256: str
    #: The contract's extra missing-value tokens, for batch files read from CSV.
    na_values: list[str] = []
    version: str | None = None
    #: sha256 of the ONNX export (the fast path); None when the model could not be converted.
    onnx_sha256: str | None = None
    #: Why there is no ONNX export, recorded in the model's metadata.
    onnx_reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _say_when_nothing_was_recorded(cls, data: Any) -> Any:
        # Old bundles and specs built before conversion carry neither field; say so in
        # words rather than leave a gap that serving would have to explain.
        if isinstance(data, Mapping) and not data.get("onnx_sha256") and data.get("onnx_reason") is None:
            return {**data, "onnx_sha256": None, "onnx_reason": ONNX_NOT_RECORDED}
        return data

    @model_validator(mode="after")
    def _export_or_reason(self) -> ServingSpec:
        if self.onnx_sha256 is not None and not self.onnx_sha256:
            raise ValueError("onnx_sha256 is empty; leave it unset when there is no ONNX export")
        if self.onnx_sha256 and self.onnx_reason is not None:
            raise ValueError(
                "onnx_sha256 and onnx_reason are both set: a spec records its ONNX export "
                "or why there is none, not both"
            )
        if not self.onnx_sha256:
            problem = reason_problem(self.onnx_reason)
            if problem is not None:
                raise ValueError(f"{problem}: a spec without an ONNX export must say why")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> ServingSpec:
        """A copy with ``update`` applied, validated like a new spec.

        pydantic's copy skips validation, which would let a copy record both an
        export and a refusal. Setting ``onnx_sha256`` replaces
        :data:`ONNX_NOT_RECORDED` (a spec built before conversion then records
        its export); it never replaces a real reason.
        """
        changes = dict(update or {})
        if (
            changes.get("onnx_sha256")
            and "onnx_reason" not in changes
            and self.onnx_reason == ONNX_NOT_RECORDED
        ):
            changes["onnx_reason"] = None
        copied = super().model_copy(update=changes, deep=deep)
        return type(self).model_validate(dict(copied))


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
        na_values=list(config.contract.na_values),
    )
