"""The cluster manifests (manifests/): rendered with kustomize, then applied to a real API server.

Offline (kubectl kustomize only; collected with the cluster tests, marker ``cluster``):
every local overlay renders from a copy of manifests/ with freshly generated credentials; no
rendered object carries a credential outside a Secret; every pod is non-root with a read-only
root filesystem, pinned images, no service links and no API token; the serving objects agree
with what the deploy stage renders and reads (tabpipe.cluster_deploy, tabpipe.config); the
SeldonDeployment passes the rules of Seldon Core 1.17.1's validating webhook; the kind config
pins its node image by digest on loopback ports.

Against the control plane (fixture ``control_plane``: kube-apiserver v1.33 with the real KServe
CRDs and manifests/crds, KWOK as the node): every local overlay applies server-side; pods are
admitted under Pod Security "restricted" and the plain Deployments roll out; ``--dry-run=server``
rejects broken SeldonDeployments, InferenceServices and Deployments; ``kubectl auth can-i`` shows
the deploy account can do exactly what the deploy stage does, and nothing else.

Not covered (nothing here can run them): the KFP overlay (its base is a remote ref; it is
rendered by hand, see manifests/README.md), Seldon's and KServe's controllers and webhooks, and
containers actually running.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KIND_CONFIG = ROOT / "kind-cluster.yaml"
GENERATOR = MANIFESTS / "generate-secrets.py"

#: Every overlay rendered and applied here, in apply order (namespaces before their users).
LOCAL_OVERLAYS = (
    "base",
    "pipeline",
    "kind",
    "serving/base",
    "serving/plain",
    "serving/plain-canary",
    "serving/seldon",
    "serving/kserve",
)
#: Overlays whose base is KFP's remote kustomization: never rendered or applied by tests.
REMOTE_OVERLAYS = ("kfp", "kfp/cluster-scoped")
KFP_REF = "2.17.0"
KFP_REMOTE = "github.com/kubeflow/pipelines/manifests/kustomize/"

SERVING_TARGETS = ("serving/plain", "serving/plain-canary", "serving/seldon", "serving/kserve")
MODEL = "phishing-classifier"
DEPLOYER = "system:serviceaccount:kubeflow:tabpipe-deployer"
RUNNER = "system:serviceaccount:kubeflow:tabpipe-pipeline-runner"
MODEL_SERVER = "system:serviceaccount:tabpipe-serving:tabpipe-model-server"
FIELD_MANAGER = "tabpipe-manifests"

CREDENTIAL_NAME = re.compile(
    r"passw(or)?d|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential", re.IGNORECASE
)
WORKLOAD_KINDS = ("Deployment", "Job", "SeldonDeployment", "InferenceService", "ServingRuntime")


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The overlays rendered from one copy of manifests/, and the credentials generated for it."""

    tree: Path
    text: dict[str, str]
    objects: dict[str, list[dict[str, Any]]]
    credentials: dict[str, str]

    def all_objects(self) -> list[dict[str, Any]]:
        seen, result = set(), []
        for overlay in LOCAL_OVERLAYS:
            for obj in self.objects[overlay]:
                key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                if key not in seen:
                    seen.add(key)
                    result.append(obj)
        return result

    def find(self, overlay: str, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.objects[overlay] if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{overlay}: expected one {kind}/{name}, found {len(matches)}"
        return matches[0]


def kustomize(directory: Path) -> str:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr.strip()}"
    return result.stdout


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Every local overlay, rendered from a copy of manifests/ whose credential files were just generated.

    The copy leaves out any credential files of the working tree, so the values checked for below
    are exactly the ones generated here.
    """
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render the manifests (kubectl kustomize)")
    tree = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, tree, ignore=shutil.ignore_patterns("*.env"))
    result = subprocess.run(
        [sys.executable, str(tree / "generate-secrets.py"), "--root", str(tree)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in result.stdout
    credentials = {}
    for path in tree.rglob("secrets/*.env"):
        for key, value in env_values(path).items():
            credentials[f"{path.relative_to(tree)}:{key}"] = value
    text = {overlay: kustomize(tree / overlay) for overlay in LOCAL_OVERLAYS}
    objects = {overlay: [d for d in yaml.safe_load_all(text[overlay]) if d] for overlay in LOCAL_OVERLAYS}
    return Rendered(tree, text, objects, credentials)


def pod_specs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, pod-level spec, container-level defaults) of every pod an object makes.

    A ServingRuntime has no pod-level settings of its own: its containers are checked with the
    pod-level settings of the InferenceService that uses it (see ``kserve_pods``).
    """
    kind, name = obj["kind"], obj["metadata"]["name"]
    if kind in ("Deployment", "Job"):
        return [(f"{kind}/{name}", obj["spec"]["template"]["spec"], {})]
    if kind == "SeldonDeployment":
        return [
            (f"{kind}/{name}/{p['name']}[{i}]", c["spec"], {})
            for p in obj["spec"]["predictors"]
            for i, c in enumerate(p.get("componentSpecs", []))
        ]
    return []


def kserve_pods(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The pod KServe builds for an InferenceService: its predictor's pod fields, the runtime's containers."""
    runtimes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServingRuntime"}
    pods = []
    for isvc in (o for o in objects if o["kind"] == "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        runtime = runtimes[predictor["model"]["runtime"]]["spec"]
        pod = {k: v for k, v in predictor.items() if k not in ("model", "minReplicas", "maxReplicas")}
        pod["containers"] = copy.deepcopy(runtime["containers"])
        pod["volumes"] = [*pod.get("volumes", []), *runtime.get("volumes", [])]
        pods.append((f"InferenceService/{isvc['metadata']['name']}", pod))
    return pods


def all_pods(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    pods = [(label, spec) for obj in objects for label, spec, _ in pod_specs(obj)]
    return pods + kserve_pods(objects)


def model_containers(rendered: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(target, pod, model container) for every model server the serving targets run."""
    found = []
    for target in SERVING_TARGETS:
        for label, pod in all_pods(rendered.objects[target]):
            for container in pod["containers"]:
                found.append((f"{target}:{label}", pod, container))
    return found


# ---------------------------------------------------------------------------------------------
# Offline: rendering, credentials, pod security
# ---------------------------------------------------------------------------------------------


def test_every_kustomization_is_rendered_or_known_remote() -> None:
    found = {str(p.parent.relative_to(MANIFESTS)) for p in MANIFESTS.rglob("kustomization.yaml")}
    assert found == set(LOCAL_OVERLAYS) | set(REMOTE_OVERLAYS), "an overlay is neither tested nor known"


@pytest.mark.parametrize("overlay", LOCAL_OVERLAYS)
def test_overlay_renders_labelled_objects(rendered: Rendered, overlay: str) -> None:
    objects = rendered.objects[overlay]
    assert objects, f"{overlay} renders nothing"
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "tabpipe", f"{overlay}: {obj['kind']} unlabelled"
        if obj["kind"] not in ("Namespace",):
            assert obj["metadata"].get("namespace") in ("tabpipe", "kubeflow", "tabpipe-serving"), obj[
                "metadata"
            ]


def test_remote_overlays_pin_kfp_2_17_0_and_local_ones_stay_local() -> None:
    for overlay in REMOTE_OVERLAYS:
        kust = yaml.safe_load((MANIFESTS / overlay / "kustomization.yaml").read_text())
        remote = [r for r in kust["resources"] if "://" in r or r.startswith("github.com")]
        assert remote and all(r.startswith(KFP_REMOTE) and r.endswith(f"?ref={KFP_REF}") for r in remote), (
            remote
        )
    for overlay in LOCAL_OVERLAYS:
        kust = yaml.safe_load((MANIFESTS / overlay / "kustomization.yaml").read_text())
        for entry in kust.get("resources", []):
            assert (MANIFESTS / overlay / entry).exists(), f"{overlay}: {entry} is not a local path"


def test_generated_credentials_are_private_consistent_and_kept(tmp_path: Path) -> None:
    tree = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, tree, ignore=shutil.ignore_patterns("*.env"))
    run = [sys.executable, str(tree / "generate-secrets.py"), "--root", str(tree)]
    subprocess.run(run, check=True, capture_output=True)
    files = sorted(tree.rglob("secrets/*.env"))
    assert len(files) == 5
    first = {p: p.read_text() for p in files}
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert path.parent.stat().st_mode & 0o777 == 0o700, path.parent
    # One key pair everywhere, under each consumer's key names.
    pairs = {tuple(v for k, v in env_values(p).items()) for p in files if p.name != "admin-token.env"}
    assert len(pairs) == 1 and all(len(v) >= 16 for v in next(iter(pairs)))
    # A second run keeps everything; a missing file is refilled with the same pair.
    (tree / "kfp/secrets/mlpipeline-minio-artifact.env").unlink()
    output = subprocess.run(run, check=True, capture_output=True, text=True).stdout
    assert {p: p.read_text() for p in files} == first
    for value in next(iter(pairs)):
        assert value not in output, "the generator printed a credential"
    # --force rotates all of them.
    subprocess.run([*run, "--force"], check=True, capture_output=True)
    assert all(p.read_text() != first[p] for p in files)


def test_generated_credential_files_are_gitignored_and_not_tracked() -> None:
    generated = [
        "base/secrets/minio-root.env",
        "pipeline/secrets/pipeline-store.env",
        "kfp/secrets/mlpipeline-minio-artifact.env",
        "serving/base/secrets/serving-store.env",
        "serving/base/secrets/admin-token.env",
    ]
    paths = [f"manifests/{p}" for p in generated]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == sorted(paths)
    tracked = subprocess.run(
        ["git", "ls-files", "manifests"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert not [t for t in tracked.split() if t.endswith(".env")], "a credential file is tracked"
    for example in (MANIFESTS / p for p in generated):
        values = env_values(example.with_name(example.name + ".example"))
        assert values and all(v == "" for v in values.values()), f"{example}.example must have empty values"


def test_no_credential_outside_secret_objects(rendered: Rendered) -> None:
    values = [v for v in rendered.credentials.values() if v]
    assert len(values) >= 3
    encoded = {base64.b64encode(v.encode()).decode() for v in values}
    for overlay, objects in rendered.objects.items():
        for obj in objects:
            dumped = json.dumps(obj)
            for value in values:
                assert value not in dumped, (
                    f"{overlay}: {obj['kind']}/{obj['metadata']['name']} holds a credential"
                )
            if obj["kind"] == "Secret":
                assert "stringData" not in obj
                continue
            for value in encoded:
                assert value not in dumped, (
                    f"{overlay}: {obj['kind']} {obj['metadata']['name']} holds a credential"
                )
            # No credential-like env var or key with a literal value anywhere else.
            for path, node in walk(obj):
                if isinstance(node, dict) and isinstance(node.get("name"), str) and "value" in node:
                    assert not CREDENTIAL_NAME.search(node["name"]), (
                        f"{overlay}: {path} literal {node['name']}"
                    )
    # And no committed manifest sets KFP's public default keys (comments may name them).
    for path in MANIFESTS.rglob("*.yaml"):
        content = json.dumps([d for d in yaml.safe_load_all(path.read_text()) if d])
        assert "minio123" not in content, path


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def test_secrets_are_generated_from_the_credential_files(rendered: Rendered) -> None:
    secrets = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in rendered.all_objects()
        if o["kind"] == "Secret" and o.get("type") != "kubernetes.io/service-account-token"
    }
    names = {(ns, re.sub(r"-[a-z0-9]{10}$", "", name)) for ns, name in secrets}
    assert names == {
        ("tabpipe", "minio-root"),
        ("kubeflow", "tabpipe-pipeline-store"),
        ("tabpipe-serving", "tabpipe-serving-store"),
        ("tabpipe-serving", "tabpipe-serving-admin-token"),
    }
    decoded = {
        value
        for secret in secrets.values()
        for value in (base64.b64decode(v).decode() for v in secret["data"].values())
    }
    assert decoded <= set(rendered.credentials.values())


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


def test_every_pod_is_non_root_read_only_and_pinned(rendered: Rendered) -> None:
    from components.image import BASE_IMAGE

    pods = all_pods(rendered.all_objects())
    assert len(pods) >= 7
    for label, pod in pods:
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), label
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{label}/{container['name']}"
            sc = container.get("securityContext", {})
            assert effective(pod, container, "runAsNonRoot") is True, where
            assert effective(pod, container, "runAsUser") not in (None, 0), where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert not sc.get("privileged"), where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), (
                where
            )
            assert effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, where
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), where
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and "/" not in tag and tag != "latest", f"{where}: {image} is not pinned"
            if "minio/minio" not in image:
                assert image == BASE_IMAGE, f"{where}: {image} is not the project image {BASE_IMAGE}"
            assert container.get("imagePullPolicy") == "IfNotPresent", where


def test_no_service_links_no_api_token_and_own_service_accounts(rendered: Rendered) -> None:
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in rendered.all_objects()
        if o["kind"] == "ServiceAccount"
    }
    for label, pod in all_pods(rendered.all_objects()):
        assert pod.get("enableServiceLinks") is False, f"{label}: service links inject env vars"
        assert pod.get("automountServiceAccountToken") is False, f"{label}: mounts an API token"
        account = pod.get("serviceAccountName")
        assert account and account != "default", f"{label}: runs as the namespace's default account"
        namespace = (
            "tabpipe"
            if label.startswith(("Deployment/minio", "Deployment/mlflow", "Job/"))
            else "tabpipe-serving"
        )
        assert (namespace, account) in accounts, f"{label}: ServiceAccount {account} not in the manifests"
    # None of these accounts is bound to anything, and none mounts a token by default.
    bound = {
        (s.get("namespace", ""), s["name"])
        for o in rendered.all_objects()
        if o["kind"] == "RoleBinding"
        for s in o["subjects"]
    }
    for (namespace, name), account in accounts.items():
        if name == "tabpipe-pipeline-runner":
            continue  # KFP's launcher and Argo's executor in every task pod use its token.
        assert account.get("automountServiceAccountToken") is False, name
        if name != "tabpipe-deployer":
            assert (namespace, name) not in bound, f"{name} should be bound to nothing"


def test_namespaces_enforce_restricted_pod_security(rendered: Rendered) -> None:
    namespaces = {o["metadata"]["name"]: o for o in rendered.all_objects() if o["kind"] == "Namespace"}
    assert set(namespaces) == {"tabpipe", "tabpipe-serving"}, "kubeflow belongs to KFP"
    for namespace in namespaces.values():
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---------------------------------------------------------------------------------------------
# Offline: the serving objects agree with the deploy stage and the config
# ---------------------------------------------------------------------------------------------


def arg_after(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def test_model_servers_run_tabpipe_serve_on_the_bundle_with_oip_probes(rendered: Rendered) -> None:
    from tabpipe.config import ClusterDeployConfig

    config = ClusterDeployConfig()
    containers = model_containers(rendered)
    assert len(containers) == 5  # plain, plain-canary (stable + canary), seldon, kserve
    for where, pod, container in containers:
        assert container["command"] == ["tabpipe", "serve"], where
        args = container["args"]
        uri = arg_after(args, "--model") if "--model" in args else None
        port = int(arg_after(args, "--port"))
        assert arg_after(args, "--host") == "0.0.0.0", where
        assert "--digest" not in args, f"{where}: --digest with an s3:// model refuses to start"
        (declared,) = container["ports"]
        assert declared["containerPort"] == port, where
        for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
            get = container[probe]["httpGet"]
            assert get["path"] == path and get["port"] in (port, declared["name"]), f"{where}: {probe}"
        env = {e["name"]: e for e in container["env"]}
        assert env["MINIO_ENDPOINT"]["value"] == config.object_store_endpoint, where
        assert env["HOME"]["value"] == env["TMPDIR"]["value"] == "/tmp", where
        assert container["envFrom"] == [{"secretRef": {"name": config.object_store_secret}}], where
        # The admin token is a file from the Secret, never a literal.
        token_file = Path(arg_after(args, "--admin-token-file"))
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        (token_mount,) = [m for m in mounts.values() if token_file.parent == Path(m["mountPath"])]
        assert token_mount["readOnly"] is True
        assert volumes[token_mount["name"]]["secret"]["secretName"] == "tabpipe-serving-admin-token"
        assert "emptyDir" in volumes[mounts_by_path(container, "/tmp")["name"]], where
        if uri is not None:
            assert re.fullmatch(rf"s3://tabpipe-models/{MODEL}/\d+", uri), where
            # What it serves is logged where the deploy stage's servers log it (monitoring reads it).
            assert arg_after(args, "--inference-log") == config.inference_log_uri, where
    # KServe: the model URI comes from the InferenceService (runtime args first, then these).
    isvc = rendered.find("serving/kserve", "InferenceService", MODEL)
    assert isvc["spec"]["predictor"]["model"]["args"] == [
        "--model", f"s3://tabpipe-models/{MODEL}/1", "--inference-log", config.inference_log_uri,
    ]  # fmt: skip


def mounts_by_path(container: dict[str, Any], path: str) -> dict[str, Any]:
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    return mount


def test_serving_objects_match_the_deploy_stage(rendered: Rendered) -> None:
    """Names, labels, annotations and ports are the ones tabpipe.cluster_deploy renders and reads back."""
    from tabpipe.cluster_deploy import objects
    from tabpipe.config import ClusterDeployConfig

    config = ClusterDeployConfig()
    assert objects.object_name(MODEL) == MODEL
    for target in SERVING_TARGETS:
        for obj in rendered.objects[target]:
            assert obj["metadata"].get("namespace", obj["metadata"]["name"]) == config.namespace
    for kind, name, target, track, version in (
        ("Deployment", MODEL, "serving/plain", "stable", "1"),
        ("Deployment", f"{MODEL}-canary", "serving/plain-canary", "canary", "2"),
    ):
        deployment = rendered.find(target, kind, name)
        labels = {
            objects.NAME_LABEL: MODEL,
            "app.kubernetes.io/managed-by": objects.MANAGED_BY,
            objects.TRACK_LABEL: track,
        }
        assert deployment["spec"]["selector"]["matchLabels"] == labels
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels
        assert deployment["metadata"]["annotations"] == {
            objects.VERSION_ANNOTATION: version,
            objects.BUNDLE_ANNOTATION: f"s3://tabpipe-models/{MODEL}/{version}",
        }
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["name"] == objects.CONTAINER
        assert container["ports"][0]["containerPort"] == objects.CONTAINER_PORT[objects.ClusterTarget.PLAIN]
    service = rendered.find("serving/plain", "Service", MODEL)
    assert service["spec"]["selector"] == {objects.NAME_LABEL: MODEL}
    assert service["spec"]["ports"][0]["port"] == objects.SERVICE_PORT
    canary_service = rendered.find("serving/plain-canary", "Service", f"{MODEL}-canary")
    assert canary_service["spec"]["selector"] == {objects.NAME_LABEL: MODEL, objects.TRACK_LABEL: "canary"}
    sdep = rendered.find("serving/seldon", "SeldonDeployment", MODEL)
    (predictor,) = sdep["spec"]["predictors"]
    assert predictor["name"] == objects.predictor_name("1")
    assert predictor["graph"]["name"] == objects.CONTAINER
    (container,) = predictor["componentSpecs"][0]["spec"]["containers"]
    assert container["name"] == objects.CONTAINER
    assert container["ports"][0]["containerPort"] == objects.CONTAINER_PORT[objects.ClusterTarget.SELDON]
    runtime = rendered.find("serving/kserve", "ServingRuntime", "tabpipe")
    assert (
        runtime["spec"]["containers"][0]["ports"][0]["containerPort"]
        == (objects.CONTAINER_PORT[objects.ClusterTarget.KSERVE])
    )


def test_canary_pod_differs_from_the_stable_pod_only_in_version(rendered: Rendered) -> None:
    stable = rendered.find("serving/plain-canary", "Deployment", MODEL)
    canary = rendered.find("serving/plain-canary", "Deployment", f"{MODEL}-canary")

    def normalised(deployment: dict[str, Any]) -> str:
        return (
            json.dumps(deployment["spec"])
            .replace("canary", "TRACK")
            .replace("stable", "TRACK")
            .replace(f"{MODEL}/2", f"{MODEL}/V")
            .replace(f"{MODEL}/1", f"{MODEL}/V")
            .replace('"2"', '"V"')
            .replace('"1"', '"V"')
        )

    assert normalised(stable) == normalised(canary)


def test_seldon_deployment_passes_seldon_core_1_17_webhook_rules(rendered: Rendered) -> None:
    """The checks of Seldon Core 1.17.1's validating webhook (seldondeployment_webhook.go), absent here."""
    sdep = rendered.find("serving/seldon", "SeldonDeployment", MODEL)
    spec = sdep["spec"]
    assert spec.get("protocol") in ("seldon", "tensorflow", "kfserving", "v2")
    assert spec["protocol"] == "v2"
    predictors = spec["predictors"]
    assert predictors and len({p["name"] for p in predictors}) == len(predictors)
    non_shadow = [p for p in predictors if not p.get("shadow")]
    traffic = sum(p.get("traffic", 0) for p in non_shadow)
    if len(non_shadow) > 1:
        assert traffic == 100, "Traffic must sum to 100 for multiple predictors"
    else:
        assert traffic in (0, 100), "Traffic must be 100 for a single predictor when set"

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("children", []) for n in nodes(child))]

    for predictor in predictors:
        containers = {
            c["name"] for cs in predictor.get("componentSpecs", []) for c in cs["spec"]["containers"]
        }
        for node in nodes(predictor["graph"]):
            if node.get("implementation") in (None, "", "UNKNOWN_IMPLEMENTATION"):
                assert node["name"] in containers, "Can't find container for Predictive Unit"
        if predictor.get("annotations", {}).get("seldon.io/no-engine") == "true":
            assert len(nodes(predictor["graph"])) == 1, (
                "Running without engine only valid for single element graphs"
            )
        # Seldon points its Service at the container port named http.
        for cs in predictor["componentSpecs"]:
            for container in cs["spec"]["containers"]:
                assert [p["name"] for p in container["ports"]] == ["http"]


def test_kserve_runtime_serves_the_inference_service(rendered: Rendered) -> None:
    isvc = rendered.find("serving/kserve", "InferenceService", MODEL)
    runtime = rendered.find("serving/kserve", "ServingRuntime", "tabpipe")
    model = isvc["spec"]["predictor"]["model"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2" and runtime["spec"]["protocolVersions"] == ["v2"]
    formats = {(f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert [c["name"] for c in runtime["spec"]["containers"]] == ["kserve-container"]
    assert "protocolVersion" not in isvc["spec"]["predictor"], (
        "not a field of a custom predictor in KServe 0.15"
    )


# ---------------------------------------------------------------------------------------------
# Offline: RBAC, names shared with the code, network policies, kind
# ---------------------------------------------------------------------------------------------


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_deployer_role_is_exactly_what_the_deploy_stage_uses(rendered: Rendered) -> None:
    from tabpipe.cluster_deploy.rollout import REQUIRED_PERMISSIONS

    role = rendered.find("serving/base", "Role", "tabpipe-deployer")
    binding = rendered.find("serving/base", "RoleBinding", "tabpipe-deployer")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "tabpipe-serving"
    assert granted(role) == {(g, r, v) for g, r, verbs in REQUIRED_PERMISSIONS for v in verbs}
    assert not any("resourceNames" in rule for rule in role["rules"])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "tabpipe-deployer",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tabpipe-deployer", "namespace": "kubeflow"}
    ]
    token = rendered.find("pipeline", "Secret", "tabpipe-deployer-token")
    assert token["type"] == "kubernetes.io/service-account-token" and "data" not in token
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "tabpipe-deployer"


def test_no_cluster_wide_or_wildcard_rbac(rendered: Rendered) -> None:
    for obj in rendered.all_objects():
        assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"), obj["metadata"]["name"]
        if obj["kind"] == "Role":
            for rule in obj["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], f"{obj['metadata']['name']}: wildcard {field}"
                if "secrets" in rule["resources"]:
                    assert rule.get("resourceNames") and rule["verbs"] == ["get"]


def test_pipeline_runner_account_matches_submit_and_the_kfp_overlay(rendered: Rendered) -> None:
    from tabpipe.submit import PIPELINE_SERVICE_ACCOUNT

    role = rendered.find("pipeline", "Role", PIPELINE_SERVICE_ACCOUNT)
    rendered.find("pipeline", "ServiceAccount", PIPELINE_SERVICE_ACCOUNT)
    assert granted(role) == {
        ("", "configmaps", "get"),
        ("", "secrets", "get"),
        ("argoproj.io", "workflowtaskresults", "create"),
        ("argoproj.io", "workflowtaskresults", "patch"),
    }
    names = {r: rule.get("resourceNames") for rule in role["rules"] for r in rule["resources"]}
    # The objects it may read are the ones the KFP overlay configures.
    launcher = yaml.safe_load((MANIFESTS / "kfp/patches/kfp-launcher.yaml").read_text())
    kfp = yaml.safe_load((MANIFESTS / "kfp/kustomization.yaml").read_text())
    assert names["configmaps"] == [launcher["metadata"]["name"]] == ["kfp-launcher"]
    assert names["secrets"] == [kfp["secretGenerator"][0]["name"]] == ["mlpipeline-minio-artifact"]


def test_object_store_names_agree_across_manifests_and_code(rendered: Rendered) -> None:
    from tabpipe.config import ClusterDeployConfig
    from tabpipe.minio_server import BUCKETS, MLFLOW_BUCKET

    endpoint = urlparse(ClusterDeployConfig().object_store_endpoint)
    service = rendered.find("base", "Service", "minio")
    assert (
        endpoint.hostname
        == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    )
    assert endpoint.port == service["spec"]["ports"][0]["port"] == 9000
    job = rendered.find("base", "Job", "minio-buckets")
    buckets = job["spec"]["template"]["spec"]["containers"][0]["args"]
    launcher = yaml.safe_load((MANIFESTS / "kfp/patches/kfp-launcher.yaml").read_text())["data"]
    kfp_bucket = urlparse(launcher["defaultPipelineRoot"]).netloc
    assert set(buckets) == {*BUCKETS, kfp_bucket}
    providers = yaml.safe_load(launcher["providers"])["minio"]["default"]
    assert providers["endpoint"] == endpoint.netloc and providers["disableSSL"] is True
    apiserver = yaml.safe_load((MANIFESTS / "kfp/patches/ml-pipeline-apiserver.yaml").read_text())
    env = {e["name"]: e["value"] for e in apiserver["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert f"{env['OBJECTSTORECONFIG_HOST']}:{env['OBJECTSTORECONFIG_PORT']}" == endpoint.netloc
    ui = yaml.safe_load((MANIFESTS / "kfp/patches/ml-pipeline-ui.yaml").read_text())
    env = {e["name"]: e for e in ui["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["MINIO_HOST"]["value"], env["MINIO_NAMESPACE"]["value"]) == ("minio", "tabpipe")
    assert env["MINIO_NAMESPACE"]["valueFrom"] is None, "the fieldRef to the pod's namespace must go"
    mlflow = rendered.find("base", "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert f"--artifacts-destination=s3://{MLFLOW_BUCKET}" in mlflow["args"]
    mlflow_env = {e["name"]: e for e in mlflow["env"]}
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"]["value"] == ClusterDeployConfig().object_store_endpoint


def test_network_policies_admit_exactly_the_clients(rendered: Rendered) -> None:
    minio = rendered.find("base", "NetworkPolicy", "minio-allow-clients")
    (rule,) = minio["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    peers = [json.dumps(p, sort_keys=True) for p in rule["from"]]
    assert len(peers) == 3 and not any("ipBlock" in p for p in peers)
    labels = rendered.find("base", "Job", "minio-buckets")["spec"]["template"]["metadata"]["labels"]
    assert labels["tabpipe.io/minio-client"] == "true"
    assert (
        rendered.find("base", "Deployment", "mlflow")["spec"]["template"]["metadata"]["labels"][
            "tabpipe.io/minio-client"
        ]
        == "true"
    )
    for namespace in ("tabpipe", "tabpipe-serving"):
        overlay = "base" if namespace == "tabpipe" else "serving/base"
        deny = rendered.find(overlay, "NetworkPolicy", "default-deny-ingress")
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    allowed = rendered.find("serving/base", "NetworkPolicy", "model-servers-allow-clients")
    ports = {p["port"] for p in allowed["spec"]["ingress"][0]["ports"]}
    for where, _, container in model_containers(rendered):
        assert container["ports"][0]["containerPort"] in ports, where


def test_kind_config_pins_its_node_image_and_binds_loopback_ports(rendered: Rendered) -> None:
    (cluster,) = [d for d in yaml.safe_load_all(KIND_CONFIG.read_text()) if d]
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cluster["kind"] == "Cluster"
    images = {node["image"] for node in cluster["nodes"]}
    (image,) = images
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", image), image
    mappings = [m for node in cluster["nodes"] for m in node.get("extraPortMappings", [])]
    assert mappings
    local_defaults = {5000, 8765, 9000, 9001, 8080}
    for mapping in mappings:
        assert mapping["listenAddress"] == "127.0.0.1"
        assert mapping["hostPort"] not in local_defaults
        assert 30000 <= mapping["containerPort"] <= 32767
    node_ports = {p["nodePort"] for o in rendered.objects["kind"] for p in o["spec"]["ports"]}
    assert node_ports == {m["containerPort"] for m in mappings}


# ---------------------------------------------------------------------------------------------
# Against the control plane
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied(control_plane, rendered: Rendered, tmp_path_factory: pytest.TempPathFactory):
    """Every local overlay, applied server-side (field manager tabpipe-manifests); models removed after."""
    plane = control_plane
    missing = [
        crd
        for crd in (
            "servingruntimes.serving.kserve.io",
            "inferenceservices.serving.kserve.io",
            "seldondeployments.machinelearning.seldon.io",
        )
        if plane.kubectl("get", "crd", crd, check=False).returncode != 0
    ]
    assert not missing, (
        f"CRDs missing on the control plane: {missing} (controlplane/build.sh copies KServe's)"
    )
    # The namespace KFP's manifests create; KFP itself is not installed here.
    if plane.kubectl("get", "namespace", "kubeflow", check=False).returncode != 0:
        plane.kubectl("create", "namespace", "kubeflow")
    folder = tmp_path_factory.mktemp("rendered")
    outputs = {}
    for overlay in LOCAL_OVERLAYS:
        path = folder / (overlay.replace("/", "-") + ".yaml")
        path.write_text(rendered.text[overlay])
        result = plane.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(path))
        outputs[overlay] = (path, result)
    yield plane, outputs
    # The model objects go (other cluster tests use their own namespaces, but leave no strays).
    models = [
        o
        for overlay in SERVING_TARGETS
        for o in rendered.objects[overlay]
        if o["kind"] in (*WORKLOAD_KINDS, "Service")
    ]
    cleanup = folder / "models.yaml"
    cleanup.write_text(yaml.safe_dump_all(models))
    plane.kubectl("delete", "-f", str(cleanup), "--ignore-not-found", "--wait=false", check=False)


def test_every_local_overlay_applies_server_side(applied, rendered: Rendered) -> None:
    plane, outputs = applied
    for overlay, (path, result) in outputs.items():
        assert "would violate PodSecurity" not in result.stderr, f"{overlay}: {result.stderr}"
        listed = plane.kubectl("get", "-f", str(path), "-o", "json", "--show-managed-fields").stdout
        items = json.loads(listed)
        items = items.get("items", [items])
        assert len(items) == len(rendered.objects[overlay]), overlay
        for item in items:
            managers = {m["manager"] for m in item["metadata"].get("managedFields", [])}
            assert FIELD_MANAGER in managers, f"{overlay}: {item['kind']}/{item['metadata']['name']}"


def test_restricted_pod_security_admits_every_pod_and_plain_targets_roll_out(applied) -> None:
    plane, _ = applied
    # KWOK runs the pods: the plain Deployments become Available (their pods were admitted).
    for name in (MODEL, f"{MODEL}-canary"):
        status = plane.kubectl(
            "-n", "tabpipe-serving", "rollout", "status", f"deployment/{name}", "--timeout=120s", check=False
        )
        if status.returncode != 0:
            state = plane.kubectl("-n", "tabpipe-serving", "get", "deploy,rs,pods", "-o", "wide").stdout
            events = plane.kubectl("-n", "tabpipe-serving", "get", "events").stdout
            pytest.fail(f"{name} did not roll out: {status.stderr}\n{state}\n{events}")
    # MinIO and MLflow wait for volumes no provisioner binds here; the Job needs no volume. A pod
    # object existing means admission (Pod Security "restricted") accepted it.
    for selector in (
        "app.kubernetes.io/name=minio",
        "app.kubernetes.io/name=mlflow",
        "app.kubernetes.io/name=minio-buckets",
    ):
        plane.kubectl(
            "-n", "tabpipe", "wait", "--for=create", "pod", "-l", selector, "--timeout=60s", check=False
        )
        pods = plane.kubectl("-n", "tabpipe", "get", "pods", "-l", selector, "-o", "name").stdout.split()
        events = plane.kubectl("-n", "tabpipe", "get", "events", "-o", "json").stdout
        assert pods, f"no pod for {selector}; events: {forbidden(events)}"
    assert not forbidden(plane.kubectl("-n", "tabpipe-serving", "get", "events", "-o", "json").stdout)


def forbidden(events_json: str) -> list[str]:
    return [e["message"] for e in json.loads(events_json)["items"] if "forbidden" in e.get("message", "")]


def dry_run(plane, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        stdin=json.dumps(obj),
        check=False,
    )


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()

SDEP = ("serving/seldon", "SeldonDeployment", MODEL)
ISVC = ("serving/kserve", "InferenceService", MODEL)
DEPLOY = ("serving/plain", "Deployment", MODEL)
#: (overlay, kind, name, path, value, what the API server's message must contain). Server-side
#: apply reports wrong types and unknown fields while building its typed patch.
INVALID = [
    (*SDEP, "spec.predictors.0.replicas", "one", "expected numeric"),
    (*SDEP, "spec.predictors.0.graph", _DELETE, "spec.predictors[0].graph: Required value"),
    (*SDEP, "spec.protocol", "v3", "Unsupported value"),
    (*SDEP, "spec.predictors.0.trafic", 100, ".spec.predictors[0].trafic: field not declared in schema"),
    (*ISVC, "spec.predictor.minReplicas", "one", "expected numeric"),
    (*ISVC, "spec.predictor.model.modelFormat", {"version": "1"}, "modelFormat.name: Required value"),
    (*ISVC, "spec.predictor.scaleMetric", "gpu", "Unsupported value"),
    # A custom predictor cannot declare its protocol in KServe 0.15 (see servingruntime.yaml).
    (*ISVC, "spec.predictor.protocolVersion", "v2", ".spec.predictor.protocolVersion: field not declared"),
    (*DEPLOY, "spec.replicas", "one", "spec.replicas"),
    (*DEPLOY, "spec.selector", _DELETE, "spec.selector: Required value"),
    (*DEPLOY, "spec.strategy.type", "Sideways", "Unsupported value"),
    (*DEPLOY, "spec.template.spec.containers.0.securityContext.readOnlyRootFileSystem", True, "not declared"),
]


@pytest.mark.parametrize(
    ("overlay", "kind", "name", "path", "value", "message"),
    INVALID,
    ids=[f"{k}:{p.rsplit('.', 1)[-1]}={'(deleted)' if v is _DELETE else v}" for _, k, _, p, v, _ in INVALID],
)
def test_dry_run_rejects_invalid_objects(
    applied, rendered: Rendered, overlay: str, kind: str, name: str, path: str, value: Any, message: str
) -> None:
    plane, _ = applied
    # A new name, so the dry run creates rather than updates (an update would add immutability errors).
    good = copy.deepcopy(rendered.find(overlay, kind, name))
    good["metadata"]["name"] = f"{name}-dry-run"
    accepted = dry_run(plane, good)
    assert accepted.returncode == 0, accepted.stderr
    bad = copy.deepcopy(good)
    _set(bad, path, value)
    result = dry_run(plane, bad)
    assert result.returncode != 0, f"{kind} with {path}={value!r} was accepted"
    assert message in result.stderr, result.stderr


def test_schema_does_not_check_kserve_protocol_values(applied, rendered: Rendered) -> None:
    """KServe's CRD types protocolVersion as a plain string: only its webhook (not running here) checks it."""
    plane, _ = applied
    bad = copy.deepcopy(rendered.find("serving/kserve", "InferenceService", MODEL))
    bad["metadata"]["name"] = f"{MODEL}-dry-run"
    bad["spec"]["predictor"]["model"]["protocolVersion"] = "v3"
    assert dry_run(plane, bad).returncode == 0


def can_i(plane, user: str, verb: str, resource: str, namespace: str | None, subresource: str = "") -> bool:
    args = ["auth", "can-i", verb, resource]
    if namespace:
        args += ["-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = plane.kubectl(*args, as_user=user, check=False)
    answer = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")

#: (verb, group, resource, subresource, namespace) the deployer must NOT be allowed, beyond the
#: other verbs and namespaces of its four kinds.
DEPLOYER_DENIED = (
    ("get", "", "secrets", "", "tabpipe-serving"),
    ("list", "", "secrets", "", "tabpipe-serving"),
    ("get", "", "secrets", "", "kubeflow"),
    ("get", "", "pods", "", "tabpipe-serving"),
    ("create", "", "pods", "exec", "tabpipe-serving"),
    ("get", "", "pods", "log", "tabpipe-serving"),
    ("get", "", "configmaps", "", "tabpipe-serving"),
    ("get", "apps", "replicasets", "", "tabpipe-serving"),
    ("patch", "apps", "deployments", "scale", "tabpipe-serving"),
    ("update", "apps", "deployments", "status", "tabpipe-serving"),
    ("create", "serving.kserve.io", "servingruntimes", "", "tabpipe-serving"),
    ("create", "rbac.authorization.k8s.io", "rolebindings", "", "tabpipe-serving"),
    ("create", "rbac.authorization.k8s.io", "roles", "", "tabpipe-serving"),
    ("list", "rbac.authorization.k8s.io", "clusterroles", "", ""),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""),
    ("list", "", "namespaces", "", ""),
    ("create", "", "serviceaccounts", "token", "tabpipe-serving"),
)


def access_reviews(plane, user: str, checks: list[tuple[str, str, str, str, str]]) -> list[bool]:
    """The API server's RBAC answers for ``user`` (a ServiceAccount, with the groups its token carries).

    One SubjectAccessReview per check, sent in one List, so a matrix of hundreds takes one call;
    it is the same authorizer ``kubectl auth can-i --as`` asks.
    """
    namespace = user.split(":")[2]
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    reviews = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": groups,
                    "resourceAttributes": {
                        k: v
                        for k, v in {
                            "verb": verb,
                            "group": group,
                            "resource": resource,
                            "subresource": subresource,
                            "namespace": ns,
                        }.items()
                        if v
                    },
                },
            }
            for verb, group, resource, subresource, ns in checks
        ],
    }
    result = plane.kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(reviews))
    # kubectl prints one JSON object per created review, one after the other.
    decoder, text, items = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        item, end = decoder.raw_decode(text)
        items.append(item)
        text = text[end:].lstrip()
    assert len(items) == len(checks)
    return [bool(item["status"].get("allowed")) for item in items]


def test_deployer_can_do_exactly_what_the_deploy_stage_does(applied) -> None:
    from tabpipe.cluster_deploy.rollout import REQUIRED_PERMISSIONS

    plane, _ = applied
    expected: dict[tuple[str, str, str, str, str], bool] = {}
    for group, resource, verbs in REQUIRED_PERMISSIONS:
        for verb in VERBS:
            for namespace in ("tabpipe-serving", "tabpipe", "kubeflow", "default"):
                expected[(verb, group, resource, "", namespace)] = (
                    namespace == "tabpipe-serving" and verb in verbs
                )
    expected.update({check: False for check in DEPLOYER_DENIED})
    answers = dict(zip(expected, access_reviews(plane, DEPLOYER, list(expected)), strict=True))
    wrong = {check: allowed for check, allowed in answers.items() if allowed != expected[check]}
    assert not wrong, f"deployer access differs from REQUIRED_PERMISSIONS (check: allowed): {wrong}"
    # The same answers through `kubectl auth can-i --as`: every allowed verb, and denials of each sort.
    for group, resource, verbs in REQUIRED_PERMISSIONS:
        qualified = f"{resource}.{group}" if group else resource
        for verb in verbs:
            assert can_i(plane, DEPLOYER, verb, qualified, "tabpipe-serving"), f"{verb} {qualified}"
    for verb, resource, namespace, subresource in (
        ("list", "deployments.apps", "tabpipe-serving", ""),
        ("update", "seldondeployments.machinelearning.seldon.io", "tabpipe-serving", ""),
        ("create", "inferenceservices.serving.kserve.io", "tabpipe", ""),
        ("get", "secrets", "tabpipe-serving", ""),
        ("create", "pods", "tabpipe-serving", "exec"),
        ("list", "clusterroles.rbac.authorization.k8s.io", None, ""),
    ):
        assert not can_i(plane, DEPLOYER, verb, resource, namespace, subresource), (
            f"{verb} {resource}/{subresource} in {namespace}"
        )


def test_deployer_token_secret_is_filled_and_its_token_is_limited(applied) -> None:
    """With the deployer's real token (the one the deploy task mounts): allowed, then 403."""
    plane, _ = applied
    token_b64 = ""
    for _ in range(100):
        token_b64 = plane.kubectl(
            "-n", "kubeflow", "get", "secret", "tabpipe-deployer-token", "-o", "jsonpath={.data.token}"
        ).stdout
        if token_b64:
            break
        subprocess.run(["sleep", "0.2"], check=True)
    assert token_b64, "kube-controller-manager did not fill the deployer's token Secret"
    token = base64.b64decode(token_b64).decode()
    as_deployer = ("--token", token)
    created = plane.kubectl(
        *as_deployer,
        "-n",
        "tabpipe-serving",
        "create",
        "service",
        "clusterip",
        "probe-deployer",
        "--tcp=8080:8080",
        "--dry-run=server",
        check=False,
    )
    assert created.returncode == 0, created.stderr
    for args in (
        ("-n", "tabpipe-serving", "get", "secret", "tabpipe-serving-store"),
        ("-n", "tabpipe-serving", "get", "pods"),
        ("-n", "tabpipe", "get", "deployment", "minio"),
        ("get", "namespaces"),
    ):
        denied = plane.kubectl(*as_deployer, *args, check=False)
        assert denied.returncode != 0 and "Forbidden" in denied.stderr, (args, denied.stderr)
    assert token not in json.dumps([created.stdout, created.stderr])


def test_pipeline_runner_and_model_server_accounts_are_minimal(applied) -> None:
    plane, _ = applied
    assert can_i(plane, RUNNER, "get", "configmaps/kfp-launcher", "kubeflow")
    assert can_i(plane, RUNNER, "get", "secrets/mlpipeline-minio-artifact", "kubeflow")
    assert can_i(plane, RUNNER, "create", "workflowtaskresults.argoproj.io", "kubeflow")
    for verb, resource, namespace in (
        ("get", "secrets/tabpipe-deployer-token", "kubeflow"),
        ("get", "secrets/tabpipe-pipeline-store", "kubeflow"),
        ("list", "secrets", "kubeflow"),
        ("get", "configmaps/other", "kubeflow"),
        ("create", "deployments.apps", "tabpipe-serving"),
        ("create", "pods", "kubeflow"),
    ):
        assert not can_i(plane, RUNNER, verb, resource, namespace), (
            f"runner: {verb} {resource} in {namespace}"
        )
    for verb, resource in (
        ("get", "pods"),
        ("list", "secrets"),
        ("get", "services"),
        ("create", "deployments.apps"),
    ):
        assert not can_i(plane, MODEL_SERVER, verb, resource, "tabpipe-serving"), (
            f"model server: {verb} {resource}"
        )
