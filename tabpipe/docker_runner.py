"""Run the pipeline's tasks in the project image with kfp.local's ``DockerRunner`` (RUNNER=docker).

Each task runs in a container of ``tabpipe:<version>`` (the image the compiled
pipeline names) on the host network, so the tasks reach the local MLflow server,
serving endpoint and MinIO on loopback exactly as the subprocess tasks do; the
MLflow server proxies artifacts (``--serve-artifacts``), so nothing but HTTP
crosses into the container. What differs from a subprocess run, and is handled here:

- **The pipeline root** is bind-mounted at the same path, and the container runs
  as the image's non-root user (uid 10001), which cannot write a folder the host
  user owns. The root gets a shared group (setgid, group-writable), the
  container joins that group, and a umask of 002 keeps what it writes
  group-writable, so the host user can read and delete every output without
  root and without chown-ing anything the container wrote.
- **Local data paths** in the config are host paths. Files under ``data/`` map to
  the copy bundled in the image (``/app/data/...``, as a cluster run does,
  :func:`tabpipe.submit.to_image_path`); any other local file is mounted read-only
  at its own path.
- **The environment** is not inherited: the run's id, the object store's
  endpoint and the serving endpoint's token are passed explicitly. A variable
  that names a 0600 secret file (MinIO's credentials, the serving admin token)
  gets a copy the container user can read, mounted read-only, deleted after the run.
- **A stale image** would run old code under the new code's version: the image's
  labels (written by ``make image``) must match this tree's code and data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabpipe.config import PipelineConfig
from tabpipe.errors import ConfigError, ServiceError

#: The image's user and group (docker/Dockerfile, the manifests' runAsUser).
RUNTIME_UID = 10001
RUNTIME_GID = 10001
#: Where the image holds configs/ and data/.
IMAGE_ROOT = "/app"
#: Repository folders bundled in the image; local sources elsewhere are mounted instead.
BUNDLED_DIRS = ("data",)
#: Labels ``make image`` writes (``python -m tabpipe.docker_runner labels``) and a run checks.
CODE_LABEL = "org.tabpipe.code-version"
DATA_LABEL = "org.tabpipe.data-digest"
#: Environment passed through to the tasks when set here (never the whole environment).
FORWARDED_ENV = (
    "MINIO_ENDPOINT",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "TABPIPE_SERVING_ADMIN_TOKEN",  # tabpipe.deploy.TOKEN_ENV
)
#: Variables naming a secret file, and the file's name inside the container's /run/secrets/tabpipe.
SECRET_FILE_ENV = {
    "TABPIPE_MINIO_CREDENTIALS": "minio.env",  # tabpipe.objectstore.CREDENTIALS_ENV
    "TABPIPE_SERVING_ADMIN_TOKEN_FILE": "serving-admin-token",  # tabpipe.deploy.TOKEN_FILE_ENV
}
SECRETS_DIR = "/run/secrets/tabpipe"
#: The container's entrypoint: group-writable outputs, then KFP's own command.
UMASK_ENTRYPOINT = ["/bin/sh", "-c", 'umask 0002 && exec "$@"', "tabpipe-task"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class DockerSetup:
    """Everything a run through ``DockerRunner`` needs, made by :func:`prepare`.

    Attributes:
        runner: The ``kfp.local.DockerRunner`` to pass to ``local.init``.
        pipeline_root: The bind-mounted pipeline root (a host path, the same inside).
        config: The config with local paths as the containers see them.
        image: The image the tasks run in.
        cleanup: Files to delete after the run (the secret files' copies).
    """

    runner: Any
    pipeline_root: Path
    config: PipelineConfig
    image: str
    cleanup: list[Path] = field(default_factory=list)

    def __enter__(self) -> DockerSetup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the run's temporary files (the secret files' copies)."""
        for path in self.cleanup:
            path.unlink(missing_ok=True)


def data_digest(repo_root: Path = REPO_ROOT) -> str:
    """A digest of the files the image bundles from ``configs/`` and ``data/``."""
    digest = hashlib.sha256()
    for folder in ("configs", *BUNDLED_DIRS):
        for path in sorted((repo_root / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".env":
                digest.update(path.relative_to(repo_root).as_posix().encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def image_labels(repo_root: Path = REPO_ROOT) -> dict[str, str]:
    """The labels ``make image`` stamps on the image: this tree's code version and data digest."""
    from tabpipe.version import code_version

    return {CODE_LABEL: code_version(), DATA_LABEL: data_digest(repo_root)}


def docker_client(docker_host: str | None = None) -> Any:
    """A docker-py client for ``docker_host`` (else ``DOCKER_HOST``, else the default socket).

    Raises:
        ConfigError: docker-py is not installed.
        ServiceError: no Docker engine answers there.
    """
    try:
        import docker
    except ImportError:
        raise ConfigError(
            "--runner docker needs the docker package (kfp.local's DockerRunner): pip install -e '.[dev]'"
        ) from None
    host = docker_host or os.environ.get("DOCKER_HOST") or None
    try:
        client = docker.DockerClient(base_url=host) if host else docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = host or "the default socket"
        raise ServiceError(
            f"no Docker engine answers at {where} ({exc}); start one with make docker-up"
        ) from None
    return client


def check_image(client: Any, image: str, repo_root: Path = REPO_ROOT) -> None:
    """Refuse an image that is missing or was built from other code or data than this tree.

    Raises:
        ConfigError: no such image in the engine (``make image`` builds it), or its
            labels differ from this tree's (the tasks would run stale code).
    """
    import docker

    try:
        labels = client.images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        raise ConfigError(
            f"image {image} is not in the Docker engine: build it with make image (the tasks run in it)"
        ) from None
    if CODE_LABEL not in labels:
        print(
            f"warning: {image} has no {CODE_LABEL} label (built without make image): "
            "cannot tell whether it holds this tree's code",
            file=sys.stderr,
        )
        return
    expected = image_labels(repo_root)
    stale = [f"{k} {labels.get(k)!r} != {v!r}" for k, v in expected.items() if labels.get(k) != v]
    if stale:
        raise ConfigError(
            f"image {image} was built from other code or data than this tree ({'; '.join(stale)}): "
            "rebuild it with make image"
        )


def check_engine_and_image(image: str, docker_host: str | None = None) -> None:
    """Fail early, before any server starts: the engine answers and holds this tree's image.

    Raises:
        ConfigError: docker-py missing, or the image missing or stale.
        ServiceError: no Docker engine answers.
    """
    client = docker_client(docker_host)
    try:
        check_image(client, image)
    finally:
        client.close()


def shared_group() -> int:
    """The group the host user and the container share on the pipeline root.

    Root (CI, this machine's default) gives the folder to the image's own group; any
    other user shares their primary group, which the container joins.
    """
    return RUNTIME_GID if os.geteuid() == 0 else os.getegid()


def prepare_pipeline_root(root: Path) -> int:
    """Create the pipeline root so that the container user can write it and the host user can clean it.

    The folder gets the shared group, setgid (new folders inherit group and setgid)
    and group write. Returns the shared group.
    """
    gid = shared_group()
    root.mkdir(parents=True, exist_ok=True)
    if root.stat().st_gid != gid:
        os.chown(root, -1, gid)  # root may give it away; a user only to a group they are in
    root.chmod(stat.S_ISGID | 0o775)
    return gid


def container_config(
    config: PipelineConfig, repo_root: Path = REPO_ROOT
) -> tuple[PipelineConfig, list[Path]]:
    """The config with its local paths as the containers see them, and the host files to mount.

    Files under the repository's bundled folders map to the image's copy; other local
    files are mounted read-only at their own path. URIs with a scheme are left alone.

    Raises:
        ConfigError: a local source file does not exist.
    """
    from tabpipe.submit import to_image_path

    mounts: list[Path] = []

    def mapped(uri: str, field_name: str) -> str:
        if "://" in uri:
            return uri
        path = Path(uri).resolve()
        if not path.is_file():
            raise ConfigError(f"{field_name} {uri!r}: no such file")
        if any(path.is_relative_to(repo_root / folder) for folder in BUNDLED_DIRS):
            return to_image_path(str(path), IMAGE_ROOT, repo_root)
        mounts.append(path)
        return str(path)

    data = config.model_dump()
    data["source"]["uri"] = mapped(config.source.uri, "source.uri")
    if config.drift.reference_uri:
        data["drift"]["reference_uri"] = mapped(config.drift.reference_uri, "drift.reference_uri")
    return PipelineConfig.model_validate(data), mounts


def _secret_copy(source: Path, name: str, state_dir: Path, gid: int) -> Path:
    """A copy of a 0600 secret file that the container user can read (group ``gid``, mode 0440).

    It sits in a 0700 folder of the state dir, so no other host user reaches it.

    Raises:
        ConfigError: the file cannot be read (the message names the file, never its contents).
    """
    folder = state_dir / "docker" / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.parent.chmod(0o700)
    copy = folder / f"{name}.{os.getpid()}"
    copy.unlink(missing_ok=True)
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
    except OSError as exc:
        copy.unlink(missing_ok=True)
        raise ConfigError(f"cannot read {source} for the containers ({exc.strerror or exc})") from None
    os.chown(copy, -1, gid)
    copy.chmod(0o440)
    return copy


def prepare(
    config: PipelineConfig,
    state_dir: Path,
    image: str,
    docker_host: str | None = None,
    environment: dict[str, str] | None = None,
    repo_root: Path = REPO_ROOT,
) -> DockerSetup:
    """Check the engine and the image, prepare the pipeline root, and build the ``DockerRunner``.

    Args:
        config: The run's config (host paths).
        state_dir: The run's state folder; the pipeline root is ``pipeline_root-docker`` in it.
        image: The image the compiled pipeline names.
        docker_host: The engine (else ``DOCKER_HOST``, else the default socket).
        environment: Variables every task gets (the run's id), on top of :data:`FORWARDED_ENV`.
        repo_root: The repository the image was built from.

    Raises:
        ConfigError: docker-py missing, the image missing or stale, a source file missing.
        ServiceError: no Docker engine answers.
    """
    from docker.types import Mount
    from kfp import local

    check_engine_and_image(image, docker_host)
    if docker_host:
        os.environ["DOCKER_HOST"] = docker_host  # kfp.local makes its own client with docker.from_env()
    pipeline_root = (state_dir / "pipeline_root-docker").resolve()
    gid = prepare_pipeline_root(pipeline_root)
    mapped, files = container_config(config, repo_root)
    mounts = [Mount(target=str(p), source=str(p), type="bind", read_only=True) for p in files]
    task_env = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    task_env.update(environment or {})
    cleanup: list[Path] = []
    try:
        for variable, name in SECRET_FILE_ENV.items():
            if os.environ.get(variable, "").strip():
                copy = _secret_copy(Path(os.environ[variable]), name, state_dir, gid)
                cleanup.append(copy)
                target = f"{SECRETS_DIR}/{name}"
                mounts.append(Mount(target=target, source=str(copy), type="bind", read_only=True))
                task_env[variable] = target
    except ConfigError:
        for path in cleanup:
            path.unlink(missing_ok=True)
        raise
    run_args: dict[str, Any] = {
        "network_mode": "host",
        "user": f"{RUNTIME_UID}:{RUNTIME_GID}",
        "entrypoint": UMASK_ENTRYPOINT,
        "labels": {"org.tabpipe.pipeline-root": str(pipeline_root)},
    }
    if gid != RUNTIME_GID:
        run_args["group_add"] = [str(gid)]
    if task_env:
        run_args["environment"] = task_env
    if mounts:
        run_args["mounts"] = mounts
    return DockerSetup(local.DockerRunner(**run_args), pipeline_root, mapped, image, cleanup)


def main(argv: list[str] | None = None) -> int:
    """``python -m tabpipe.docker_runner labels``: the ``--label`` arguments ``make image`` passes."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["labels"]:
        print("usage: python -m tabpipe.docker_runner labels", file=sys.stderr)
        return 2
    print(" ".join(f"--label {key}={value}" for key, value in image_labels().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
