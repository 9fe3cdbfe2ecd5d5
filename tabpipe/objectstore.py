"""The one module that talks S3 (MinIO): settings, a bounded client, atomic uploads.

Everything that reads or writes ``s3://`` goes through here, so the waits are
bounded in one place and every failure becomes one message:

* an unreachable or dying server is a :class:`~tabpipe.errors.ServiceError` naming
  the endpoint and the operation (``MinIO at http://127.0.0.1:9000 unreachable while
  reading s3://bucket/key: ...``), after at most two quick retries;
* a missing object or bucket is a :class:`~tabpipe.errors.SourceError`;
* an upload whose stored bytes differ from the bytes sent is an
  :class:`~tabpipe.errors.ArtifactIntegrityError`.

Uploads never leave an object that looks complete but is not: the bytes go to a
temporary key, are read back and compared by sha256, and only then are copied
into place on the server (an S3 copy is all or nothing); the temporary object is
removed whatever happens. A folder upload writes its ``MANIFEST`` last, so a
folder without one is an unfinished upload, and :func:`download_dir` refuses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from tabpipe.errors import ArtifactIntegrityError, ConfigError, ServiceError, SourceError, first_line

if TYPE_CHECKING:
    from minio import Minio

#: Written last by :func:`upload_dir_atomic`: the folder's files with their sha256 and size.
MANIFEST = "MANIFEST"
#: The temporary key of an upload in progress is ``<key>`` + this + a random id.
PARTIAL_MARKER = ".partial-"
#: Environment variable naming a credentials file (``KEY=value`` lines, as MinIO's own env files).
CREDENTIALS_ENV = "TABPIPE_MINIO_CREDENTIALS"

# Bounded waits: a dead server fails in seconds, a hung one within (3 + 20) s per attempt.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 20.0
RETRIES = 2
BACKOFF_FACTOR = 0.5


@dataclass(frozen=True)
class StoreSettings:
    """Where the object store is and how to sign in; the secret stays out of ``repr``.

    Attributes:
        endpoint: The server's URL, e.g. ``http://127.0.0.1:9000``.
        access_key: The access key (MinIO's root user, or an AWS-style key id).
        secret_key: The secret key.
    """

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Read the settings from the environment.

        The endpoint is ``MINIO_ENDPOINT``. The keys come from the first of:
        ``MINIO_ROOT_USER``/``MINIO_ROOT_PASSWORD``; ``AWS_ACCESS_KEY_ID``/
        ``AWS_SECRET_ACCESS_KEY``; the credentials file named by ``TABPIPE_MINIO_CREDENTIALS``.

        Raises:
            ConfigError: naming what is missing.
        """
        env = os.environ if env is None else env
        endpoint = env.get("MINIO_ENDPOINT", "").strip()
        if not endpoint:
            raise ConfigError(
                "object store: MINIO_ENDPOINT is not set (e.g. http://127.0.0.1:9000; see make minio-up)"
            )
        for user_var, secret_var in (
            ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ):
            user, secret = env.get(user_var, ""), env.get(secret_var, "")
            if user and secret:
                return cls(_checked_endpoint(endpoint), user, secret)
            if user or secret:
                missing = secret_var if user else user_var
                raise ConfigError(f"object store: {missing} is not set (its pair is)")
        credentials_file = env.get(CREDENTIALS_ENV, "")
        if not credentials_file:
            raise ConfigError(
                "object store: no credentials: set MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, "
                f"or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or {CREDENTIALS_ENV} to a credentials file "
                "(make minio-up prints its path)"
            )
        values = read_env_file(Path(credentials_file))
        user, secret = values.get("MINIO_ROOT_USER", ""), values.get("MINIO_ROOT_PASSWORD", "")
        if not (user and secret):
            raise ConfigError(
                f"object store: credentials file {credentials_file} lacks "
                "MINIO_ROOT_USER or MINIO_ROOT_PASSWORD"
            )
        return cls(_checked_endpoint(endpoint), user, secret)


def _checked_endpoint(endpoint: str) -> str:
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
        raise ConfigError(f"object store: MINIO_ENDPOINT must look like http://host:port, not {endpoint!r}")
    return endpoint.rstrip("/")


def read_env_file(path: Path) -> dict[str, str]:
    """Read ``KEY=value`` lines (blank lines and ``#`` comments skipped; values may be quoted).

    Raises:
        ConfigError: the file cannot be read (the message names the file, never its contents).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"object store: cannot read credentials file {path} ({exc.strerror or exc})"
        ) from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


@dataclass(frozen=True)
class S3Location:
    """A bucket and an object key (or key prefix)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` into bucket and key (the key may be empty for a bucket).

    Raises:
        SourceError: not an ``s3://`` URI, or it names no bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SourceError(f"{uri!r} is not an s3://bucket/key URI")
    if parsed.query or parsed.fragment:
        # ``?versionId=`` and the like are not supported: say so instead of reading the latest version.
        raise SourceError(f"{uri!r}: query strings and fragments are not supported in s3:// URIs")
    return S3Location(parsed.netloc, parsed.path.lstrip("/"))


@functools.lru_cache(maxsize=8)
def client(settings: StoreSettings) -> Minio:
    """A MinIO client whose every request has bounded waits (cached per settings).

    Connect timeout 3 s, read timeout 20 s, two retries with a 0.5 s backoff
    (connection errors and timeouts only: an S3 error answer is not retried).
    """
    import urllib3
    from minio import Minio

    parsed = urlparse(settings.endpoint)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        retries=urllib3.Retry(total=RETRIES, backoff_factor=BACKOFF_FACTOR),
        maxsize=4,
    )
    return Minio(
        parsed.netloc,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=parsed.scheme == "https",
        # A fixed region saves the bucket-location lookup MinIO does not need.
        region="us-east-1",
        http_client=http,
    )


@contextlib.contextmanager
def _calling(settings: StoreSettings, operation: str) -> Iterator[None]:
    """Turn the client's failures into one tabpipe error naming the endpoint and the operation."""
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    where = f"MinIO at {settings.endpoint}"
    try:
        yield
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
            raise SourceError(f"{where}: {exc.code} while {operation}") from None
        raise ServiceError(f"{where} refused {operation}: {exc.code} ({exc.message})") from None
    except (ServerError, InvalidResponseError) as exc:
        raise ServiceError(f"{where} failed while {operation}: {first_line(exc)}") from None
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise ServiceError(f"{where} unreachable while {operation}: {_reason(exc)}") from None
    except ValueError as exc:
        # The client checks names before sending (e.g. a bucket name S3 does not allow).
        raise SourceError(f"invalid request while {operation}: {first_line(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 failure, in one line (MaxRetryError wraps it)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = first_line(exc)
    # urllib3 prefixes the connection object's repr ("<...HTTPConnection object at 0x..>: "): drop it.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _get(minio: Minio, bucket: str, key: str) -> bytes:
    response = minio.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def read_bytes(uri: str, settings: StoreSettings | None = None) -> bytes:
    """Return the bytes of the object at ``s3://bucket/key``.

    Args:
        uri: The object's URI.
        settings: Where the store is; read from the environment when omitted.

    Raises:
        SourceError: the URI is malformed, or the bucket or object does not exist.
        ServiceError: the store is unreachable or refused the read.
        ConfigError: no settings were given and the environment lacks them.
    """
    location = parse_s3_uri(uri)
    if not location.key or location.key.endswith("/"):
        raise SourceError(f"{uri!r} names a bucket or folder, expected an object")
    settings = settings or StoreSettings.from_env()
    with _calling(settings, f"reading {location}"):
        return _get(client(settings), location.bucket, location.key)


def ensure_buckets(settings: StoreSettings, names: Iterable[str]) -> list[str]:
    """Create the buckets that do not exist yet; return the names created (idempotent).

    Raises:
        ServiceError: the store is unreachable or refused.
    """
    from minio.error import S3Error

    minio = client(settings)
    created = []
    for name in names:
        with _calling(settings, f"creating bucket {name}"):
            if minio.bucket_exists(name):
                continue
            try:
                minio.make_bucket(name)
            except S3Error as exc:
                # Another process created it between the check and the call: that is what we wanted.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
                continue
            created.append(name)
    return created


#: Called between the upload of the temporary object and its verification (tests use it).
UploadHook = Callable[["Minio", str, str], None]


def upload_atomic(
    settings: StoreSettings,
    bucket: str,
    key: str,
    data: bytes,
    *,
    after_upload: UploadHook | None = None,
) -> str:
    """Upload ``data`` to ``s3://bucket/key``: the key then holds all of it, verified, or nothing new.

    The bytes go to ``<key>.partial-<uuid4>``, are read back and compared by sha256,
    then copied into place on the server; the temporary object is removed on success
    and on failure. The final object carries its sha256 as user metadata (``x-amz-meta-sha256``).

    Args:
        settings: Where the store is.
        bucket: The bucket (must exist).
        key: The object key.
        data: The bytes.
        after_upload: Called with ``(client, bucket, temporary_key)`` before verification;
            for tests that tamper with the temporary object or stop the server.

    Returns:
        The sha256 of the bytes.

    Raises:
        ArtifactIntegrityError: the stored bytes differ from ``data``.
        SourceError: the bucket does not exist.
        ServiceError: the store is unreachable or refused.
    """
    from minio.commonconfig import CopySource

    digest = hashlib.sha256(data).hexdigest()
    target = S3Location(bucket, key)
    partial = f"{key}{PARTIAL_MARKER}{uuid.uuid4().hex}"
    minio = client(settings)
    try:
        with _calling(settings, f"uploading {target}"):
            minio.put_object(bucket, partial, io.BytesIO(data), len(data), metadata={"sha256": digest})
            if after_upload is not None:
                after_upload(minio, bucket, partial)
            stored = hashlib.sha256(_get(minio, bucket, partial)).hexdigest()
            if stored != digest:
                raise ArtifactIntegrityError(
                    f"upload to {target} failed verification: sha256 of the stored bytes {stored[:12]}… "
                    f"differs from the bytes sent {digest[:12]}…; nothing was written at {target}"
                )
            # Server-side copy: the key appears whole or not at all, and keeps the sha256 metadata.
            minio.copy_object(bucket, key, CopySource(bucket, partial))
    except ServiceError:
        # Unreachable or refusing: a removal would only wait out the same timeouts again. The
        # temporary object, if any, never looks complete (its key says partial).
        raise
    except BaseException:
        _remove_quietly(minio, bucket, partial)
        raise
    _remove_quietly(minio, bucket, partial)
    return digest


def _remove_quietly(minio: Minio, bucket: str, key: str) -> None:
    """Best effort: a dead server cannot remove it; a partial key never looks complete anyway."""
    with contextlib.suppress(Exception):
        minio.remove_object(bucket, key)


def _join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix.rstrip("/") else name


def upload_dir_atomic(
    local_dir: str | Path, s3_prefix: str, settings: StoreSettings | None = None
) -> dict[str, str]:
    """Upload every file of a folder under ``s3://bucket/prefix/``, each atomically, ``MANIFEST`` last.

    The ``MANIFEST`` (JSON: each file's relative path, sha256 and size) is written only
    after every file is in place, so a prefix without one is an unfinished upload.
    An earlier ``MANIFEST`` at the prefix is removed first, so a re-upload interrupted
    halfway is not mistaken for the earlier complete one.

    Returns:
        The sha256 of each file, by relative path.

    Raises:
        SourceError: the folder is missing or empty, or a file named ``MANIFEST`` is in it.
        ArtifactIntegrityError, ServiceError: as :func:`upload_atomic`.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise SourceError(f"upload of {root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise SourceError(f"upload of {root}: the folder holds no files")
    names = [p.relative_to(root).as_posix() for p in files]
    if MANIFEST in names:
        raise SourceError(f"upload of {root}: a file named {MANIFEST} would be overwritten by the manifest")
    location = parse_s3_uri(s3_prefix)
    settings = settings or StoreSettings.from_env()
    manifest_key = _join(location.key, MANIFEST)
    with _calling(settings, f"replacing s3://{location.bucket}/{manifest_key}"):
        client(settings).remove_object(location.bucket, manifest_key)
    digests: dict[str, str] = {}
    entries = []
    for path, name in zip(files, names, strict=True):
        data = path.read_bytes()
        digests[name] = upload_atomic(settings, location.bucket, _join(location.key, name), data)
        entries.append({"path": name, "sha256": digests[name], "size": len(data)})
    document = json.dumps({"format": 1, "files": entries}, indent=2).encode()
    upload_atomic(settings, location.bucket, manifest_key, document)
    return digests


def download_dir(s3_prefix: str, dest: str | Path, settings: StoreSettings | None = None) -> Path:
    """Download a folder written by :func:`upload_dir_atomic`, verifying every file against its ``MANIFEST``.

    The files land in a temporary sibling folder that is renamed to ``dest`` once all
    are verified, so ``dest`` never holds half a folder.

    Returns:
        ``dest``.

    Raises:
        SourceError: no ``MANIFEST`` at the prefix (nothing there, or an unfinished upload),
            the manifest is malformed, or ``dest`` exists and is not empty.
        ArtifactIntegrityError: a file's bytes differ from its manifest entry.
        ServiceError: the store is unreachable or refused.
    """
    location = parse_s3_uri(s3_prefix)
    settings = settings or StoreSettings.from_env()
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SourceError(f"download of {s3_prefix}: {dest} exists and is not an empty folder")
    minio = client(settings)
    manifest_uri = S3Location(location.bucket, _join(location.key, MANIFEST))
    try:
        with _calling(settings, f"reading {manifest_uri}"):
            manifest = json.loads(_get(minio, manifest_uri.bucket, manifest_uri.key))
        entries = [(str(e["path"]), str(e["sha256"])) for e in manifest["files"]]
    except SourceError:
        raise SourceError(
            f"download of {s3_prefix}: no {MANIFEST} there (nothing uploaded, or the upload did not finish)"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"download of {s3_prefix}: {manifest_uri} is not a valid manifest") from None
    staging = dest.with_name(f".{dest.name}{PARTIAL_MARKER}{uuid.uuid4().hex}")
    try:
        for name, expected in entries:
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise SourceError(f"download of {s3_prefix}: the manifest names an unsafe path {name!r}")
            source = S3Location(location.bucket, _join(location.key, name))
            with _calling(settings, f"reading {source}"):
                data = _get(minio, source.bucket, source.key)
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise ArtifactIntegrityError(
                    f"download of {source}: sha256 {actual[:12]}… differs from "
                    f"the manifest's {expected[:12]}…"
                )
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir(parents=True, exist_ok=True)  # a manifest listing no files still yields a folder
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def list_keys(settings: StoreSettings, bucket: str, prefix: str = "") -> list[str]:
    """Every object key under ``prefix`` in ``bucket`` (recursive), sorted.

    Raises:
        SourceError: the bucket does not exist.
        ServiceError: the store is unreachable or refused.
    """
    with _calling(settings, f"listing s3://{bucket}/{prefix}"):
        return sorted(o.object_name for o in client(settings).list_objects(bucket, prefix, recursive=True))
