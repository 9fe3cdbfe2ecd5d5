"""make run uses only servers it started, unless told to reuse one, and says which it uses."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tabpipe.errors import ServiceError
from tabpipe.mlflow_server import PID_FILENAME, ensure_server, started_here
from tabpipe.serving.launcher import DEFAULT_SERVE_PORT, ensure_serving

REPO = Path(__file__).resolve().parents[2]


class _AnswersEverything(http.server.BaseHTTPRequestHandler):
    """Someone else's server: 200 on every GET (so it looks healthy and live)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def foreign_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AnswersEverything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_foreign_mlflow_is_refused_unless_reuse_is_asked(foreign_server: str, tmp_path: Path) -> None:
    with pytest.raises(ServiceError) as err:
        ensure_server(foreign_server, tmp_path / "mlflow")
    message = str(err.value)
    assert f"a MLflow server this project did not start already answers at {foreign_server}" in message
    assert "make run REUSE=1" in message
    handle = ensure_server(foreign_server, tmp_path / "mlflow", reuse=True)
    assert (handle.url, handle.started, handle.pid) == (foreign_server, False, None)


def test_a_foreign_endpoint_is_refused_for_serving(foreign_server: str, tmp_path: Path) -> None:
    with pytest.raises(ServiceError) as err:
        ensure_serving(foreign_server, "m", "http://127.0.0.1:9", tmp_path / "serving")
    assert "serving endpoint this project did not start" in str(err.value) and "SERVE_PORT" in str(err.value)


def test_our_own_server_is_recognised_by_its_pid_file_and_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--port", str(port)])
    try:
        (tmp_path / PID_FILENAME).write_text(f"{sleeper.pid}\n")
        # On a loaded machine the child's /proc entry may lag its start by a moment.
        deadline = time.monotonic() + 10
        while started_here(tmp_path, f"http://127.0.0.1:{port}") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started_here(tmp_path, f"http://127.0.0.1:{port}") == sleeper.pid
        assert started_here(tmp_path, f"http://127.0.0.1:{port + 1}") is None  # another port: not ours
    finally:
        sleeper.kill()
        sleeper.wait()
    assert started_here(tmp_path, f"http://127.0.0.1:{port}") is None  # no longer alive


def test_tabpipe_run_refuses_a_foreign_server_in_one_line(foreign_server: str, tmp_path: Path) -> None:
    config = str(REPO / "tests/fixtures/e2e/phishing_small.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "tabpipe.cli", "run", "--config", config,
         "--tracking-uri", foreign_server, "--state-dir", str(tmp_path), "--no-serve"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"already answers at {foreign_server}; refusing to use it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pipeline_root").exists()  # nothing ran


def test_the_local_serving_default_does_not_collide_with_the_cluster_ui_port() -> None:
    import yaml

    kind = yaml.safe_load((REPO / "kind-cluster.yaml").read_text())
    host_ports = {m["hostPort"] for node in kind["nodes"] for m in node.get("extraPortMappings", [])}
    assert DEFAULT_SERVE_PORT not in host_ports and 5000 not in host_ports
