"""The stage guard: turns expected failures into one clear message and a record.

Every component body runs inside :func:`stage_guard`. A :class:`TabpipeError`
(bad config, bad data, drift, an unreachable service) is logged as a single
message naming the stage, recorded in MLflow as the run's failure (stage and
reason) when the tracking server is reachable, and ends the task with exit
code 1 instead of a traceback. Unexpected exceptions still propagate with
their traceback, because those are bugs to debug.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tabpipe.errors import TabpipeError
from tabpipe.log import configure_logging

log = logging.getLogger(__name__)

FAILURE_EXIT_CODE = 1


@contextmanager
def stage_guard(stage: str, tracking_uri: str, experiment: str, kfp_run_id: str) -> Iterator[None]:
    """Run a stage body; on an expected failure, report, record and exit 1."""
    configure_logging()
    try:
        yield
    except TabpipeError as exc:
        exc.stage = stage
        log.error("stage '%s' failed: %s", stage, exc)
        _record(stage, tracking_uri, experiment, kfp_run_id, str(exc))
        raise SystemExit(FAILURE_EXIT_CODE) from None
    except Exception as exc:
        # A bug, not bad input: keep the traceback, but still record where it happened.
        _record(stage, tracking_uri, experiment, kfp_run_id, f"unexpected {type(exc).__name__}: {exc}")
        raise


def _record(stage: str, tracking_uri: str, experiment: str, kfp_run_id: str, reason: str) -> None:
    """Record a stage failure in MLflow, best effort: the failure itself must still surface."""
    try:
        from tabpipe.tracking import record_outcome

        record_outcome(tracking_uri, experiment, kfp_run_id, "failed", failed_stage=stage, reason=reason)
    except Exception as record_exc:  # noqa: BLE001 (recording must never mask the real failure)
        log.warning("could not record the failure in MLflow: %s", record_exc)
