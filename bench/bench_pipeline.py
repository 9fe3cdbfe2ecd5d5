"""Benchmark the pipeline's cost against the search it exists to run.

Three peers, each a fresh interpreter (so imports count alike), alternating in every
repeat so machine noise hits all of them:

- ``search``: the bare search, the baseline (split, RandomizedSearchCV over the
  candidates, test predictions; ``bench/pipeline_modes.py``);
- ``in-process``: every stage adapter in sequence in one process;
- ``kfp-local``: the compiled pipeline through KFP's SubprocessRunner, caching off.

Then a cached re-run (nothing changed). Prints medians, per-stage times and the two
ratios against the bare search from the same run, and writes JSON. A real MLflow
server is started on a free loopback port with its own state.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabpipe.config import load_config
from tabpipe.local_run import run_pipeline
from tabpipe.mlflow_server import start_server, stop_server

MODES = ("search", "in-process", "kfp-local")
TARGETS = {"in-process": 1.3, "kfp-local": 1.6}
HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_mode(mode: str, config: Path, tracking_uri: str, workdir: Path) -> dict:
    """One run of ``mode`` in a fresh interpreter; wall time measured from before it starts."""
    command = [sys.executable, str(HERE / "pipeline_modes.py"), mode, "--config", str(config)]
    command += ["--tracking-uri", tracking_uri, "--workdir", str(workdir)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"total": wall, "stages": result["stages"]}


def main() -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/phishing.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(".state/bench/pipeline.json"))
    args = parser.parse_args()
    config = load_config(args.config)

    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    cached: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tabpipe-bench-") as tmp:
        root = Path(tmp)
        server = start_server(f"http://127.0.0.1:{_free_port()}", root / "mlflow")
        try:
            for i in range(args.repeats):
                order = MODES[i % len(MODES) :] + MODES[: i % len(MODES)]  # rotate who goes first
                for mode in order:
                    runs[mode].append(run_mode(mode, args.config, server.url, root / f"{mode}-{i}"))
                state = root / f"cached-{i}"
                run_pipeline(config, server.url, state, enable_caching=True, quiet=True)
                again = run_pipeline(config, server.url, state, enable_caching=True, quiet=True)
                cached.append(again.seconds)
                print(
                    f"repeat {i + 1}/{args.repeats}: "
                    + ", ".join(f"{m} {runs[m][-1]['total']:.1f}s" for m in MODES)
                    + f", cached re-run {cached[-1]:.1f}s",
                    flush=True,
                )
        finally:
            stop_server(server)

    median = statistics.median
    totals = {mode: median(r["total"] for r in runs[mode]) for mode in MODES}
    baseline = totals["search"]
    ratios = {mode: totals[mode] / baseline for mode in TARGETS}
    stage_names = list(runs["kfp-local"][0]["stages"])
    rows = [
        {
            "stage": name,
            "kfp_local_s": round(median(r["stages"].get(name, float("nan")) for r in runs["kfp-local"]), 2),
            "in_process_s": round(median(r["stages"].get(name, float("nan")) for r in runs["in-process"]), 2),
        }
        for name in stage_names
    ]
    report = {
        "config": str(args.config),
        "repeats": args.repeats,
        "totals_s": {mode: round(value, 2) for mode, value in totals.items()},
        "ratios_vs_search": {mode: round(value, 3) for mode, value in ratios.items()},
        "cached_rerun_s": round(median(cached), 2),
        "stages": rows,
        "raw": {"runs": runs, "cached": cached},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(f"\nmedians over {args.repeats} repeats ({args.config}):")
    print("| stage | kfp.local (s) | in-process (s) |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['stage']} | {row['kfp_local_s']:.2f} | {row['in_process_s']:.2f} |")
    print(f"| **total** | **{totals['kfp-local']:.1f}** | **{totals['in-process']:.1f}** |")
    print(f"\nbare search (baseline): {baseline:.1f}s")
    for mode, target in TARGETS.items():
        verdict = "met" if ratios[mode] <= target else "MISSED"
        print(f"{mode} / search: {ratios[mode]:.2f}x (target <= {target}x, {verdict})")
    print(f"cached re-run: {median(cached):.1f}s")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
