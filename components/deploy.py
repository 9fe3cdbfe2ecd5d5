"""Deploy component."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    model: Input[Model],
    onnx_model: Input[Model],
    test: Input[Dataset],
    version: str,
    deploy_target: str,
    serving_url: str,
    bundle: Output[Model],
):
    """Write the deployable bundle, deploy it (local server: load, smoke-test), then move ``champion``."""
    from tabpipe.adapters import deploy as stage
    from tabpipe.artifacts import Meta
    from tabpipe.config import PipelineConfig
    from tabpipe.deploy import parse_target
    from tabpipe.guard import stage_guard

    cfg = PipelineConfig.from_parameter(config_json)
    files = stage.ModelFiles(
        model=model.path,
        model_sha256=model.metadata[Meta.SHA256],
        classes_json=model.metadata[Meta.CLASSES_JSON],
        onnx_model=onnx_model.path,
        onnx_sha256=onnx_model.metadata.get(Meta.ONNX_SHA256),
        onnx_reason=onnx_model.metadata.get(Meta.ONNX_REASON),
    )
    with stage_guard("deploy", mlflow_tracking_uri, cfg.experiment_name):
        result = stage.run(
            cfg,
            mlflow_tracking_uri,
            files,
            version,
            bundle.path,
            target=parse_target(deploy_target),
            serving_url=serving_url,
            test=test.path,
        )
    bundle.metadata.update(result.metadata())
