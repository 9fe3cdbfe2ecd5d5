"""The ``tabpipe`` command: run, infer-schema, validate, compile.

Expected failures print one clear message and exit non-zero; tracebacks are
reserved for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from tabpipe.errors import ConfigError, TabpipeError
from tabpipe.log import configure_logging

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("configs/phishing.yaml")
DEFAULT_STATE_DIR = Path(".state")
EXIT_FAILED = 1
EXIT_USAGE = 2


def _describe(what: str, handle: object) -> str:
    """One line saying which server a run uses and whose it is."""
    url, started, pid = handle.url, handle.started, handle.pid  # type: ignore[attr-defined]
    if started:
        log_path = handle.log_path  # type: ignore[attr-defined]
        return f"{what}: {url} (started now, pid {pid}, log {log_path}; stop: make {what}-down)"
    if pid is not None:
        return f"{what}: {url} (started earlier by this project, pid {pid})"
    return f"{what}: {url} (not started by this project; reused as asked)"


def _check_state_dir(state_dir: Path) -> None:
    """Fail with one message unless the state folder can be created and written.

    Checked before anything starts (the MLflow server, the serving endpoint, the
    pipeline all write there): a read-only, full or foreign folder would otherwise
    surface as a traceback from whichever writes first, after servers were started.
    A small probe file is written and deleted.

    Raises:
        StorageError: naming the folder and the reason (read-only file system, no
            space left, permission denied, ...).
    """
    import os

    from tabpipe.errors import StorageError

    probe = state_dir / f".tabpipe-write-probe-{os.getpid()}"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"tabpipe")
        probe.unlink()
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise StorageError(
            f"state folder {state_dir} is not writable ({reason}): could not write {probe}; "
            "free some space, fix its permissions or pass --state-dir a writable folder"
        ) from None


def _onto_minio(config: object, args: argparse.Namespace) -> tuple[object, object]:
    """Start (or reuse) MinIO, put the source data on it, and point the run at it.

    The tasks inherit the store's endpoint and the path of the 0600 credentials file
    (never the secret itself, unless it came from the environment already); deploy
    pushes bundles to the models bucket.
    """
    import os

    from tabpipe.io import open_source, sha256_bytes
    from tabpipe.minio_server import DATA_BUCKET, MODELS_BUCKET, ensure_minio
    from tabpipe.objectstore import upload_atomic

    running = ensure_minio(
        args.minio_binary, args.minio_address, args.minio_console_address, args.state_dir / "minio",
        reuse=args.reuse_servers,
    )  # fmt: skip
    print(_describe("minio", running.handle), flush=True)
    os.environ.update(running.task_env())
    source = config.source  # type: ignore[attr-defined]
    if not source.uri.startswith("s3://"):
        data = open_source(source.uri)
        key = f"{config.name}/{Path(source.uri).name}"  # type: ignore[attr-defined]
        upload_atomic(running.settings, DATA_BUCKET, key, data)
        source = source.model_copy(update={"uri": f"s3://{DATA_BUCKET}/{key}"})
        print(f"data: {source.uri} (sha256 {sha256_bytes(data)[:12]}…)", flush=True)
    registry = config.registry.model_copy(update={"bundle_store": f"s3://{MODELS_BUCKET}"})  # type: ignore[attr-defined]
    return config.model_copy(update={"source": source, "registry": registry}), running  # type: ignore[attr-defined]


def _cmd_run(args: argparse.Namespace) -> int:
    from tabpipe.config import load_config
    from tabpipe.local_run import format_summary, run_pipeline
    from tabpipe.mlflow_server import ensure_server

    config = load_config(args.config)
    _check_state_dir(args.state_dir)
    if args.runner == "docker":
        from components.image import BASE_IMAGE
        from tabpipe.docker_runner import check_engine_and_image

        check_engine_and_image(BASE_IMAGE, args.docker_host)  # before any server is started
    s3 = None
    mlflow_state = args.state_dir / "mlflow"
    if args.store == "minio":
        config, running = _onto_minio(config, args)
        s3 = running.mlflow_artifacts()
        # Its own state: a server keeping artifacts on local disk must not be taken for this one.
        mlflow_state = args.state_dir / "mlflow-minio"
    server = ensure_server(args.tracking_uri, mlflow_state, reuse=args.reuse_servers, s3=s3)
    print(_describe("mlflow", server), flush=True)
    serving_url = None
    if not args.no_serve:
        import os

        from tabpipe.serving.launcher import TOKEN_FILE_ENV, ensure_serving, token_file

        serving = ensure_serving(
            args.serving_url,
            config.registry.model_name,
            args.tracking_uri,
            args.state_dir / "serving",
            reuse=args.reuse_servers,
        )
        print(_describe("serve", serving), flush=True)
        # The deploy task reads the endpoint's admin token from this 0600 file (its path, not the secret).
        if token_file(args.state_dir / "serving").is_file():
            os.environ.setdefault(TOKEN_FILE_ENV, str(token_file(args.state_dir / "serving").resolve()))
        serving_url = args.serving_url
    summary = run_pipeline(
        config,
        args.tracking_uri,
        args.state_dir,
        enable_caching=not args.no_cache,
        serving_url=serving_url,
        runner=args.runner,
        docker_host=args.docker_host,
    )
    print(format_summary(summary))
    if serving_url is not None and summary.served_version:
        from tabpipe.serving.launcher import remember_model

        # A restarted endpoint serves this model again, beside the other data sets' models.
        remember_model(args.state_dir / "serving", config.registry.model_name)
    return 0 if summary.succeeded else EXIT_FAILED


def _read_data(path: Path) -> object:
    from tabpipe.config import SourceConfig
    from tabpipe.io import read_table

    source = SourceConfig(uri=str(path))
    frame, _ = read_table(source.uri, source.resolved_format)
    return frame


def _cmd_infer_schema(args: argparse.Namespace) -> int:
    from tabpipe.contract import dump_contract
    from tabpipe.contract.infer import draft_contract

    frame = _read_data(args.data)
    draft = draft_contract(frame, name=args.name or args.data.stem)
    contract = draft.contract
    header = "# Drafted by `tabpipe infer-schema`: review every rule before relying on it.\n"
    # The flags go into the YAML as comments too, so they travel with the draft.
    header += "".join(f"# - {note}\n" for note in draft.notes)
    text = header + dump_contract(contract)
    # The summary goes to stderr when the YAML itself is on stdout.
    summary = sys.stdout if args.out else sys.stderr
    for note in draft.notes:
        print(f"  {note}", file=summary)
    if args.out:
        if args.out.exists() and not args.force:
            raise ConfigError(f"{args.out} exists; pass --force to overwrite it")
        if not args.out.parent.is_dir():
            raise ConfigError(f"--out {args.out}: folder {args.out.parent} does not exist")
        args.out.write_text(text)
        print(f"wrote {args.out} ({len(contract.columns)} columns)")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import json

    from tabpipe.config import load_config
    from tabpipe.stages.validate import validate_frame

    config = load_config(args.config)
    data = args.data or Path(config.source.uri)
    frame = _read_data(data)
    reference = _read_data(Path(config.drift.reference_uri)) if config.drift.reference_uri else None
    if args.report and not args.report.parent.is_dir():
        raise ConfigError(f"--report {args.report}: folder {args.report.parent} does not exist")
    report = validate_frame(frame, config, reference, dataset=str(data))
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), indent=2))
    print(report.to_markdown())
    return 0 if report.passed else EXIT_FAILED


def _kfp_api(args: argparse.Namespace) -> object:
    from tabpipe.kfp_client import KfpApi

    return KfpApi(args.host, ui_url=args.ui_url)


def _cmd_submit(args: argparse.Namespace) -> int:
    """One run on the cluster, followed to its end: exit 0 only for SUCCEEDED (codes in tabpipe.submit)."""
    from tabpipe.config import load_config
    from tabpipe.submit import EXIT_INTERRUPTED, describe_end, submit, wait_for_run

    if args.timeout <= 0 or args.poll_interval <= 0:
        raise ConfigError("--timeout and --poll-interval must be positive (seconds); --no-wait to not wait")
    config = load_config(args.config)
    api = _kfp_api(args)
    run_id = submit(api, config, args.tracking_uri, args.image_root, args.package)  # type: ignore[arg-type]
    url = api.run_url(run_id)  # type: ignore[attr-defined]
    print(f"submitted run {run_id} to {args.host} (experiment {config.experiment_name!r})")
    print(f"run: {url}", flush=True)
    if args.no_wait:
        return 0
    try:
        end = wait_for_run(
            api,  # type: ignore[arg-type]
            run_id,
            args.timeout,
            args.poll_interval,
            on_state=lambda state: print(f"  state: {state}", flush=True),
        )
    except KeyboardInterrupt:
        print(f"stopped waiting; run {run_id} keeps running: {url}", file=sys.stderr)
        return EXIT_INTERRUPTED
    line = describe_end(end, url)
    if end.exit_code == 0:
        print(line)
    else:
        print(f"error: {line}", file=sys.stderr)
    return end.exit_code


def _cmd_upload(args: argparse.Namespace) -> int:
    from tabpipe.submit import upload

    api = _kfp_api(args)
    uploaded = upload(api, args.package, args.code_version)  # type: ignore[arg-type]
    print(
        f"pipeline {uploaded.pipeline_id}{' (created)' if uploaded.created_pipeline else ''}: version "
        f"{uploaded.version_name} ({uploaded.version_id}) "
        + ("uploaded" if uploaded.created_version else "already uploaded, reused")
    )
    print(f"start a run: {api.pipeline_version_url(uploaded.pipeline_id, uploaded.version_id)}")  # type: ignore[attr-defined]
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from tabpipe.config import load_config
    from tabpipe.submit import check_cron, schedule

    check_cron(args.cron)  # before anything is uploaded
    config = load_config(args.config)
    api = _kfp_api(args)
    done = schedule(
        api,  # type: ignore[arg-type]
        config,
        args.cron,
        args.tracking_uri,
        args.image_root,
        name=args.name,
        package=args.package,
    )
    version = done.uploaded
    print(
        f"pipeline version {version.version_name} ({version.version_id}) "
        + ("uploaded" if version.created_version else "already uploaded, reused")
    )
    deleted = f"; deleted {', '.join(done.deleted)}" if done.deleted else ""
    print(f"recurring run {done.name!r} ({done.recurring_run_id}) {done.action}: cron {done.cron!r}{deleted}")
    print(f"schedule: {api.recurring_run_url(done.recurring_run_id)}")  # type: ignore[attr-defined]
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from tabpipe.serving.__main__ import serve

    return serve(args)


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    import requests

    from tabpipe.config import load_config
    from tabpipe.deploy import admin_token

    config = load_config(args.config)
    frame = _read_data(Path(config.source.uri)).head(args.rows)
    # Only a server started with --require-token-for-inference needs it; sent when one is configured.
    token = admin_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    model_url = f"{args.url}/v2/models/{config.registry.model_name}"
    if args.model_version:
        from urllib.parse import quote

        model_url += f"/versions/{quote(args.model_version, safe='')}"
    spec_inputs = requests.get(model_url, timeout=10, headers=headers)
    if spec_inputs.status_code != 200:
        wanted = config.registry.model_name + (f" version {args.model_version}" if args.model_version else "")
        raise TabpipeError(f"no model {wanted!r} at {args.url}: HTTP {spec_inputs.status_code}")
    names = [i["name"] for i in spec_inputs.json()["inputs"]]
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": name,
                "datatype": "BYTES" if frame[name].dtype.kind in "OUS" else "FP64",
                "shape": [len(frame)],
                "data": [None if v != v else v for v in frame[name].tolist()],
            }
            for name in names
        ],
    }
    answer = requests.post(f"{model_url}/infer", json=body, timeout=30, headers=headers)
    print(json.dumps(answer.json(), indent=2))
    return 0 if answer.status_code == 200 else EXIT_FAILED


def _cmd_score(args: argparse.Namespace) -> int:
    from tabpipe.serving.batch import score_file

    summary = score_file(
        args.model, args.input, args.output, tracking_uri=args.tracking_uri, chunk_rows=args.chunk_rows
    )
    print(
        f"scored {summary.rows} row(s) in {summary.chunks} chunk(s) with {summary.model_name} "
        f"version {summary.version or '-'} ({summary.predictor}) -> {summary.output}"
    )
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from pipelines.training import compile_pipeline

    path = compile_pipeline(args.out) if args.out else compile_pipeline()
    print(f"compiled pipeline to {path}")
    return 0


def _cluster_context(args: argparse.Namespace):
    from tabpipe.cluster_deploy import rollout
    from tabpipe.cluster_deploy.objects import ClusterTarget, object_name
    from tabpipe.config import load_config

    config = load_config(args.config)
    return config, rollout.Cluster.connect(args.kubeconfig), ClusterTarget(args.target), object_name(
        config.registry.model_name
    )


def _cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy a registered version to a cluster target (outside the pipeline), then move its alias."""
    from tabpipe.adapters.deploy import cluster_release
    from tabpipe.cluster_deploy import rollout
    from tabpipe.cluster_deploy.portforward import forwarded
    from tabpipe.deploy import smoke_test
    from tabpipe.features import split_xy
    from tabpipe.io import open_source, parse_table
    from tabpipe.objectstore import read_bytes
    from tabpipe.serving_spec import ServingSpec
    from tabpipe.tracking import promote, set_canary

    config, cluster, target, _ = _cluster_context(args)
    if not config.registry.bundle_store:
        raise ConfigError("registry.bundle_store: the cluster targets serve bundles from object storage")
    bundle_uri = f"{config.registry.bundle_store.rstrip('/')}/{config.registry.model_name}/{args.version}"
    spec = ServingSpec.model_validate_json(read_bytes(f"{bundle_uri}/bundle.json"))
    source = config.source
    data = open_source(source.uri)
    frame = parse_table(data, source.resolved_format, source.uri, config.contract.na_values)
    rows, _ = split_xy(frame.dropna(subset=[config.target]).head(20), config)

    def check(url: str, version: str) -> None:
        if args.smoke_url:
            smoke_test(args.smoke_url, spec, version, rows)
            return
        with forwarded(url, args.kubeconfig) as local:
            smoke_test(local, spec, version, rows)

    canary = args.canary_percent if args.canary_percent is not None else config.cluster.canary_percent
    outcome = rollout.deploy(
        cluster, target, cluster_release(config, args.version, bundle_uri), check, canary_percent=canary,
        timeout=config.cluster.rollout_timeout_seconds,
    )
    if outcome.canary:
        set_canary(args.tracking_uri, config.registry.model_name, args.version)
        beside = outcome.previous.version if outcome.previous else "-"
        print(
            f"version {args.version} serves {canary}% beside version {beside} on {target.value} "
            f"{outcome.namespace}/{outcome.name}: make promote or make rollback"
        )
    else:
        promote(args.tracking_uri, config.registry.model_name, args.version)
        where = f"{target.value} {outcome.namespace}/{outcome.name}"
        print(f"version {args.version} serves on {where}; champion moved")
    return 0


def _cmd_canary(args: argparse.Namespace) -> int:
    """Promote or roll back the canary in progress, and move the aliases to match."""
    from tabpipe.adapters.deploy import cluster_release
    from tabpipe.cluster_deploy import rollout
    from tabpipe.tracking import clear_canary, promote

    config, cluster, target, name = _cluster_context(args)
    namespace = config.cluster.namespace

    def release_of(served: rollout.Served):
        return cluster_release(config, served.version, served.bundle_uri)

    timeout = config.cluster.rollout_timeout_seconds
    if args.action == "promote":
        state = rollout.promote(cluster, target, release_of, name, namespace, timeout)
        promote(args.tracking_uri, config.registry.model_name, state.canary.version)
        clear_canary(args.tracking_uri, config.registry.model_name)
        print(f"promoted version {state.canary.version} (was {state.stable.version}); champion moved")
    else:
        state = rollout.rollback(cluster, target, release_of, name, namespace, timeout)
        clear_canary(args.tracking_uri, config.registry.model_name)
        print(f"rolled back canary version {state.canary.version}; {state.stable.version} serves alone")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    from tabpipe.mlflow_server import DEFAULT_TRACKING_URI
    from tabpipe.serving.launcher import DEFAULT_SERVING_URL

    parser = argparse.ArgumentParser(
        prog="tabpipe", description="End-to-end tabular ML pipeline on Kubeflow."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole pipeline locally with kfp.local")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config YAML")
    run.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow tracking server")
    run.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="local outputs and MLflow state"
    )
    run.add_argument("--no-cache", action="store_true", help="re-run every step")
    run.add_argument(
        "--serving-url",
        default=DEFAULT_SERVING_URL,
        help="OIP endpoint to deploy to (started if none answers): load, smoke-test, then promote",
    )
    run.add_argument("--no-serve", action="store_true", help="deploy to the registry only (no live endpoint)")
    run.add_argument(
        "--store",
        choices=["local", "minio"],
        default="local",
        help="where data, MLflow artifacts and bundles live: local files, or MinIO (make run STORE=minio)",
    )
    run.add_argument(
        "--minio-binary", default=".tools/bin/minio", help="MinIO server binary (make minio builds it)"
    )
    run.add_argument("--minio-address", default="127.0.0.1:9000", help="MinIO API address (loopback)")
    run.add_argument("--minio-console-address", default="127.0.0.1:9001", help="MinIO console address")
    run.add_argument(
        "--reuse-servers",
        action="store_true",
        help="use an MLflow server or endpoint this project did not start (refused by default)",
    )
    run.add_argument(
        "--runner",
        choices=["subprocess", "docker"],
        default="subprocess",
        help="subprocess: each task in a subprocess of this venv; docker: each task in a container of the "
        "project image, as a cluster runs it (make run RUNNER=docker builds the image first)",
    )
    run.add_argument(
        "--docker-host",
        default=None,
        help="Docker engine for --runner docker (default: $DOCKER_HOST, else the default socket)",
    )
    run.set_defaults(func=_cmd_run)

    infer = sub.add_parser("infer-schema", help="draft a data contract from a data file")
    infer.add_argument("data", type=Path, help="CSV, Parquet or JSON file")
    infer.add_argument("--name", help="contract name (default: file stem)")
    infer.add_argument("--out", type=Path, help="write the YAML here instead of stdout")
    infer.add_argument("--force", action="store_true", help="overwrite --out")
    infer.set_defaults(func=_cmd_infer_schema)

    check = sub.add_parser(
        "validate", help="validate a data file against a config's contract and drift rules"
    )
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config YAML")
    check.add_argument("--data", type=Path, help="data file (default: the config's source)")
    check.add_argument("--report", type=Path, help="also write the JSON report here")
    check.set_defaults(func=_cmd_validate)

    from tabpipe.kfp_client import DEFAULT_HOST
    from tabpipe.submit import CLUSTER_TRACKING_URI, DEFAULT_CRON, IMAGE_ROOT

    def kfp_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--host", default=DEFAULT_HOST, help=f"KFP API and UI (default {DEFAULT_HOST})")
        command.add_argument("--ui-url", help="KFP UI base URL for the printed links (default: --host)")
        command.add_argument(
            "--package", type=Path, help="compiled pipeline (default: pipelines/training_pipeline.yaml)"
        )

    def run_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config YAML")
        command.add_argument(
            "--tracking-uri", default=CLUSTER_TRACKING_URI, help="MLflow as the pipeline pods reach it"
        )
        command.add_argument(
            "--image-root", default=IMAGE_ROOT, help="where the image holds configs/ and data/"
        )

    submit = sub.add_parser(
        "submit",
        help="run the compiled pipeline on a Kubeflow Pipelines cluster and wait for its end",
        description="Exit codes: 0 SUCCEEDED, 1 KFP API unreachable or refusing, 2 bad config or "
        "options, 3 FAILED, 4 ERROR, 5 CANCELED, 6 still running at --timeout, 7 SKIPPED, "
        "130 interrupted (the run keeps running).",
    )
    run_options(submit)
    kfp_options(submit)
    submit.add_argument("--no-wait", action="store_true", help="return once the run is created")
    submit.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for the run's end (default 3600)"
    )
    submit.add_argument("--poll-interval", type=float, default=10, help="seconds between status checks")
    submit.set_defaults(func=_cmd_submit)

    upload_cmd = sub.add_parser(
        "upload",
        help="upload the compiled pipeline to KFP as a pipeline version named by the code (idempotent)",
    )
    kfp_options(upload_cmd)
    upload_cmd.add_argument("--code-version", help="default: the installed code's version")
    upload_cmd.set_defaults(func=_cmd_upload)

    schedule_cmd = sub.add_parser(
        "schedule",
        help="retrain on a cron schedule: one KFP recurring run on the uploaded version (idempotent)",
    )
    run_options(schedule_cmd)
    kfp_options(schedule_cmd)
    schedule_cmd.add_argument(
        "--cron",
        default=DEFAULT_CRON,
        help=f"six fields, seconds first (default {DEFAULT_CRON!r}: Mondays 03:00), or @daily, @every 6h",
    )
    schedule_cmd.add_argument(
        "--name", help="recurring run name (default: tabpipe-training-<config>-retrain)"
    )
    schedule_cmd.set_defaults(func=_cmd_schedule)

    from tabpipe.serving.__main__ import add_arguments

    serve_cmd = sub.add_parser(
        "serve", help="serve a model bundle over the Open Inference Protocol (V2 REST)"
    )
    add_arguments(serve_cmd)
    serve_cmd.set_defaults(func=_cmd_serve)

    predict = sub.add_parser(
        "predict", help="send rows of a config's data to a running server and print the answer"
    )
    predict.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config YAML")
    predict.add_argument("--url", default=DEFAULT_SERVING_URL, help="server base URL")
    predict.add_argument("--rows", type=int, default=1, help="how many rows to send")
    predict.add_argument(
        "--model-version",
        help="ask this version (one kept by the server's --versions-per-model); default: the default one",
    )
    predict.set_defaults(func=_cmd_predict)

    score = sub.add_parser("score", help="batch-score a CSV/Parquet file into a predictions file, in chunks")
    score.add_argument("--model", required=True, help="deploy bundle directory, or models:/<name>@<alias>")
    score.add_argument(
        "--input", type=Path, required=True, help="CSV or Parquet file with the model's inputs"
    )
    score.add_argument("--output", type=Path, required=True, help="predictions file (.csv or .parquet)")
    score.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow, for models:/ URIs")
    score.add_argument("--chunk-rows", type=int, default=10_000, help="rows per chunk")
    score.set_defaults(func=_cmd_score)

    targets = ["seldon", "kserve", "plain"]
    deploy_cmd = sub.add_parser("deploy", help="deploy a registered version to a cluster (make deploy)")
    canary_cmd = sub.add_parser("canary", help="promote or roll back a canary (make promote/rollback)")
    canary_cmd.add_argument("action", choices=["promote", "rollback"])
    for cmd in (deploy_cmd, canary_cmd):
        cmd.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config YAML")
        cmd.add_argument("--target", choices=targets, required=True, help="serving stack in the cluster")
        cmd.add_argument("--kubeconfig", default=None, help="default: in-cluster, else ~/.kube/config")
        cmd.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow, for the aliases")
    deploy_cmd.add_argument("--version", required=True, help="registered model version to serve")
    deploy_cmd.add_argument("--canary-percent", type=int, default=None, help="overrides the config")
    deploy_cmd.add_argument(
        "--smoke-url", default=None, help="smoke-test here instead of through a kubectl port-forward"
    )
    deploy_cmd.set_defaults(func=_cmd_deploy)
    canary_cmd.set_defaults(func=_cmd_canary)

    comp = sub.add_parser("compile", help="compile the pipeline to YAML")
    comp.add_argument("--out", type=Path, help="output path (default: pipelines/training_pipeline.yaml)")
    comp.set_defaults(func=_cmd_compile)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tabpipe`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`tabpipe validate | head`): stop quietly, as other Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TabpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
