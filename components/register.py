"""Register component."""

from kfp import dsl
from kfp.dsl import Input, Model

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    config_json: str,
    mlflow_tracking_uri: str,
    kfp_run_id: str,
    code_version: str,
    model: Input[Model],
) -> str:
    """Register the blessed model in the MLflow Model Registry as alias ``challenger``; return the version."""
    from tabpipe.guard import stage_guard
    from tabpipe.tasks import load, run_register
    from tabpipe.tracking import RunContext

    cfg = load(config_json)
    ctx = RunContext(
        tracking_uri=mlflow_tracking_uri,
        data_version=model.metadata["tabpipe.data_version"],
        contract_hash=model.metadata["tabpipe.contract_hash"],
        config_hash=cfg.fingerprint(),
        code_version=code_version,
        kfp_run_id=kfp_run_id,
    )
    with stage_guard("register", mlflow_tracking_uri, cfg.experiment_name, kfp_run_id):
        version = run_register(
            cfg,
            ctx,
            model.metadata["mlflow_model_uri"],
            model.metadata["mlflow_run_id"],
            model.metadata["sha256"],
        )
    return version
