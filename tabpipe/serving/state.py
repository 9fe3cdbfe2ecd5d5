"""What the server serves: several models by name, a few versions of each, and the limits around them.

REST (:mod:`tabpipe.serving.app`) and gRPC (:mod:`tabpipe.serving.grpc_server`) share one
:class:`ServingState`. Models are kept in dicts that are replaced as a whole on every load
or unload, so a request takes one snapshot and is never affected by a swap half-way. A
load of a name touches only that name: loading ``b`` never evicts ``a``.

Each name has a default version, which answers requests that name no version. With
``versions_per_model`` above 1, earlier versions stay loaded beside it (the oldest
evicted first) and answer ``/v2/models/{name}/versions/{version}/...``: a rollback
target, or a candidate loaded with ``default: false`` to be tried before it takes traffic.

Readiness is strict, as Triton's: the server is ready when every model it is meant to
serve (the startup models, and every name loaded since and not unloaded) is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tabpipe.errors import ConfigError, TabpipeError
from tabpipe.serving.auth import AdminToken
from tabpipe.serving.metrics import ModelMetrics, ServingMetrics
from tabpipe.serving.request_error import Busy
from tabpipe.serving.store import LoadedModel, claimed_model_name, is_registry_uri, load_uri
from tabpipe.serving.validation import (
    CONTRACT_DATATYPE,
    DEFAULT_BODY_READ_SECONDS,
    DEFAULT_INFLIGHT_BODIES,
    DEFAULT_MAX_LOADS_PER_MINUTE,
    DecodedRequest,
    Limits,
    RequestDecoder,
    RequestError,
)

if TYPE_CHECKING:
    from tabpipe.serving.inference_log import InferenceLog, InferenceLogConfig

log = logging.getLogger(__name__)

#: The model label of metrics for requests that name no served model.
UNKNOWN = "__unknown__"
#: Bodies above this size are decoded off the event loop, and mark the request large (memory trim).
INLINE_MAX_BODY_BYTES = 256 * 1024
#: A failed startup load is retried after this long, doubling up to the maximum, until it loads
#: (a store that was down at startup) or its name is unloaded or loaded through the API.
STARTUP_RETRY_FIRST_SECONDS = 5.0
STARTUP_RETRY_MAX_SECONDS = 60.0


class ModelState(enum.StrEnum):
    """A model's state in the repository index (the OIP repository extension's values)."""

    READY = "READY"
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class ModelStatus:
    """Where one wanted model stands.

    Attributes:
        state: READY (serving), LOADING (a load running; a version already served serves on
            meanwhile) or UNAVAILABLE (its load failed and nothing is served under the name).
        reason: Why it is not READY, or why its last reload failed while the old version serves on.
        source: Where it was, or is being, loaded from.
    """

    state: ModelState
    reason: str = ""
    source: str | None = None


@dataclass(frozen=True)
class IndexEntry:
    """One row of the repository index: a wanted name's default version, or another version kept loaded."""

    name: str
    version: str
    state: ModelState
    reason: str
    source: str | None
    default: bool = True

    def as_json(self) -> dict[str, Any]:
        """The REST index's object (``source`` lets a deployer roll back to it)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "reason": self.reason,
            "default": self.default,
        }
        if self.source is not None:
            entry["source"] = self.source
        return entry


def _datatype_of(values: list[Any]) -> str:
    """The OIP datatype of a list of labels (classes) for the ``predict`` output."""
    if values and all(type(v) is bool for v in values):
        return "BOOL"
    if values and all(type(v) is int for v in values):
        return "INT64"
    if values and all(type(v) in (int, float) for v in values):
        return "FP64"
    return "BYTES"


@dataclass(frozen=True)
class ActiveModel:
    """A loaded model with everything a request needs, built once at load."""

    loaded: LoadedModel
    decoder: RequestDecoder
    metrics: ModelMetrics
    outputs: list[str]
    predict_datatype: str
    metadata: bytes

    @property
    def name(self) -> str:
        """The model's name."""
        return self.loaded.spec.model_name

    @property
    def version(self) -> str:
        """The version it answers as."""
        return self.loaded.version

    @property
    def classifier(self) -> bool:
        """Whether it answers class probabilities too."""
        return "probabilities" in self.outputs


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version of a name and where it was loaded from."""

    active: ActiveModel
    source: str


@dataclass(frozen=True)
class LoadRequest:
    """A repository load's parameters (REST body ``parameters`` or gRPC ``parameters`` map).

    Attributes:
        uri: What to load; None reloads the name's current source.
        make_default: ``default``: whether the new version takes the name's unversioned traffic.
    """

    uri: str | None = None
    make_default: bool = True

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> LoadRequest:
        """Validate the parameters.

        Raises:
            RequestError: 400 naming the parameter that is wrong.
        """
        uri = parameters.get("uri")
        if uri is not None and (not isinstance(uri, str) or not uri):
            raise RequestError(400, "parameters.uri: must be a non-empty string")
        make_default = parameters.get("default", True)
        if not isinstance(make_default, bool):
            raise RequestError(400, "parameters.default: must be a boolean")
        return cls(uri, make_default)


def unload_version(parameters: Mapping[str, Any]) -> str | None:
    """The ``version`` parameter of a repository unload (None: every version of the name).

    Raises:
        RequestError: 400 when it is not a non-empty string.
    """
    version = parameters.get("version")
    if version is not None and (not isinstance(version, str) or not version):
        raise RequestError(400, "parameters.version: must be a non-empty string")
    return version


def _metadata(loaded: LoadedModel, outputs: list[str], predict_datatype: str, versions: list[str]) -> bytes:
    spec = loaded.spec
    inputs = [
        {
            "name": inp.name,
            "datatype": CONTRACT_DATATYPE[inp.rules.dtype],
            "shape": [-1],
            "parameters": {"contract": inp.rules.model_dump(mode="json", exclude_none=True)},
        }
        for inp in spec.inputs
    ]
    out = [{"name": "predict", "datatype": predict_datatype, "shape": [-1]}]
    if "probabilities" in outputs:
        out.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(spec.classes)]})
    payload = {
        "name": spec.model_name,
        "versions": versions,
        "platform": f"tabpipe-{loaded.predictor.kind}",
        "inputs": inputs,
        "outputs": out,
        "parameters": {
            "content_type": "pd",
            "task": spec.task.value,
            "target": spec.target,
            "classes": spec.classes,
            "sha256": spec.sha256,
        },
    }
    if loaded.onnx_reason is not None:
        # Why this model is served by scikit-learn rather than its ONNX export.
        payload["parameters"]["onnx_reason"] = loaded.onnx_reason
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Output:
    """One output tensor of an answer."""

    name: str
    datatype: str
    values: np.ndarray

    def header(self) -> dict[str, Any]:
        """Its JSON description without data."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.values.shape)}

    def as_json(self) -> dict[str, Any]:
        """Its JSON description with the data (flat, row-major)."""
        return {**self.header(), "data": self.values.ravel().tolist()}


@dataclass
class ServerConfig:
    """How the server loads models.

    Attributes:
        model_uris: What to load at startup: bundle directories and ``models:/`` URIs, one model each.
        tracking_uri: MLflow tracking URI, needed for ``models:/`` URIs.
        limits: Request size and concurrency limits.
        bundle_roots: Directories the load endpoint may load from (it must not read arbitrary
            paths a client names); default: the parents of the startup bundle directories.
        admin: The bearer token the repository extension (and, if the operator asks,
            inference) requires; without one the repository endpoints answer 403.
        grpc_port: Also serve the OIP gRPC API (:mod:`tabpipe.serving.grpc_server`) on this port.
        grpc_host: The address the gRPC endpoint listens on.
        max_inflight_bytes: Request bytes in progress at once (more answer 503); default
            :data:`DEFAULT_INFLIGHT_BODIES` times the body limit.
        max_loads_per_minute: Repository loads allowed in any 60 s (more answer 429).
        body_read_seconds: How long an infer body may take to arrive (408 past it).
        inference_log: Where and how often served requests are logged (None: not logged).
        versions_per_model: Versions of one name kept loaded at once, the default included; a
            load past it evicts the oldest other version.
    """

    model_uris: list[str] = field(default_factory=list)
    tracking_uri: str | None = None
    limits: Limits = field(default_factory=Limits)
    bundle_roots: list[Path] = field(default_factory=list)
    admin: AdminToken = field(default_factory=lambda: AdminToken(env={}))
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"
    max_inflight_bytes: int | None = None
    max_loads_per_minute: int = DEFAULT_MAX_LOADS_PER_MINUTE
    body_read_seconds: float = DEFAULT_BODY_READ_SECONDS
    inference_log: InferenceLogConfig | None = None
    versions_per_model: int = 1

    def __post_init__(self) -> None:
        if self.versions_per_model < 1:
            raise ConfigError(f"versions_per_model: must be positive, not {self.versions_per_model}")
        if not self.bundle_roots:
            self.bundle_roots = sorted(
                {Path(uri).resolve().parent for uri in self.model_uris if not is_registry_uri(uri)}
            )


class Admission:
    """Bounds the infer requests in progress (REST and gRPC), by count and by body bytes.

    The body bytes bound what decoding holds in memory at once: a JSON body decodes to
    Python objects a few times its size, so 32 concurrent 10 MB bodies would need a gigabyte.
    """

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.current = 0
        self.bytes = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admit(self) -> Iterator[Reservation]:
        """Hold a place while the block runs; its body bytes are added with :meth:`Reservation.grow`.

        Raises:
            Busy: 503 with ``Retry-After: 1`` when ``limit`` requests are in progress already.
        """
        with self._lock:
            if self.current >= self.limit:
                raise Busy(503, f"the server has {self.limit} requests in progress; retry shortly", 1)
            self.current += 1
        reservation = Reservation(self)
        try:
            yield reservation
        finally:
            with self._lock:
                self.current -= 1
                self.bytes -= reservation.held

    def _grow(self, reservation: Reservation, size: int) -> None:
        with self._lock:
            if self.bytes + size > self.max_bytes:
                raise Busy(
                    503,
                    f"the server holds {self.bytes} bytes of requests in progress (limit {self.max_bytes}); "
                    "retry shortly",
                    1,
                )
            self.bytes += size
            reservation.held += size


class Reservation:
    """One admitted request's share of the in-flight bytes."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.held = 0

    def grow(self, size: int) -> None:
        """Count ``size`` more bytes of this request.

        Raises:
            Busy: 503 with ``Retry-After: 1`` when the server's in-flight bytes would pass their bound.
        """
        if size > 0:
            self._admission._grow(self, size)


class LoadLimiter:
    """At most ``per_minute`` loads in any 60 seconds: reload spam must not starve inference."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._starts: deque[float] = deque()
        # REST loads run on the event loop, gRPC ones on its worker threads.
        self._lock = threading.Lock()

    def take(self) -> None:
        """Count one load.

        Raises:
            Busy: 429 with the seconds until a load is allowed again as ``Retry-After``.
        """
        with self._lock:
            now = self._clock()
            while self._starts and now - self._starts[0] >= 60.0:
                self._starts.popleft()
            if len(self._starts) >= self.per_minute:
                wait = math.ceil(60.0 - (now - self._starts[0]))
                raise Busy(429, f"at most {self.per_minute} loads a minute; retry in {wait} s", max(wait, 1))
            self._starts.append(now)


class MemoryTrimmer:
    """Hands freed heap back to the system after large requests (glibc's ``malloc_trim``).

    Python frees a 10 MB body or a 10,000-row batch into the C heap, which glibc keeps
    for reuse; after hostile or bursty traffic the process would stay at its peak. A
    background thread trims at most every ``interval`` seconds, only after a large
    request was seen: nothing on the hot path but setting a flag. A no-op off glibc.
    """

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.pending = False
        self._stop = threading.Event()
        self._trim = _malloc_trim()

    def note_large(self) -> None:
        """A large request just finished: trim at the next tick."""
        self.pending = True

    def run(self) -> None:
        """The thread's loop; returns when :meth:`stop` is called."""
        while not self._stop.wait(self.interval):
            if self.pending and self._trim is not None:
                self.pending = False
                self._trim(0)

    def stop(self) -> None:
        """End the loop."""
        self._stop.set()


def _libc() -> Any:
    """The C library (glibc on Linux), or None where it cannot be loaded."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    return getattr(_libc(), "malloc_trim", None)


#: glibc's mallopt parameters M_TRIM_THRESHOLD and M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks from 1 MiB go straight back to the system when freed; a heap keeps at most 4 MiB
#: free at its top. (Lower values cost latency: every batch's arrays would be mapped anew.)
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 1024 * 1024, 4 * 1024 * 1024


def fix_malloc_thresholds() -> None:
    """Fix glibc's mmap and trim thresholds (a no-op off glibc).

    By default glibc raises both after each large free (a 30 MB body: mmap threshold 30 MB,
    trim threshold 60 MB), so large blocks then come from the heaps, and a worker thread's
    heap keeps up to 64 MB free that ``malloc_trim`` cannot return (it trims only the main
    heap's top). Setting them turns that adjustment off. Process-wide: the server's entry
    point calls it, not the app (tests and benchmarks build apps in their own processes).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _load_in_progress() -> Busy:
    return Busy(429, "another load is in progress; retry when it has finished", 5)


class ServingState:
    """The models being served and the load machinery around them."""

    def __init__(self, config: ServerConfig, metrics: ServingMetrics) -> None:
        self.config = config
        self.metrics = metrics
        # Replaced as a whole on every change; readers take one snapshot per request.
        # The default version of each name (the hot path's one lookup).
        self.models: Mapping[str, ActiveModel] = {}
        # Every loaded version of each name, the default included, oldest load first.
        self.versions: Mapping[str, Mapping[str, ServedVersion]] = {}
        # What the server is meant to serve, by model name (by URI until a bundle's name is known).
        self.statuses: Mapping[str, ModelStatus] = {}
        # The last source of every name ever loaded: a load without a URI reloads it, even after an unload.
        self._sources: dict[str, str] = {}
        self._load_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self.admission = Admission(
            config.limits.max_inflight,
            config.max_inflight_bytes or DEFAULT_INFLIGHT_BODIES * config.limits.max_body_bytes,
        )
        self.load_limiter = LoadLimiter(config.max_loads_per_minute)
        self.trimmer = MemoryTrimmer()
        self.inference_log: InferenceLog | None = None
        self._startup_keys: dict[str, str] = {}
        # Set at shutdown: startup-load retries stop.
        self.stopping = threading.Event()

    # ---- reading (any thread, no lock) ----

    @property
    def ready(self) -> bool:
        """Every wanted model is served (and there is at least one); a reload in progress keeps it ready."""
        statuses, models = self.statuses, self.models
        return bool(statuses) and all(name in models for name in statuses)

    def resolve(self, name: str, version: str | None) -> ActiveModel:
        """The model a request names (``version`` None or '' for the name's default version).

        Raises:
            RequestError: 503 while it is loading or nothing is loaded, 404 for another name or version.
        """
        active = self.models.get(name)
        if active is None:
            status = self.statuses.get(name)
            if status is not None:
                raise RequestError(503, f"model {name!r} is not loaded ({status.reason or status.state})")
            served = sorted(self.models)
            if not served:
                raise RequestError(503, f"no model is loaded yet ({self._why_not_ready()})")
            raise RequestError(404, f"model {name!r} not found; serving {', '.join(map(repr, served))}")
        if version and version != active.version:
            served_versions = self.versions.get(name, {})
            other = served_versions.get(version)
            if other is None:
                loaded = ", ".join(map(repr, served_versions)) or repr(active.version)
                raise RequestError(404, f"model {name!r} has no version {version!r} loaded; loaded: {loaded}")
            return other.active
        return active

    def serves(self, name: str, version: str | None) -> bool:
        """Whether a request for ``name`` (and ``version``, when given) would find a loaded model."""
        active = self.models.get(name)
        if active is None:
            return False
        return not version or version == active.version or version in self.versions.get(name, {})

    def labels(self, name: str | None, version: str | None = None) -> tuple[str, str]:
        """The metric labels for a request naming ``name`` (UNKNOWN for a name not served).

        The version is the one asked for when it is loaded, else the name's default.
        """
        active = self.models.get(name) if name is not None else None
        if active is None:
            return UNKNOWN, ""
        if version and version in self.versions.get(active.name, {}):
            return active.name, version
        return active.name, active.version

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """The repository index: every wanted name, its default version first, then the others kept."""
        models, versions, statuses = self.models, self.versions, self.statuses
        entries = []
        for name, status in sorted(statuses.items()):
            active = models.get(name)
            if ready_only and active is None:
                continue
            entries.append(
                IndexEntry(name, active.version if active else "", status.state, status.reason, status.source)
            )
            for version, served in versions.get(name, {}).items():
                if active is None or version != active.version:
                    other = IndexEntry(name, version, ModelState.READY, "", served.source, default=False)
                    entries.append(other)
        return entries

    def _why_not_ready(self) -> str:
        reasons = [f"{name}: {s.reason or s.state}" for name, s in sorted(self.statuses.items())]
        return "; ".join(reasons) or "nothing to serve"

    # ---- changing (loads one at a time) ----

    def build(self, loaded: LoadedModel) -> ActiveModel:
        """Wrap a loaded model with its decoder, metrics and metadata."""
        spec = loaded.spec
        classifier = spec.task.is_classification
        outputs = ["predict", "probabilities"] if classifier else ["predict"]
        predict_datatype = _datatype_of(spec.classes) if classifier else "FP64"
        return ActiveModel(
            loaded=loaded,
            decoder=RequestDecoder(spec, self.config.limits, outputs),
            metrics=ModelMetrics(self.metrics, spec, loaded.version),
            outputs=outputs,
            predict_datatype=predict_datatype,
            metadata=_metadata(loaded, outputs, predict_datatype, [loaded.version]),
        )

    def check_can_load(self, name: str | None = None, make_default: bool = True) -> None:
        """Refuse a load that cannot be honoured or is not allowed yet (busy, rate limit); count it otherwise.

        Raises:
            RequestError: 400 or 409, ``make_default`` is false and cannot be honoured (see
                :meth:`_check_keep_default`), checked first so a refused request costs no load.
            Busy: 429 with ``Retry-After``.
        """
        if not make_default and name is not None:
            self._check_keep_default(name)
        if self._load_lock.locked():
            raise _load_in_progress()
        self.load_limiter.take()

    def _check_keep_default(self, name: str) -> None:
        """A load with ``default: false`` needs a default to keep and room for a second version.

        Raises:
            RequestError: 409 when ``name`` has no default version served; 400 when only one
                version per name is kept.
        """
        if name not in self.models:
            raise RequestError(
                409,
                f"parameters.default: false keeps {name!r}'s default version serving, but none is served; "
                "load one as the default first",
            )
        kept = self.config.versions_per_model
        if kept < 2:
            raise RequestError(
                400,
                "parameters.default: false keeps the served version as the default beside the new one, "
                f"which needs the server's --versions-per-model of 2 or more (it is {kept})",
            )

    def _set_status(self, key: str, status: ModelStatus | None, drop: str | None = None) -> None:
        with self._status_lock:
            statuses = dict(self.statuses)
            if drop is not None:
                statuses.pop(drop, None)
            if status is None:
                statuses.pop(key, None)
            else:
                statuses[key] = status
            self.statuses = statuses

    def load(
        self,
        uri: str,
        expected_name: str | None = None,
        wait: bool = False,
        key: str | None = None,
        make_default: bool = True,
        startup: bool = False,
    ) -> ActiveModel:
        """Load ``uri`` and swap it in beside the other models; blocking, so call it from a worker thread.

        The new version becomes its name's default only when it is ready; on failure the
        old one serves on (the index keeps the reason). Versions of the name past
        ``versions_per_model`` are evicted, oldest first, never the default.

        Args:
            uri: What to load.
            expected_name: The name the model must have (a repository load's path).
            wait: Wait for a load in progress (startup loads) instead of refusing with 429.
            key: The index entry the load is for (a startup load's, fixed at startup).
            make_default: Make the new version the name's default. When false, the new
                version is only kept beside the name's default (it answers requests that name
                its version).
            startup: A startup load (retried): when its bundle's name turns out to be served
                already, loaded through the API since, it yields to that and is dropped.

        Returns:
            The loaded version.

        Raises:
            TabpipeError: the model cannot be loaded or verified, or its name is not ``expected_name``.
            Busy: 429, another load is in progress and ``wait`` is false.
            RequestError: 400, ``make_default`` is false but only one version per name is kept.
        """
        key = key or expected_name or claimed_model_name(uri) or uri
        if not self._load_lock.acquire(blocking=wait):
            raise _load_in_progress()
        with contextlib.ExitStack() as held:
            held.callback(self._load_lock.release)
            previous = self.statuses.get(key)
            served = self.models.get(key)
            if not make_default:
                self._check_keep_default(key)  # again: the name may have been unloaded since
            if served is not None:
                reason = f"loading {uri}; version {served.version} serves meanwhile"
                self._set_status(key, ModelStatus(ModelState.LOADING, reason, previous and previous.source))
            elif previous is not None:
                # A wanted model not served yet (a startup load failed): readiness waits for it.
                self._set_status(key, ModelStatus(ModelState.LOADING, "loading", uri))
            try:
                try:
                    loaded = load_uri(uri, self.config.tracking_uri)
                except OSError as exc:  # a path the file system refuses (too long, a loop, ...)
                    raise TabpipeError(f"cannot read {uri[:300]}: {exc.strerror or exc}") from None
                active = self.build(loaded)
                if expected_name is not None and active.name != expected_name:
                    raise TabpipeError(f"{uri} holds model {active.name!r}, not {expected_name!r}")
                if not make_default and served is not None and served.version == active.version:
                    raise RequestError(
                        409,
                        f"{uri} holds version {active.version}, which is {key!r}'s default already; "
                        "load it without parameters.default false to replace the default",
                    )
            except Exception as exc:
                self.metrics.loads.labels("failed").inc()
                reason = f"loading {uri} failed: {exc}"
                if key in self.models:
                    # The old version serves on; the index says why the new one is not there.
                    self._set_status(key, ModelStatus(ModelState.READY, reason, previous and previous.source))
                elif previous is not None:
                    self._set_status(key, ModelStatus(ModelState.UNAVAILABLE, reason, uri))
                # A name never served before does not become wanted by a failed load.
                raise
            name, default = active.name, self.models.get(active.name)
            if startup and key != name and default is not None:
                self._set_status(key, None)
                log.warning("startup model %s: %s is served since (through the API); kept", uri, name)
                return default
            earlier = self.versions.get(name, {})
            kept = {v: s for v, s in earlier.items() if v != active.version}
            keep_default = not make_default and default is not None
            if default is not None and not keep_default and default.version in kept:
                # A demoted default is the rollback target: it counts as recent, so stale candidates go first.
                kept[default.version] = kept.pop(default.version)
            kept[active.version] = ServedVersion(active, uri)  # a reload of a kept version moves it last
            default_version = default.version if keep_default and default is not None else active.version
            evicted = []
            replaced = earlier.get(active.version)
            if replaced is not None and replaced.active.loaded.predictor.kind != active.loaded.predictor.kind:
                evicted.append(replaced.active)  # the same version, served by another predictor now
            while len(kept) > self.config.versions_per_model:
                oldest = next(v for v in kept if v != default_version)
                evicted.append(kept.pop(oldest).active)
            kept = _listing_versions(kept)
            self.versions = {**self.versions, name: kept}
            self.models = {**self.models, name: kept[default_version].active}
            self._set_status(name, ModelStatus(ModelState.READY, "", kept[default_version].source), drop=key)
            if uri in self.statuses:  # a startup entry known by its URI until now
                self._set_status(uri, None)
            self._sources[name] = kept[default_version].source
            self.metrics.loads.labels("ok").inc()
            for old in evicted:
                self.metrics.model_info.labels(old.name, old.version, old.loaded.predictor.kind).set(0)
                log.info("evicted %s version %s (--versions-per-model %d)", name, old.version, len(kept))
            self.metrics.model_info.labels(name, active.version, active.loaded.predictor.kind).set(1)
            role = "beside the default version " + default_version if keep_default else "as the default"
            log.info("serving %s version %s from %s %s", name, active.version, uri, role)
            return kept[active.version].active

    def unload(self, name: str, version: str | None = None) -> str:
        """Stop serving ``name`` only (every version), and stop wanting it: readiness no longer waits for it.

        A name that failed to load (wanted, not served) is dropped too. With ``version``,
        only that version goes, unless it is the name's only one.

        Returns:
            The version that was served as the default ('' when none was), or ``version``.

        Raises:
            RequestError: 404 when ``name`` is neither served nor wanted, or ``version`` is not
                loaded; 409 when ``version`` is the default and other versions are kept.
        """
        with self._load_lock:
            old = self.models.get(name)
            if old is None and name not in self.statuses:
                raise RequestError(404, f"model {name!r} is not loaded")
            kept = self.versions.get(name, {})
            if version and old is not None and len(kept) > 1:
                return self._unload_version(name, old, kept, version)
            if version and (old is None or version != old.version):
                raise RequestError(404, f"model {name!r} has no version {version!r} loaded")
            # The status first: a readiness probe in between must not see a wanted name unserved.
            self._set_status(name, None)
            if old is None:
                log.info("%s is no longer wanted (it was not served)", name)
                return ""
            self.models = {k: v for k, v in self.models.items() if k != name}
            self.versions = {k: v for k, v in self.versions.items() if k != name}
            for served in kept.values():
                gone = served.active
                self.metrics.model_info.labels(name, gone.version, gone.loaded.predictor.kind).set(0)
            log.info("unloaded %s (versions %s)", name, ", ".join(kept) or old.version)
            return old.version

    def _unload_version(
        self, name: str, default: ActiveModel, kept: Mapping[str, ServedVersion], version: str
    ) -> str:
        """Drop one non-default version of ``name`` (the load lock is held)."""
        if version not in kept:
            loaded = ", ".join(map(repr, kept))
            raise RequestError(404, f"model {name!r} has no version {version!r} loaded; loaded: {loaded}")
        if version == default.version:
            raise RequestError(
                409,
                f"version {version!r} is the default of {name!r}; load another version as the default "
                "first, or unload the model without a version",
            )
        remaining = _listing_versions({v: s for v, s in kept.items() if v != version})
        self.versions = {**self.versions, name: remaining}
        self.models = {**self.models, name: remaining[default.version].active}
        gone = kept[version].active
        self.metrics.model_info.labels(name, version, gone.loaded.predictor.kind).set(0)
        log.info("unloaded %s version %s (default version %s serves on)", name, version, default.version)
        return version

    def load_initial(self) -> None:
        """Load the startup models one by one, retrying failures with backoff until shutdown.

        A failure leaves that name not ready and says why in the index; the load is retried
        (a store down at startup comes back) unless the name was unloaded, or loaded through
        the repository extension meanwhile (a deploy's newer version is never overwritten).
        """
        # Each URI keeps the index entry it started with, whatever its bundle claims later.
        pending = dict(self._startup_keys) or self.mark_startup_loading()
        delay = STARTUP_RETRY_FIRST_SECONDS
        while pending:
            failed = {}
            for uri, key in pending.items():
                if key not in self.statuses or key in self.models:
                    continue
                try:
                    self.load(uri, wait=True, key=key, startup=True)
                except Exception as exc:  # noqa: BLE001 (the server stays up, not ready, and says why)
                    log.error("could not load %s (retrying in %.0f s): %s", uri, delay, exc)
                    failed[uri] = key
            pending = failed
            if pending and self.stopping.wait(delay):
                return
            delay = min(delay * 2, STARTUP_RETRY_MAX_SECONDS)

    def mark_startup_loading(self) -> dict[str, str]:
        """Show every startup model as LOADING before the load thread starts (readiness waits).

        Returns:
            Each startup URI's index key: the name it claims, or the URI itself.
        """
        for uri in self.config.model_uris:
            key = claimed_model_name(uri) or uri
            self._startup_keys[uri] = key
            self._set_status(key, ModelStatus(ModelState.LOADING, "loading", uri))
        return dict(self._startup_keys)

    def source_to_reload(self, name: str) -> str:
        """What a load request without a URI reloads: the name's current source or startup URI.

        Raises:
            RequestError: 400 when there is none.
        """
        status = self.statuses.get(name)
        source = (status.source if status is not None else None) or self._sources.get(name)
        if source:
            return source
        raise RequestError(400, f"parameters.uri: no model URI given and {name!r} was never loaded")

    def check_load_uri(self, uri: str) -> None:
        """Refuse load-endpoint URIs outside what the operator allowed.

        Raises:
            RequestError: the URI is a directory outside the bundle roots, or a
                registry URI without a tracking server.
        """
        if is_registry_uri(uri):
            if not self.config.tracking_uri:
                raise RequestError(400, "parameters.uri: registry URIs need the server's --tracking-uri")
            return
        roots = self.config.bundle_roots
        try:
            resolved = Path(uri).resolve()
            inside = any(resolved.is_relative_to(root.resolve()) for root in roots)
        except (ValueError, OSError, RuntimeError):  # a NUL byte, a name too long, a symlink loop
            inside = False
        if not inside:
            allowed = ", ".join(str(r) for r in roots) or "none configured"
            raise RequestError(
                400, f"parameters.uri: {uri!r} is outside the allowed bundle roots ({allowed})"
            )


def _listing_versions(kept: Mapping[str, ServedVersion]) -> dict[str, ServedVersion]:
    """The kept versions of one name, each with metadata listing them all."""
    listed = list(kept)
    relisted = {}
    for version, served in kept.items():
        active = served.active
        metadata = _metadata(active.loaded, active.outputs, active.predict_datatype, listed)
        relisted[version] = ServedVersion(dataclasses.replace(active, metadata=metadata), served.source)
    return relisted


def predict(state: ServingState, active: ActiveModel, decoded: DecodedRequest) -> list[Output]:
    """Run the model on a validated request, count it, log it (sampled), and return the requested outputs."""
    pred, proba = active.loaded.predictor.predict(decoded.columns)
    active.metrics.observe(decoded.columns, pred, decoded.n_rows, warnings=decoded.warnings)
    inference_log = state.inference_log
    if inference_log is not None:
        produced = {"predict": np.asarray(pred)}
        if proba is not None:
            produced["probabilities"] = proba
        inference_log.record(active.name, active.version, decoded.columns, produced, decoded.id)
    wanted = decoded.outputs or active.outputs
    outputs = []
    if "predict" in wanted:
        outputs.append(Output("predict", active.predict_datatype, np.asarray(pred)))
    if proba is not None and "probabilities" in wanted:
        outputs.append(Output("probabilities", "FP64", proba))
    return outputs
