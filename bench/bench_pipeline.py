"""Benchmark the local pipeline: wall time, per-stage time, orchestration overhead, cached re-run.

Peers measured in the same run, alternating, so machine noise hits both:
- ``kfp.local``: the compiled pipeline through KFP's SubprocessRunner, caching off;
- ``in-process``: the same stage functions (tabpipe.tasks) called one after another in this process;
- ``cached``: the same pipeline again with caching on and nothing changed.

Prints medians and the overhead ratio (kfp.local / in-process) and writes JSON.
A real MLflow server is started on a free loopback port with its own state.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tabpipe.config import PipelineConfig, load_config
from tabpipe.local_run import run_pipeline
from tabpipe.mlflow_server import start_server, stop_server
from tabpipe.tracking import RunContext
from tabpipe.version import code_version


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_in_process(config: PipelineConfig, tracking_uri: str, workdir: Path) -> dict[str, float]:
    """Every stage function in sequence in this process; returns seconds per stage."""
    from tabpipe import tasks
    from tabpipe.tracking import record_outcome

    workdir.mkdir(parents=True, exist_ok=True)
    p = {
        name: workdir / name
        for name in (
            "train",
            "validation",
            "test",
            "ctrain",
            "cvalidation",
            "ctest",
            "report.json",
            "report.md",
            "preprocessor",
            "features.md",
            "model",
            "model.onnx",
            "eval.md",
            "blessing.json",
            "bundle",
        )
    }
    times: dict[str, float] = {}

    def timed(stage: str, fn, *args):
        started = time.perf_counter()
        result = fn(*args)
        times[stage] = time.perf_counter() - started
        return result

    meta = timed("ingest", tasks.run_ingest, config, p["train"], p["validation"], p["test"])
    outputs = tasks.ValidateOutputs(
        p["ctrain"], p["cvalidation"], p["ctest"], p["report.json"], p["report.md"]
    )
    vmeta = timed("validate", tasks.run_validate, config, p["train"], p["validation"], p["test"], outputs)
    tmeta = timed("transform", tasks.run_transform, config, p["ctrain"], p["preprocessor"], p["features.md"])
    ctx = RunContext(
        tracking_uri,
        meta["data_version"],
        vmeta["contract_hash"],
        config.fingerprint(),
        code_version(),
        "bench-in-process",
    )
    model = timed(
        "train",
        tasks.run_train,
        config,
        ctx,
        p["ctrain"],
        p["cvalidation"],
        p["preprocessor"],
        tmeta["sha256"],
        p["model"],
        p["model.onnx"],
    )
    result = timed(
        "evaluate",
        tasks.run_evaluate,
        config,
        tracking_uri,
        p["model"],
        model["sha256"],
        model["mlflow_run_id"],
        p["ctest"],
        p["eval.md"],
        p["blessing.json"],
        p["model.onnx"],
        model.get("onnx_sha256"),
    )
    if result.blessed:
        version = timed(
            "register",
            tasks.run_register,
            config,
            ctx,
            model["mlflow_model_uri"],
            model["mlflow_run_id"],
            model["sha256"],
        )
        timed(
            "deploy",
            tasks.run_deploy,
            config,
            tracking_uri,
            p["model"],
            model["sha256"],
            model["classes_json"],
            version,
            p["bundle"],
            p["model.onnx"],
            model.get("onnx_sha256"),
        )
    timed(
        "record-outcome",
        record_outcome,
        tracking_uri,
        config.experiment_name,
        "bench-in-process",
        "succeeded",
    )
    return times


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/phishing.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(".state/bench/pipeline.json"))
    args = parser.parse_args()
    config = load_config(args.config)

    with tempfile.TemporaryDirectory(prefix="tabpipe-bench-") as tmp:
        root = Path(tmp)
        server = start_server(f"http://127.0.0.1:{_free_port()}", root / "mlflow")
        try:
            kfp_runs, inproc_runs, cached_runs = [], [], []
            for i in range(args.repeats):
                # Alternate the peers so drift in machine load affects both alike.
                started = time.perf_counter()
                stages = run_in_process(config, server.url, root / f"inproc-{i}")
                inproc_runs.append({"total": time.perf_counter() - started, "stages": stages})

                summary = run_pipeline(
                    config, server.url, root / f"kfp-{i}", enable_caching=False, quiet=True
                )
                if not summary.succeeded:
                    print(
                        f"pipeline failed: {summary.failure_stage}: {summary.failure_reason}", file=sys.stderr
                    )
                    return 1
                kfp_runs.append(
                    {"total": summary.seconds, "stages": {s.name: s.seconds for s in summary.stages}}
                )

                state = root / f"cached-{i}"
                run_pipeline(config, server.url, state, enable_caching=True, quiet=True)
                again = run_pipeline(config, server.url, state, enable_caching=True, quiet=True)
                cached_runs.append({"total": again.seconds, "cached": sum(s.cached for s in again.stages)})
                print(
                    f"repeat {i + 1}/{args.repeats}: kfp.local {kfp_runs[-1]['total']:.1f}s, "
                    f"in-process {inproc_runs[-1]['total']:.1f}s, "
                    f"cached re-run {cached_runs[-1]['total']:.1f}s",
                    flush=True,
                )
        finally:
            stop_server(server)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    kfp_total = median([r["total"] for r in kfp_runs])
    inproc_total = median([r["total"] for r in inproc_runs])
    cached_total = median([r["total"] for r in cached_runs])
    stage_names = list(kfp_runs[0]["stages"])
    rows = []
    for name in stage_names:
        kfp_s = median([r["stages"].get(name, float("nan")) for r in kfp_runs])
        in_s = median([r["stages"].get(name, float("nan")) for r in inproc_runs])
        rows.append({"stage": name, "kfp_local_s": round(kfp_s, 2), "in_process_s": round(in_s, 2)})
    report = {
        "config": str(args.config),
        "repeats": args.repeats,
        "kfp_local_total_s": round(kfp_total, 2),
        "in_process_total_s": round(inproc_total, 2),
        "overhead_ratio": round(kfp_total / inproc_total, 3),
        "cached_rerun_s": round(cached_total, 2),
        "stages": rows,
        "raw": {"kfp_local": kfp_runs, "in_process": inproc_runs, "cached": cached_runs},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(f"\nmedians over {args.repeats} repeats ({args.config}):")
    print("| stage | kfp.local (s) | in-process (s) |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['stage']} | {row['kfp_local_s']:.2f} | {row['in_process_s']:.2f} |")
    print(f"| **total** | **{kfp_total:.1f}** | **{inproc_total:.1f}** |")
    print(
        f"\norchestration overhead (kfp.local / in-process): {kfp_total / inproc_total:.2f}x (target <= 1.5x)"
    )
    print(f"cached re-run: {cached_total:.1f}s (target <= 15 s)")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
