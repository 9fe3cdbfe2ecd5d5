"""Ingest component."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
):
    """Read the source, record its row count and content hash, and split it."""
    from tabpipe.adapters import ingest as stage
    from tabpipe.artifacts import Meta, Split
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard
    from tabpipe.version import code_version as installed_code_version

    cfg = PipelineConfig.from_parameter(config_json)
    # Empty (a run started from the dashboard with the compiled default): the installed code's version.
    code_version = code_version or installed_code_version()
    with stage_guard("ingest", mlflow_tracking_uri, cfg.experiment_name):
        result = stage.run(cfg, stage.IngestOutputs(train.path, validation.path, test.path))
    for name, artifact in ((Split.TRAIN, train), (Split.VALIDATION, validation), (Split.TEST, test)):
        artifact.metadata.update(result.metadata())
        artifact.metadata[Meta.SPLIT] = name
        artifact.metadata[Meta.CODE_VERSION] = code_version
