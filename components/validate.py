"""Validate component."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    test: Input[Dataset],
    clean_train: Output[Dataset],
    clean_validation: Output[Dataset],
    clean_test: Output[Dataset],
    report: Output[Markdown],
    report_json: Output[Artifact],
):
    """Check the contract, data quality and drift; drop or hash PII columns."""
    from tabpipe.adapters import validate as stage
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard

    cfg = PipelineConfig.from_parameter(config_json)
    splits = stage.Splits(train.path, validation.path, test.path)
    clean = stage.Splits(clean_train.path, clean_validation.path, clean_test.path)
    with stage_guard("validate", mlflow_tracking_uri, cfg.experiment_name):
        result = stage.run(cfg, splits, stage.ValidateOutputs(clean, report_json.path, report.path))
    for source, artifact in ((train, clean_train), (validation, clean_validation), (test, clean_test)):
        artifact.metadata.update(source.metadata)
        artifact.metadata.update(result.metadata())
