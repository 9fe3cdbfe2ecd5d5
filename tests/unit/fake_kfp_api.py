"""A stand-in for the KFP API server: a real HTTP server on 127.0.0.1 answering the v2beta1 REST calls.

A real KFP API server needs a Kubernetes cluster, which this machine does not
have. This server implements just the endpoints ``kfp.Client`` (2.17) calls for
submitting, waiting, uploading and scheduling, with the request and response
shapes of KFP's v2beta1 REST API (snake_case JSON, filter.proto filters, the
multipart upload), keeps what it is sent, and lets a test script how a run's
state evolves or make calls fail. It checks what the client sends; it does not
prove what a real server does with it.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"
CREATED_AT = "2026-01-01T00:00:00Z"


@dataclass
class Received:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, the uploaded file's text, or None


@dataclass
class FakeKfp:
    """The server's state, readable and scriptable by a test."""

    #: States a new run goes through, one per GET of the run; the last one stays.
    run_states: list[str] = field(default_factory=lambda: ["PENDING", "RUNNING", "SUCCEEDED"])
    #: The error a run ending in FAILED/ERROR reports.
    run_error: str | None = None
    #: Answer this many GETs of a run with HTTP 503 first.
    get_run_failures: int = 0
    #: Answer every POST of a run with this HTTP status (an API that refuses).
    create_run_status: int | None = None
    #: How the healthz endpoint answers: (status, content type, body); None for the real answer.
    healthz: tuple[int, str, bytes] | None = None
    #: Ignore list filters (an API that does not filter) and serve pages of at most this size.
    ignore_filters: bool = False
    max_page_size: int = 100
    received: list[Received] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _polls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids):04d}"

    def calls(self, method: str, path_prefix: str) -> list[Received]:
        """The requests with this method whose path starts with ``PREFIX + path_prefix``."""
        return [r for r in self.received if r.method == method and r.path.startswith(PREFIX + path_prefix)]


def _matches(item: dict, filter_json: str | None) -> bool:
    """filter.proto as JSON: EQUALS predicates on string keys (what kfp.Client and tabpipe send)."""
    if not filter_json:
        return True
    for predicate in json.loads(filter_json).get("predicates", []):
        operation = predicate.get("operation")
        if operation not in ("EQUALS", 1):
            raise ValueError(f"unsupported filter operation {operation!r}")
        value = predicate.get("stringValue", predicate.get("string_value"))
        if item.get(predicate["key"]) != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKfp  # set on the subclass made per server

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "code": 3 if status == 400 else 5, "message": message})

    def _read(self) -> tuple[Any, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            header = f"Content-Type: {kind}\r\n\r\n".encode()
            message = BytesParser(policy=policy.default).parsebytes(header + raw)
            for part in message.iter_parts():
                if part.get_filename():
                    return part.get_payload(decode=True).decode(), part.get_filename()
            return None, ""
        return (json.loads(raw) if raw else None), ""

    def _page(self, items: list[dict], query: dict[str, str], key: str) -> None:
        if not self.fake.ignore_filters:
            items = [i for i in items if _matches(i, query.get("filter"))]
        size = min(int(query.get("page_size") or 10), self.fake.max_page_size)
        start = int(query.get("page_token") or 0)
        page = items[start : start + size]
        token = str(start + size) if start + size < len(items) else ""
        self._send(200, {key: page, "total_size": len(items), "next_page_token": token})

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body, filename = self._read() if method in ("POST", "PUT", "PATCH") else (None, "")
        fake = self.fake
        with fake._lock:
            fake.received.append(Received(method, url.path, query, body))
            if not url.path.startswith(PREFIX):
                return self._error(404, f"no route {url.path}")
            parts = url.path[len(PREFIX) :].strip("/").split("/")
            route = getattr(self, f"_{method.lower()}_{parts[0]}", None)
            if route is None:
                return self._error(404, f"no route {method} {url.path}")
            return route(parts[1:], query, body, filename)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # ------------------------------------------------------------------ routes

    def _get_healthz(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        if self.fake.healthz is None:
            return self._send(200, {"multi_user": False, "pipeline_store": "database"})
        status, kind, data = self.fake.healthz
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if status in (301, 302, 303, 307):
            self.send_header("Location", "/dex/auth?client_id=kubeflow-oidc-authservice")
        self.end_headers()
        self.wfile.write(data)

    def _get_experiments(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        self._page(list(self.fake.experiments.values()), query, "experiments")

    def _post_experiments(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        experiment = {
            "experiment_id": self.fake.new_id("experiment"),
            "display_name": body["display_name"],
            "namespace": body.get("namespace") or "",
            "created_at": CREATED_AT,
            "storage_state": "AVAILABLE",
        }
        self.fake.experiments[experiment["experiment_id"]] = experiment
        self._send(200, experiment)

    def _post_runs(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        if self.fake.create_run_status:
            return self._error(self.fake.create_run_status, "run spec rejected: invalid pipeline spec")
        if body.get("experiment_id") not in self.fake.experiments:
            return self._error(400, f"experiment {body.get('experiment_id')} not found")
        run = {
            "run_id": self.fake.new_id("run"),
            "display_name": body.get("display_name"),
            "experiment_id": body["experiment_id"],
            "runtime_config": body.get("runtime_config") or {},
            "service_account": body.get("service_account") or "",
            "created_at": CREATED_AT,
            "state": self.fake.run_states[0],
        }
        self.fake.runs[run["run_id"]] = run
        self._polls[run["run_id"]] = 0
        self._send(200, run)

    @property
    def _polls(self) -> dict[str, int]:
        return self.fake._polls

    def _get_runs(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        run = self.fake.runs.get(rest[0]) if rest else None
        if run is None:
            return self._error(404, f"run {rest} not found")
        if self.fake.get_run_failures > 0:
            self.fake.get_run_failures -= 1
            return self._error(503, "upstream connect error or disconnect/reset before headers")
        states = self.fake.run_states
        index = min(self._polls[run["run_id"]], len(states) - 1)
        self._polls[run["run_id"]] += 1
        run["state"] = states[index]
        answer = dict(run)
        if run["state"] in ("FAILED", "ERROR") and self.fake.run_error:
            answer["error"] = {"code": 2, "message": self.fake.run_error}
        self._send(200, answer)

    def _get_pipelines(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        if not rest:
            return self._page(list(self.fake.pipelines.values()), query, "pipelines")
        if len(rest) == 2 and rest[1] == "versions":
            versions = [v for v in self.fake.versions.values() if v["pipeline_id"] == rest[0]]
            return self._page(versions, query, "pipeline_versions")
        self._error(404, f"no route GET pipelines/{'/'.join(rest)}")

    def _post_pipelines(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        if not rest:
            name = body.get("display_name") or body.get("name")
            if any(p["display_name"] == name for p in self.fake.pipelines.values()):
                return self._error(409, f"pipeline {name} already exists")
            pipeline = {
                "pipeline_id": self.fake.new_id("pipeline"),
                "display_name": name,
                "name": body.get("name") or name,
                "description": body.get("description") or "",
                "created_at": CREATED_AT,
            }
            self.fake.pipelines[pipeline["pipeline_id"]] = pipeline
            return self._send(200, pipeline)
        if rest == ["upload_version"]:
            pipeline_id = query.get("pipelineid", "")
            if pipeline_id not in self.fake.pipelines:
                return self._error(400, "Failed to create a pipeline version")
            name = query.get("display_name") or query.get("name") or filename
            if any(
                v["pipeline_id"] == pipeline_id and v["name"] == name for v in self.fake.versions.values()
            ):
                return self._error(409, "Failed to create a pipeline version")
            version = {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": self.fake.new_id("version"),
                "display_name": name,
                "name": name,
                "description": query.get("description") or "",
                "created_at": CREATED_AT,
                "spec_text": body,
            }
            self.fake.versions[version["pipeline_version_id"]] = version
            return self._send(200, {k: v for k, v in version.items() if k != "spec_text"})
        self._error(404, f"no route POST pipelines/{'/'.join(rest)}")

    def _get_recurringruns(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        runs = list(self.fake.recurring_runs.values())
        if query.get("experiment_id"):
            runs = [r for r in runs if r["experiment_id"] == query["experiment_id"]]
        # recurring_run.proto names this field in camelCase, unlike every other list response.
        self._page(runs, query, "recurringRuns")

    def _post_recurringruns(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        reference = body.get("pipeline_version_reference") or {}
        if reference.get("pipeline_version_id") not in self.fake.versions:
            return self._error(400, "pipeline version not found")
        run = {
            **body,
            "recurring_run_id": self.fake.new_id("recurring"),
            "created_at": CREATED_AT,
            "updated_at": CREATED_AT,
            "status": "ENABLED",
        }
        self.fake.recurring_runs[run["recurring_run_id"]] = run
        self._send(200, run)

    def _delete_recurringruns(self, rest: list[str], query: dict, body: Any, filename: str) -> None:
        if not rest or self.fake.recurring_runs.pop(rest[0], None) is None:
            return self._error(404, "recurring run not found")
        self._send(200, {})


class FakeKfpServer:
    """Runs a :class:`FakeKfp` on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, fake: FakeKfp | None = None) -> None:
        self.fake = fake or FakeKfp()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKfpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
