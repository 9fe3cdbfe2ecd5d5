"""Every stage adapter in sequence in one process: the pipeline without the orchestrator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabpipe.config import PipelineConfig

RUN_ID = "bench-in-process"


def run_stages(config: PipelineConfig, tracking_uri: str, workdir: Path) -> dict[str, float]:
    """Run ingest to deploy and the outcome record; return seconds per stage."""
    from tabpipe.adapters import deploy, evaluate, ingest, outcome, register, train, transform, validate
    from tabpipe.tracking import RunContext
    from tabpipe.version import code_version

    workdir.mkdir(parents=True, exist_ok=True)
    p = lambda name: workdir / name  # noqa: E731
    times: dict[str, float] = {}

    def timed(stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        times[stage] = time.perf_counter() - started
        return result

    raw = validate.Splits(p("train"), p("validation"), p("test"))
    clean = validate.Splits(p("ctrain"), p("cvalidation"), p("ctest"))
    ingested = timed("ingest", ingest.run, config, ingest.IngestOutputs(raw.train, raw.validation, raw.test))
    checked = timed(
        "validate", validate.run, config, raw, validate.ValidateOutputs(clean, p("r.json"), p("r.md"))
    )
    pre = timed("transform", transform.run, config, clean.train, p("preprocessor"), p("features.md"))
    ctx = RunContext(
        tracking_uri,
        ingested.data_version,
        checked.contract_hash,
        config.fingerprint(),
        code_version(),
        RUN_ID,
    )
    model = timed(
        "train",
        train.run,
        config,
        ctx,
        train.TrainInputs(clean.train, clean.validation, p("preprocessor"), pre.sha256),
        train.TrainOutputs(p("model"), p("model.onnx")),
    )
    result = timed(
        "evaluate",
        evaluate.run,
        config,
        tracking_uri,
        evaluate.EvaluateInputs(
            model=p("model"),
            model_sha256=model.sha256,
            mlflow_run_id=model.mlflow_run_id,
            test=clean.test,
            onnx_model=p("model.onnx"),
            onnx_sha256=model.onnx_sha256,
        ),
        evaluate.EvaluateOutputs(p("eval.md"), p("blessing.json")),
    )
    if result.blessed:
        version = timed(
            "register", register.run, config, ctx, model.mlflow_model_uri, model.mlflow_run_id, model.sha256
        )
        files = deploy.ModelFiles(
            p("model"), model.sha256, model.classes_json, p("model.onnx"), model.onnx_sha256
        )
        timed("deploy", deploy.run, config, tracking_uri, files, version, p("bundle"))
    timed("record-outcome", outcome.run, config, tracking_uri, RUN_ID, outcome.SUCCEEDED, "", None)
    return times
