"""A real Kubernetes control plane on loopback for the cluster tests, with KWOK as its node.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK run as separate
processes on free 127.0.0.1 ports (the binaries come from ``make control-plane``). The API
server is real: admission, CRD schemas, RBAC, server-side apply. Controllers are real too:
Deployments get ReplicaSets and Pods, and KWOK plays the kubelet, so Pods go Running and
Deployments become Available, or stay crash-looping for an image tagged ``:broken``.

Nothing in a Pod ever runs, and Pod and Service IPs are private-range addresses that must
never be contacted: everything here talks to the API server on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KUBERNETES_VERSION = "v1.33.13"
#: Pods of this image crash-loop (a KWOK stage below); every other image "runs".
BROKEN_IMAGE = "tabpipe:broken"
FAKE_NODE = "kwok-node-0"
READY_TIMEOUT_SECONDS = 60.0

# A stage that keeps pods of BROKEN_IMAGE in CrashLoopBackOff, ahead of KWOK's own
# "pod-ready" stage (higher weight wins), so a rollout to that image never becomes available.
CRASH_LOOP_STAGE = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1",
    "kind": "Stage",
    "metadata": {"name": "pod-crash-loop"},
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "weight": 100,
        "selector": {
            "matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.podIP", "operator": "DoesNotExist"},
                {"key": ".spec.containers.[0].image", "operator": "In", "values": [BROKEN_IMAGE]},
            ]
        },
        "next": {
            "statusTemplate": """
phase: Running
conditions:
- type: Initialized
  status: "True"
- type: Ready
  status: "False"
  reason: ContainersNotReady
- type: ContainersReady
  status: "False"
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name }}
  image: {{ .image }}
  ready: false
  restartCount: 5
  state:
    waiting:
      reason: CrashLoopBackOff
      message: "back-off restarting failed container"
{{ end }}
hostIP: 127.0.0.1
podIP: 10.0.0.99
""",
        },
    },
}


def cache_dir() -> Path:
    """Where ``make control-plane`` put the binaries and CRDs."""
    return Path(os.environ.get("TABPIPE_CACHE") or Path.home() / ".cache" / "tabpipe")


def binaries_missing(cache: Path | None = None) -> list[str]:
    """The control-plane programs that are not installed (empty when all are)."""
    cache = cache or cache_dir()
    missing = [
        n
        for n in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
        if not (cache / "bin" / n).exists()
    ]
    missing += [n for n in ("etcd", "kubectl", "openssl") if shutil.which(n) is None]
    return missing


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check, what: str, logs: Path, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s; logs in {logs}")


@dataclass
class ControlPlane:
    """A running control plane: its kubeconfig, a kubectl runner and the processes to stop."""

    workdir: Path
    cache: Path
    kubeconfig: Path = field(init=False)
    server: str = field(init=False, default="")
    admin_token: str = field(init=False, default="")
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        """Start etcd, the API server, controller-manager, scheduler and KWOK; wait until ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._certificates()
        tokens = {name: secrets.token_hex(16) for name in ("admin", "controller", "scheduler", "kwok")}
        self.admin_token = tokens["admin"]
        # Test harness identities are cluster admins; the RBAC under test is the project's own.
        (self.workdir / "tokens.csv").write_text(
            "".join(f'{t},tabpipe-{n},{n},"system:masters"\n' for n, t in tokens.items())
        )
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        self._spawn(
            "etcd",
            [
                "etcd",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--unsafe-no-fsync",
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
            ],
        )
        certs = self.workdir / "pki"
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.cache / "bin" / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={certs / 'apiserver.crt'}",
                f"--tls-private-key-file={certs / 'apiserver.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
        )
        self.kubeconfig = self._write_kubeconfig("admin", tokens["admin"])
        _wait_until(self._api_ready, "kube-apiserver", self.workdir)
        common = ["--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false"]
        controller_kubeconfig = self._write_kubeconfig("controller", tokens["controller"])
        self._spawn(
            "kube-controller-manager",
            [
                str(self.cache / "bin" / "kube-controller-manager"),
                f"--kubeconfig={controller_kubeconfig}",
                f"--authentication-kubeconfig={controller_kubeconfig}",
                f"--authorization-kubeconfig={controller_kubeconfig}",
                f"--secure-port={free_port()}",
                *common,
                f"--service-account-private-key-file={certs / 'sa.key'}",
                f"--root-ca-file={certs / 'ca.crt'}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--concurrent-deployment-syncs=5",
                # On a busy 2-core machine KWOK's lease renewals can lag; the default 40 s grace would
                # then mark the node NotReady and evict pods in the middle of a rollout test.
                "--node-monitor-grace-period=600s",
            ],
        )
        scheduler_kubeconfig = self._write_kubeconfig("scheduler", tokens["scheduler"])
        self._spawn(
            "kube-scheduler",
            [
                str(self.cache / "bin" / "kube-scheduler"),
                f"--kubeconfig={scheduler_kubeconfig}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                f"--secure-port={free_port()}",
                *common,
            ],
        )
        self._start_kwok(self._write_kubeconfig("kwok", tokens["kwok"]))
        self.apply_crds()
        return self

    def stop(self) -> None:
        """Stop every process this control plane started, newest first, by its own handle."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()

    # ---- helpers for tests -----------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        as_user: str | None = None,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (``as_user`` impersonates, e.g. a ServiceAccount)."""
        command = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        if as_user:
            command.append(f"--as={as_user}")
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command[2:])} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def crd_files(self) -> list[Path]:
        """The CRDs the cluster tests need: KServe's, Argo's minimal ones, and the project's own."""
        crds = self.cache / "crds"
        own = Path(__file__).resolve().parents[2] / "manifests" / "crds"
        return (
            sorted((crds / "kserve").glob("*.yaml"))
            + sorted((crds / "argo").glob("*.yaml"))
            + sorted(own.glob("*.yaml"))
        )

    def apply_crds(self) -> None:
        """Apply every CRD server-side and wait until each is Established."""
        files = self.crd_files()
        for path in files:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    def api_client(self):  # -> kubernetes.client.ApiClient
        """A Python ``kubernetes`` client for this control plane (admin)."""
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig carrying a real token of ServiceAccount ``namespace/name`` (TokenRequest)."""
        token = self.kubectl("-n", namespace, "create", "token", name, "--duration=1h").stdout.strip()
        return self._write_kubeconfig(f"sa-{namespace}-{name}", token, path)

    # ---- internals -------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed when the process ends)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append((name, process))

    def _api_ready(self) -> bool:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}; see {self.workdir / (name + '.log')}"
                )
        context = ssl.create_default_context(cafile=str(self.workdir / "pki" / "ca.crt"))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def _certificates(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=pki)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=tabpipe-test-ca",
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
        )
        (pki / "san.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n"
        )
        openssl(
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "apiserver.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        )
        openssl("genrsa", "-out", "sa.key", "2048")
        openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def _write_kubeconfig(self, user: str, token: str, path: Path | None = None) -> Path:
        path = path or self.workdir / f"{user}.kubeconfig"
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "test",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.workdir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        }
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    def _start_kwok(self, kubeconfig: Path) -> None:
        stages = list(yaml.safe_load_all((self.cache / "crds" / "kwok-stages-fast.yaml").read_text()))
        configuration = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            "options": {
                "enableCRDs": [],
                "nodeLeaseParallelism": 2,
                "podPlayStageParallelism": 8,
                "nodePlayStageParallelism": 4,
                "cidr": "10.0.0.1/24",
                "nodeIP": "10.0.0.1",
            },
        }
        (self.workdir / "kwok.yaml").write_text(
            yaml.safe_dump_all([configuration, *stages, CRASH_LOOP_STAGE])
        )
        self._spawn(
            "kwok",
            [
                str(self.cache / "bin" / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={self.workdir / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": FAKE_NODE, "type": "kwok"},
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(node))
        self.kubectl("wait", "--for=condition=Ready", f"node/{FAKE_NODE}", "--timeout=60s")
