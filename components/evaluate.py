"""Evaluate component."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    model: Input[Model],
    onnx_model: Input[Model],
    test: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[Markdown],
    blessing: Output[Artifact],
) -> bool:
    """Test-split metrics, slices, plots and the blessing gate; returns whether the model is blessed.

    A single ``bool`` return (KFP's ``Output`` parameter) rather than a named
    output: kfp.local resolves ``<task>-Output`` in a ``dsl.If`` inside an
    exit handler, but not a named output such as ``evaluate-blessed``.
    """
    import json
    import math

    from tabpipe.adapters import evaluate as stage
    from tabpipe.artifacts import Meta
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard

    cfg = PipelineConfig.from_parameter(config_json)
    inputs = stage.EvaluateInputs(
        model=model.path,
        model_sha256=model.metadata[Meta.SHA256],
        mlflow_run_id=model.metadata[Meta.MLFLOW_RUN_ID],
        test=test.path,
        onnx_model=onnx_model.path,
        onnx_sha256=onnx_model.metadata.get(Meta.ONNX_SHA256),
    )
    with stage_guard("evaluate", mlflow_tracking_uri, cfg.experiment_name):
        result = stage.run(
            cfg, mlflow_tracking_uri, inputs, stage.EvaluateOutputs(report.path, blessing.path)
        )
    for name, value in result.metrics.items():
        if value is not None and math.isfinite(value):
            metrics.log_metric(name, value)
    # Metadata-only artifacts never hit the local cache; a file makes them cacheable.
    with open(metrics.path, "w") as handle:
        json.dump(result.metrics, handle)
    if result.confusion is not None:
        categories, matrix = result.confusion
        classification_metrics.log_confusion_matrix(categories, matrix)
    if result.roc is not None:
        fpr, tpr, thresholds = result.roc
        classification_metrics.log_roc_curve(fpr, tpr, thresholds)
    with open(classification_metrics.path, "w") as handle:
        json.dump({"confusion": result.confusion, "roc": result.roc}, handle)
    blessing.metadata.update(result.metadata())
    return result.blessed
