"""The stage guard: turns expected failures into one clear message and a record.

Every component body runs inside :func:`stage_guard`. A :class:`TabpipeError`
(bad config, bad data, drift, an unreachable service) is logged as a single
message naming the stage, recorded in MLflow as the run's failure (stage and
reason) when the tracking server is reachable, and ends the task with exit
code 1 instead of a traceback. Unexpected exceptions still propagate with
their traceback, because those are bugs to debug.

The pipeline run's id comes from the environment (:mod:`tabpipe.run_id`), not
from a parameter, so that KFP's cache can serve a task again in a later run; the
guard yields it to the body.

Nothing is retried here or by KFP: every expected failure but an unreachable
service is deterministic, and the service's transient errors are retried inside
the MLflow client (bounded by :func:`tabpipe.tracking.configure_http_client`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from tabpipe.errors import ConfigError, ServiceError, TabpipeError
from tabpipe.log import configure_logging
from tabpipe.mlflow_server import is_healthy
from tabpipe.run_id import current_run_id
from tabpipe.tracking import configure_http_client, service_error

log = logging.getLogger(__name__)

FAILURE_EXIT_CODE = 1


@contextmanager
def stage_guard(
    stage: str, tracking_uri: str, experiment: str, kfp_run_id: str | None = None
) -> Iterator[str]:
    """Run a stage body; on an expected failure, report, record and exit 1.

    Args:
        stage: The stage's name, as failure records and messages show it.
        tracking_uri: MLflow, where a failure is recorded.
        experiment: The MLflow experiment of the record.
        kfp_run_id: The pipeline run's id; by default the one in the environment
            (:func:`tabpipe.run_id.current_run_id`). A missing id ends the task
            with one message, before the body runs.

    Yields:
        The pipeline run's id, for the body's tags.
    """
    configure_logging()
    # Bounded MLflow HTTP retries for everything the body does: the only retries there are.
    configure_http_client()
    if kfp_run_id is None:
        try:
            kfp_run_id = current_run_id()
        except ConfigError as exc:
            # Nothing can be recorded without the id the record is filed under.
            log.error("stage '%s' failed: %s", stage, exc)
            raise SystemExit(FAILURE_EXIT_CODE) from None
    try:
        yield kfp_run_id
    except TabpipeError as exc:
        _fail(exc, stage, tracking_uri, experiment, kfp_run_id)
    except Exception as exc:
        # The MLflow client's own errors for an unreachable server are a service error,
        # classified here once, so the message names the endpoint rather than a traceback.
        unreachable = service_error(exc, tracking_uri)
        if unreachable is not None:
            _fail(unreachable, stage, tracking_uri, experiment, kfp_run_id)
        # A bug, not bad input: keep the traceback, but still record where it happened.
        _record(stage, tracking_uri, experiment, kfp_run_id, f"unexpected {type(exc).__name__}: {exc}")
        raise


def _fail(exc: TabpipeError, stage: str, tracking_uri: str, experiment: str, kfp_run_id: str) -> NoReturn:
    """One message, one failure record, exit 1; never a retry (KFP retries nothing either)."""
    exc.stage = stage
    log.error("stage '%s' failed: %s", stage, exc)
    _record(stage, tracking_uri, experiment, kfp_run_id, str(exc), unreachable=isinstance(exc, ServiceError))
    raise SystemExit(FAILURE_EXIT_CODE) from None


def _record(
    stage: str, tracking_uri: str, experiment: str, kfp_run_id: str, reason: str, *, unreachable: bool = False
) -> None:
    """Record a stage failure in MLflow, best effort: the failure itself must still surface.

    When the failure is that MLflow is unreachable, one quick look is enough: the body
    already waited out the bounded retries, so recording does not retry again.
    """
    try:
        from tabpipe.tracking import record_outcome

        if unreachable and not is_healthy(tracking_uri):
            log.warning("could not record the failure in MLflow: %s is not reachable", tracking_uri)
            return
        record_outcome(tracking_uri, experiment, kfp_run_id, "failed", failed_stage=stage, reason=reason)
    except Exception as record_exc:  # noqa: BLE001 (recording must never mask the real failure)
        log.warning("could not record the failure in MLflow: %s", record_exc)
