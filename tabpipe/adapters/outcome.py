"""Outcome adapter (the exit handler): record how a pipeline run ended."""

from __future__ import annotations

import logging

from tabpipe.config import PipelineConfig

log = logging.getLogger(__name__)

#: KFP's final state of a task that ran to the end.
SUCCEEDED = "SUCCEEDED"


def run(
    config: PipelineConfig,
    tracking_uri: str,
    kfp_run_id: str,
    state: str,
    task_name: str,
    error_message: str | None,
) -> None:
    """Record the outcome; a failure a stage already recorded is not recorded twice."""
    from tabpipe.tracking import failure_records, record_outcome

    if state == SUCCEEDED:
        record_outcome(tracking_uri, config.experiment_name, kfp_run_id, "succeeded")
        return
    known = failure_records(tracking_uri, config.experiment_name, kfp_run_id)
    if known:
        log.warning("run failed at stage '%s': %s", known[0]["stage"], known[0]["reason"])
        return
    reason = error_message or f"task {task_name} ended {state}"
    record_outcome(
        tracking_uri, config.experiment_name, kfp_run_id, "failed", failed_stage=task_name, reason=reason
    )
