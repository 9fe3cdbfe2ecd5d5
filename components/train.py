"""Train component."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    preprocessor: Input[Model],
    model: Output[Model],
    onnx_model: Output[Model],
):
    """Search the candidate estimators, keep the best and log every trial to MLflow."""
    from tabpipe.adapters import train as stage
    from tabpipe.artifacts import Meta
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard
    from tabpipe.tracking import RunContext
    from tabpipe.version import code_version as installed_code_version

    cfg = PipelineConfig.from_parameter(config_json)
    # Empty (a run started from the dashboard with the compiled default): the installed code's version.
    code_version = code_version or installed_code_version()
    inputs = stage.TrainInputs(
        train.path, validation.path, preprocessor.path, preprocessor.metadata[Meta.SHA256]
    )
    with stage_guard("train", mlflow_tracking_uri, cfg.experiment_name) as kfp_run_id:
        ctx = RunContext(
            tracking_uri=mlflow_tracking_uri,
            data_version=train.metadata[Meta.DATA_VERSION],
            contract_hash=train.metadata[Meta.CONTRACT_HASH],
            config_hash=cfg.fingerprint(),
            code_version=code_version,
            kfp_run_id=kfp_run_id,
        )
        result = stage.run(cfg, ctx, inputs, stage.TrainOutputs(model.path, onnx_model.path))
    model.metadata.update(result.metadata())
    model.metadata.update(ctx.tags())
    onnx_model.metadata.update(result.onnx_metadata())
