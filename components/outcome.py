"""Exit-handler component: records how the run ended."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def record_outcome(
    config_json: str, mlflow_tracking_uri: str, kfp_run_id: str, status: PipelineTaskFinalStatus
):
    """Record the run's outcome in MLflow; for a failure without a stage record, record what KFP knows."""
    from tabpipe.tasks import load
    from tabpipe.tracking import failure_records
    from tabpipe.tracking import record_outcome as record

    cfg = load(config_json)
    if status.state == "SUCCEEDED":
        record(mlflow_tracking_uri, cfg.experiment_name, kfp_run_id, "succeeded")
        return
    known = failure_records(mlflow_tracking_uri, cfg.experiment_name, kfp_run_id)
    if known:
        print(f"[tabpipe] run failed at stage '{known[0]['stage']}': {known[0]['reason']}")
        return
    reason = status.error_message or f"task {status.pipeline_task_name} ended {status.state}"
    record(
        mlflow_tracking_uri,
        cfg.experiment_name,
        kfp_run_id,
        "failed",
        failed_stage=status.pipeline_task_name,
        reason=reason,
    )
