"""Train component."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    config_json: str,
    mlflow_tracking_uri: str,
    kfp_run_id: str,
    code_version: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    preprocessor: Input[Model],
    model: Output[Model],
    onnx_model: Output[Model],
):
    """Search the candidate estimators, keep the best and log every trial to MLflow."""
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard
    from tabpipe.tasks import run_train
    from tabpipe.tracking import RunContext

    cfg = PipelineConfig.from_parameter(config_json)
    ctx = RunContext(
        tracking_uri=mlflow_tracking_uri,
        data_version=train.metadata["data_version"],
        contract_hash=train.metadata["contract_hash"],
        config_hash=cfg.fingerprint(),
        code_version=code_version,
        kfp_run_id=kfp_run_id,
    )
    with stage_guard("train", mlflow_tracking_uri, cfg.experiment_name, kfp_run_id):
        meta = run_train(
            cfg,
            ctx,
            train.path,
            validation.path,
            preprocessor.path,
            preprocessor.metadata["sha256"],
            model.path,
            onnx_model.path,
        )
    model.metadata.update(meta)
    model.metadata.update(ctx.tags())
    onnx_model.metadata.update({k: v for k, v in meta.items() if k.startswith("onnx_")})
