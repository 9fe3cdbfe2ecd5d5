"""One measured run of the pipeline in one of three modes, in a fresh interpreter (imports count).

- ``search``: the bare search, the baseline: read and split the data, ``RandomizedSearchCV``
  over every candidate (the project's own search), test-split predictions. Nothing else.
- ``in-process``: every stage adapter in sequence in this one process, against MLflow.
- ``kfp-local``: the compiled pipeline through ``kfp.local`` (one subprocess per task).

Prints one JSON line: ``{"mode", "seconds", "stages": {name: seconds}}``. ``seconds`` is
measured from interpreter start (``time.perf_counter`` at the top of this file plus the
process start the caller measures), so the three modes compare like for like.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 (the clock starts before any import)
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def bare_search(config_path: Path) -> dict[str, float]:
    """Imports, split, the search over every candidate, test predictions."""
    from tabpipe.config import load_config
    from tabpipe.features import split_xy
    from tabpipe.stages.ingest import ingest
    from tabpipe.stages.train import train

    config = load_config(config_path)
    splits = ingest(config).splits
    started = time.perf_counter()
    result = train(config, splits.train, splits.validation)
    searched = time.perf_counter()
    features, _ = split_xy(splits.test, config)
    result.best.model.predict(features)
    return {"search": searched - started, "predict": time.perf_counter() - searched}


def in_process(config_path: Path, tracking_uri: str, workdir: Path) -> dict[str, float]:
    """Every stage adapter in sequence; returns seconds per stage."""
    from bench_stages import run_stages

    from tabpipe.config import load_config

    return run_stages(load_config(config_path), tracking_uri, workdir)


def kfp_local(config_path: Path, tracking_uri: str, workdir: Path) -> dict[str, float]:
    """The compiled pipeline through kfp.local, caching off."""
    from tabpipe.config import load_config
    from tabpipe.local_run import run_pipeline

    summary = run_pipeline(load_config(config_path), tracking_uri, workdir, enable_caching=False, quiet=True)
    if not summary.succeeded:
        raise SystemExit(f"pipeline failed: {summary.failure_stage}: {summary.failure_reason}")
    return {s.name: s.seconds for s in summary.stages}


def main() -> int:
    """Run one mode and print its timings as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["search", "in-process", "kfp-local"])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.mode == "search":
        stages = bare_search(args.config)
    elif args.mode == "in-process":
        stages = in_process(args.config, args.tracking_uri, args.workdir)
    else:
        stages = kfp_local(args.config, args.tracking_uri, args.workdir)
    print(json.dumps({"mode": args.mode, "seconds": time.perf_counter() - STARTED, "stages": stages}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
