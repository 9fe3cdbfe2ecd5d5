"""Register component."""

from kfp import dsl
from kfp.dsl import Input, Model

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    model: Input[Model],
) -> str:
    """Register the blessed model in the MLflow Model Registry as alias ``challenger``; return the version."""
    from tabpipe.adapters import register as stage
    from tabpipe.artifacts import Meta
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard
    from tabpipe.tracking import RunContext, Tag
    from tabpipe.version import code_version as installed_code_version

    cfg = PipelineConfig.from_parameter(config_json)
    # Empty (a run started from the dashboard with the compiled default): the installed code's version.
    code_version = code_version or installed_code_version()
    with stage_guard("register", mlflow_tracking_uri, cfg.experiment_name) as kfp_run_id:
        ctx = RunContext(
            tracking_uri=mlflow_tracking_uri,
            data_version=model.metadata[Tag.DATA_VERSION],
            contract_hash=model.metadata[Tag.CONTRACT_HASH],
            config_hash=cfg.fingerprint(),
            code_version=code_version,
            kfp_run_id=kfp_run_id,
        )
        return stage.run(
            cfg,
            ctx,
            model.metadata[Meta.MLFLOW_MODEL_URI],
            model.metadata[Meta.MLFLOW_RUN_ID],
            model.metadata[Meta.SHA256],
            # .get: a model from before bundle manifests carries no digest.
            model.metadata.get(Meta.BUNDLE_DIGEST),
        )
