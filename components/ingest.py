"""Ingest component."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(
    config_json: str,
    mlflow_tracking_uri: str,
    kfp_run_id: str,
    code_version: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
):
    """Read the source, record its row count and content hash, and split it."""
    from tabpipe.guard import stage_guard
    from tabpipe.tasks import load, run_ingest

    cfg = load(config_json)
    with stage_guard("ingest", mlflow_tracking_uri, cfg.experiment_name, kfp_run_id):
        meta = run_ingest(cfg, train.path, validation.path, test.path)
    for name, artifact in (("train", train), ("validation", validation), ("test", test)):
        artifact.metadata.update(meta)
        artifact.metadata["split"] = name
        artifact.metadata["code_version"] = code_version
