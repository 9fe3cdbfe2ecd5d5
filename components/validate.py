"""Validate component."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    config_json: str,
    mlflow_tracking_uri: str,
    kfp_run_id: str,
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
    from tabpipe.guard import stage_guard
    from tabpipe.tasks import ValidateOutputs, load, run_validate

    cfg = load(config_json)
    outputs = ValidateOutputs(
        clean_train.path, clean_validation.path, clean_test.path, report_json.path, report.path
    )
    with stage_guard("validate", mlflow_tracking_uri, cfg.experiment_name, kfp_run_id):
        meta = run_validate(cfg, train.path, validation.path, test.path, outputs)
    for source, artifact in ((train, clean_train), (validation, clean_validation), (test, clean_test)):
        artifact.metadata.update(source.metadata)
        artifact.metadata.update(meta)
