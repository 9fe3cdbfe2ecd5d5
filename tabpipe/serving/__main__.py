"""Run the model server: ``python -m tabpipe.serving --model <bundle dir | models:/name@alias>``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tabpipe.serving.launcher import DEFAULT_SERVE_PORT
from tabpipe.serving.validation import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_ROWS


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
    parser.add_argument("--model", required=True, help="deploy bundle directory, or models:/<name>@<alias>")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (for models:/ URIs)")
    parser.add_argument(
        "--digest",
        default=None,
        help="the bundle digest (sha256 of its manifest.json, e.g. the registry's tabpipe.bundle_digest "
        "tag) a --model bundle directory must have; checked before the server starts",
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
        "--bundle-root",
        type=Path,
        default=None,
        help="directory the load endpoint may load bundles from (default: the parent of --model)",
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

    from tabpipe.serving.app import ServerConfig, create_app
    from tabpipe.serving.auth import TOKEN_ENV, AdminToken
    from tabpipe.serving.validation import Limits

    if args.max_rows < 1 or args.max_body_bytes < 1 or getattr(args, "max_inflight", 1) < 1:
        raise SystemExit("--max-rows, --max-body-bytes and --max-inflight must be positive")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _verify_startup_bundle(args.model, getattr(args, "digest", None))
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
        model_uri=args.model,
        tracking_uri=args.tracking_uri,
        limits=Limits(
            max_rows=args.max_rows,
            max_body_bytes=args.max_body_bytes,
            max_inflight=getattr(args, "max_inflight", DEFAULT_MAX_INFLIGHT),
        ),
        bundle_root=args.bundle_root,
        admin=admin,
        grpc_port=getattr(args, "grpc_port", None),
        grpc_host=args.host,
    )
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
