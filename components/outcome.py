"""Exit-handler component: records how the run ended."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def record_outcome(config_json: str, mlflow_tracking_uri: str, status: PipelineTaskFinalStatus):
    """Record the run's outcome in MLflow; for a failure without a stage record, record what KFP knows."""
    from tabpipe.adapters import outcome as stage
    from tabpipe.config import PipelineConfig
    from tabpipe.run_id import current_run_id

    cfg = PipelineConfig.from_parameter(config_json)
    stage.run(
        cfg,
        mlflow_tracking_uri,
        current_run_id(),
        status.state,
        status.pipeline_task_name,
        status.error_message,
    )
