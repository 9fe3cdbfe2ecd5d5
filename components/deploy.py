"""Deploy component."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy(
    config_json: str,
    mlflow_tracking_uri: str,
    kfp_run_id: str,
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
    from tabpipe.deploy import parse_target
    from tabpipe.guard import stage_guard
    from tabpipe.tasks import load, run_deploy

    cfg = load(config_json)
    with stage_guard("deploy", mlflow_tracking_uri, cfg.experiment_name, kfp_run_id):
        meta = run_deploy(
            cfg,
            mlflow_tracking_uri,
            model.path,
            model.metadata["sha256"],
            model.metadata["classes_json"],
            version,
            bundle.path,
            onnx_model.path,
            onnx_model.metadata.get("onnx_sha256"),
            target=parse_target(deploy_target),
            serving_url=serving_url,
            test=test.path,
        )
    bundle.metadata.update(meta)
