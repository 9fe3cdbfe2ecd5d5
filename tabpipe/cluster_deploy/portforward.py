"""Reach an in-cluster Service from outside the cluster through ``kubectl port-forward``.

The deploy stage inside the cluster smoke-tests a Service by its DNS name; ``tabpipe deploy``
run from a laptop cannot resolve that name, so it forwards a loopback port to the Service
for the length of the smoke test and stops the forward by its own process handle.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from tabpipe.errors import ServiceError

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


def service_of(url: str) -> tuple[str, str, int]:
    """(service, namespace, port) of an in-cluster URL such as ``http://svc.ns.svc.cluster.local:8080``.

    Raises:
        ServiceError: the URL does not name a Service.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    if len(labels) < 3 or labels[2] != "svc":
        raise ServiceError(f"{url} is not an in-cluster Service address (<service>.<namespace>.svc...)")
    return labels[0], labels[1], parts.port or 80


@contextmanager
def forwarded(url: str, kubeconfig: str | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Yield a ``http://127.0.0.1:<port>`` URL forwarded to the Service ``url`` names."""
    service, namespace, port = service_of(url)
    command = [
        "kubectl",
        *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []),
        "-n",
        namespace,
        "port-forward",
        "--address=127.0.0.1",
        f"svc/{service}",
        f":{port}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = _FORWARDING.search(line)
        if not match:
            error = process.stderr.read() if process.poll() is not None and process.stderr else line
            raise ServiceError(
                f"kubectl port-forward to svc/{service} in {namespace} failed: {error.strip()}"
            )
        path = urlsplit(url).path.rstrip("/")
        yield f"http://127.0.0.1:{match.group(1)}{path}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
