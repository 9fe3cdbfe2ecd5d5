"""Run the model server: ``python -m tabpipe.serving --model <bundle dir | models:/name@alias>``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tabpipe.serving.launcher import DEFAULT_SERVE_PORT
from tabpipe.serving.validation import (
    DEFAULT_BODY_READ_SECONDS,
    DEFAULT_INFLIGHT_BODIES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_INFLIGHT,
    DEFAULT_MAX_LOADS_PER_MINUTE,
    DEFAULT_MAX_ROWS,
)

if TYPE_CHECKING:
    from tabpipe.serving.inference_log import InferenceLogConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of the server (shared with ``tabpipe serve``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tabpipe.serving",
        description="Serve a tabpipe model over the Open Inference Protocol.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's options to ``parser``."""
    parser.add_argument(
        "--model",
        required=True,
        action="append",
        dest="models",
        metavar="MODEL",
        help="deploy bundle directory, or models:/<name>@<alias>; repeat it to serve several models, "
        "each under its own name",
    )
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (for models:/ URIs)")
    parser.add_argument(
        "--digest",
        default=None,
        help="the bundle digest (sha256 of its manifest.json, e.g. the registry's tabpipe.bundle_digest "
        "tag) a single --model bundle directory must have; checked before the server starts",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_SERVE_PORT)
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve the Open Inference Protocol over gRPC on this port (same host, model and token)",
    )
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="rows per request")
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="request body size"
    )
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=DEFAULT_MAX_INFLIGHT,
        help="infer requests in progress at once (REST and gRPC); more answer 503 with Retry-After: 1",
    )
    parser.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=None,
        help="request bytes in progress at once (REST and gRPC); more answer 503 with Retry-After: 1 "
        f"(default: {DEFAULT_INFLIGHT_BODIES} x --max-body-bytes)",
    )
    parser.add_argument(
        "--body-read-seconds",
        type=float,
        default=DEFAULT_BODY_READ_SECONDS,
        help="how long an infer request body may take to arrive; slower ones answer 408",
    )
    parser.add_argument(
        "--max-loads-per-minute",
        type=int,
        default=DEFAULT_MAX_LOADS_PER_MINUTE,
        help="repository loads allowed in any minute; more answer 429 with Retry-After",
    )
    parser.add_argument(
        "--versions-per-model",
        type=int,
        default=1,
        help="versions of one model name kept loaded, the default included: earlier versions answer "
        "/v2/models/NAME/versions/VERSION/... until evicted, oldest first (default 1: a load replaces)",
    )
    parser.add_argument(
        "--bundle-root",
        type=Path,
        action="append",
        dest="bundle_roots",
        default=None,
        help="directory the load endpoint may load bundles from; repeatable "
        "(default: the parents of the --model directories)",
    )
    parser.add_argument(
        "--inference-log",
        default=None,
        metavar="LOCATION",
        help="log served requests (inputs, outputs, model version, time) as rolling Parquet files in this "
        "folder or s3://bucket/prefix (MinIO; credentials from the environment), off the request path",
    )
    parser.add_argument(
        "--inference-log-sample-rate",
        type=float,
        default=1.0,
        help="fraction of requests logged, in (0, 1]",
    )
    parser.add_argument(
        "--inference-log-roll-seconds",
        type=float,
        default=None,
        help="write the open inference log file at least this often (default 60), so recent requests "
        "can be read while the server runs",
    )
    parser.add_argument(
        "--inference-log-queue",
        type=int,
        default=None,
        help="requests waiting to be written; past it new ones are dropped and counted "
        "(tabpipe_serving_inference_log_dropped_total)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the bearer token the repository endpoints (load, unload, index) require, e.g. "
        "a mounted Kubernetes Secret (re-read when it changes); default: the TABPIPE_SERVING_ADMIN_TOKEN "
        "environment variable; with neither, those endpoints are disabled (403)",
    )
    parser.add_argument(
        "--require-token-for-inference",
        action="store_true",
        help="also require the token for inference and model metadata (health and /metrics stay open)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _verify_startup_bundle(model: str, digest: str | None) -> None:
    """Refuse to start on a bundle directory whose files disagree with its manifest or ``digest``.

    Only hashes are computed, nothing is loaded, so a tampered bundle stops the
    process with the file named instead of leaving a server that can never be
    ready. A directory without a manifest (written before manifests) and given no
    digest is left to the loader's older per-file checks; a ``models:/`` version is
    verified against its registry tag when it loads.

    Raises:
        ConfigError: ``--digest`` with a registry URI, or a directory that does not exist.
        ArtifactIntegrityError: a file, the file list or the manifest disagrees.
    """
    from tabpipe.bundle import has_manifest
    from tabpipe.errors import ConfigError
    from tabpipe.serving.store import is_registry_uri, verify_bundle_dir

    if is_registry_uri(model):
        if digest:
            raise ConfigError(
                "--digest applies to a bundle directory; a registry version is verified against its "
                "own tabpipe.bundle_digest tag"
            )
        return
    if digest or has_manifest(model):
        verify_bundle_dir(model, digest)


def serve(args: argparse.Namespace) -> int:
    """Run uvicorn with one worker until interrupted."""
    import importlib.util

    import uvicorn

    from tabpipe.errors import ConfigError
    from tabpipe.serving.app import create_app
    from tabpipe.serving.auth import TOKEN_ENV, AdminToken
    from tabpipe.serving.state import ServerConfig, fix_malloc_thresholds
    from tabpipe.serving.validation import Limits

    positive = (
        "max_rows",
        "max_body_bytes",
        "max_inflight",
        "max_loads_per_minute",
        "body_read_seconds",
        "versions_per_model",
    )
    for option in positive:
        if getattr(args, option) < 1:
            raise ConfigError(f"--{option.replace('_', '-')}: must be positive, not {getattr(args, option)}")
    if args.max_inflight_bytes is not None and args.max_inflight_bytes < args.max_body_bytes:
        raise ConfigError(
            f"--max-inflight-bytes: {args.max_inflight_bytes} is below --max-body-bytes "
            f"{args.max_body_bytes}, so the largest allowed request could never run"
        )
    if args.digest and len(args.models) > 1:
        raise ConfigError("--digest: applies to a single --model bundle directory, not to several")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for model in args.models:
        _verify_startup_bundle(model, args.digest)
    inference_log = _inference_log_config(args)
    admin = AdminToken(
        getattr(args, "admin_token_file", None),
        require_for_inference=getattr(args, "require_token_for_inference", False),
    )
    if admin.configured:
        source = f"--admin-token-file {args.admin_token_file}" if args.admin_token_file else TOKEN_ENV
        scope = "repository and inference" if admin.require_for_inference else "repository"
        logging.getLogger("tabpipe.serving").info(
            "%s endpoints require the bearer token from %s", scope, source
        )
    else:
        logging.getLogger("tabpipe.serving").warning(
            "no admin token (%s or --admin-token-file): the repository endpoints are disabled", TOKEN_ENV
        )
    config = ServerConfig(
        model_uris=list(args.models),
        tracking_uri=args.tracking_uri,
        limits=Limits(
            max_rows=args.max_rows,
            max_body_bytes=args.max_body_bytes,
            max_inflight=args.max_inflight,
        ),
        bundle_roots=list(args.bundle_roots or []),
        admin=admin,
        grpc_port=args.grpc_port,
        grpc_host=args.host,
        max_inflight_bytes=args.max_inflight_bytes,
        max_loads_per_minute=args.max_loads_per_minute,
        versions_per_model=args.versions_per_model,
        body_read_seconds=args.body_read_seconds,
        inference_log=inference_log,
    )
    fix_malloc_thresholds()  # memory returns after large requests (see the function)
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        workers=1,
        http=http,
        access_log=False,
        log_level=args.log_level,
        lifespan="on",
    )
    return 0


def _inference_log_config(args: argparse.Namespace) -> InferenceLogConfig | None:
    """The inference log's settings from the options (None without ``--inference-log``).

    Raises:
        ConfigError: a bad rate or queue size, naming the option.
    """
    if not args.inference_log:
        return None
    from tabpipe.errors import ConfigError
    from tabpipe.serving.inference_log import InferenceLogConfig

    overrides: dict[str, float] = {}
    if args.inference_log_queue is not None:
        overrides["queue_size"] = args.inference_log_queue
    if args.inference_log_roll_seconds is not None:
        overrides["max_seconds_per_file"] = args.inference_log_roll_seconds
    try:
        return InferenceLogConfig(
            location=args.inference_log, sample_rate=args.inference_log_sample_rate, **overrides
        )
    except ConfigError as exc:
        # The option names what the message's own "inference log: " prefix would repeat.
        raise ConfigError(f"--inference-log: {str(exc).removeprefix('inference log: ')}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tabpipe.serving``."""
    import sys

    from tabpipe.errors import TabpipeError

    try:
        return serve(build_parser().parse_args(argv))
    except TabpipeError as exc:
        # One line naming what was refused, not a traceback (as ``tabpipe serve`` prints it).
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
