"""Transform component."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def transform(
    config_json: str,
    mlflow_tracking_uri: str,
    code_version: str,
    train: Input[Dataset],
    preprocessor: Output[Model],
    features: Output[Markdown],
):
    """Fit the imputation/encoding/scaling and engineered features on the training split."""
    from tabpipe.adapters import transform as stage
    from tabpipe.config import PipelineConfig
    from tabpipe.guard import stage_guard

    cfg = PipelineConfig.from_parameter(config_json)
    with stage_guard("transform", mlflow_tracking_uri, cfg.experiment_name):
        result = stage.run(cfg, train.path, preprocessor.path, features.path)
    preprocessor.metadata.update(result.metadata())
