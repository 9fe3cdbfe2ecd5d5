"""The command line, the KFP components and the compiled pipeline, checked from the outside."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp import compiler

import components
import tabpipe
from tabpipe.contract import parse_contract

REPO = Path(__file__).resolve().parents[2]
PHISHING_CSV = REPO / "data" / "phishing" / "phishing_websites.csv"
PHISHING_CONFIG = REPO / "configs" / "phishing.yaml"
COMMITTED_PIPELINE = REPO / "pipelines" / "training_pipeline.yaml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "tabpipe"
HEAVY_MODULES = ("pandas", "sklearn", "mlflow", "scipy", "pyarrow")


def tabpipe_cli(*args: str | Path, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "tabpipe.cli"]
    return subprocess.run(
        [*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def python(code: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("subcommand", [None, "run", "infer-schema", "validate", "submit", "compile"])
def test_help_exits_zero(subcommand: str | None) -> None:
    args = [subcommand, "--help"] if subcommand else ["--help"]
    result = tabpipe_cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tabpipe")
    if subcommand:
        assert f"tabpipe {subcommand}" in result.stdout
    else:
        for name in ("run", "infer-schema", "validate", "submit", "compile"):
            assert name in result.stdout


def test_no_subcommand_is_a_usage_error() -> None:
    result = tabpipe_cli()
    assert result.returncode == 2
    assert "usage: tabpipe" in result.stderr


# --------------------------------------------------------------------------- run


def test_run_with_invalid_config_fails_before_starting_anything(tmp_path: Path) -> None:
    config = yaml.safe_load(PHISHING_CONFIG.read_text())
    config["contract"] = str(REPO / "configs" / "phishing_contract.yaml")
    config["source"]["uri"] = str(PHISHING_CSV)
    config["split"]["test_size"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    state = tmp_path / "state"

    result = tabpipe_cli("run", "--config", bad, "--tracking-uri", "http://127.0.0.1:9", "--state-dir", state)

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: invalid config")
    assert "split.test_size" in result.stderr
    assert not state.exists(), "no MLflow server or state may be created for an invalid config"
    assert "mlflow:" not in result.stdout  # no server was looked for, let alone started


def test_run_with_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = tabpipe_cli(
        "run", "--config", missing, "--tracking-uri", "http://127.0.0.1:9", "--state-dir", tmp_path / "state"
    )
    assert result.returncode == 2
    assert f"config: cannot read {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


# --------------------------------------------------------------------------- infer-schema


def test_infer_schema_writes_a_valid_contract_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "drafted.yaml"
    result = tabpipe_cli("infer-schema", PHISHING_CSV, "--out", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (31 columns)" in result.stdout

    text = out.read_text()
    assert text.startswith("# Drafted by `tabpipe infer-schema`")
    contract = parse_contract(yaml.safe_load(text))
    assert contract.name == "phishing_websites"
    assert list(contract.columns) == list(pd.read_csv(PHISHING_CSV, nrows=0).columns)
    assert contract.columns["Result"].dtype.value == "integer"
    assert sorted(contract.columns["Result"].allowed) == [-1, 1]

    out.write_text("# hand-edited\n")
    again = tabpipe_cli("infer-schema", PHISHING_CSV, "--out", out)
    assert again.returncode == 2
    assert f"{out} exists; pass --force to overwrite it" in again.stderr
    assert "Traceback" not in again.stderr
    assert out.read_text() == "# hand-edited\n"

    forced = tabpipe_cli("infer-schema", PHISHING_CSV, "--out", out, "--force", "--name", "renamed")
    assert forced.returncode == 0, forced.stderr
    assert parse_contract(yaml.safe_load(out.read_text())).name == "renamed"


def test_infer_schema_to_stdout_and_on_a_missing_file(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,x\n2,y\n3,x\n")
    result = tabpipe_cli("infer-schema", small)
    assert result.returncode == 0, result.stderr
    assert set(parse_contract(yaml.safe_load(result.stdout)).columns) == {"a", "b"}

    missing = tabpipe_cli("infer-schema", tmp_path / "absent.csv")
    assert missing.returncode == 1
    assert "file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_infer_schema_out_in_missing_folder_is_not_a_traceback(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,x\n2,y\n3,x\n")
    out = tmp_path / "no" / "such" / "dir" / "contract.yaml"
    result = tabpipe_cli("infer-schema", small, "--out", out)
    assert "Traceback" not in result.stderr
    assert out.is_file() if result.returncode == 0 else str(out) in result.stderr


# --------------------------------------------------------------------------- validate


def test_validate_committed_config_passes() -> None:
    result = tabpipe_cli("validate", "--config", "configs/phishing.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "**PASS**: 0 violation(s)" in result.stdout
    assert "11055 row(s) x 31 column(s)" in result.stdout


def test_validate_bad_data_names_every_problem(tmp_path: Path) -> None:
    frame = pd.read_csv(PHISHING_CSV).head(1500)
    frame.loc[3, "URL_Length"] = 7  # allowed: -1, 0, 1
    frame = frame.drop(columns=["port"])
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    report = tmp_path / "report.json"

    result = tabpipe_cli("validate", "--config", PHISHING_CONFIG, "--data", data, "--report", report)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "**FAIL**" in result.stdout
    assert "missing column(s): ['port']" in result.stdout
    assert "column 'URL_Length': 1 value(s) not in allowed set" in result.stdout
    assert "Traceback" not in result.stderr
    saved = yaml.safe_load(report.read_text())  # JSON is YAML
    joined = "\n".join(saved["violations"])
    assert "'port'" in joined and "URL_Length" in joined


# --------------------------------------------------------------------------- compile


def test_committed_pipeline_yaml_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    result = tabpipe_cli("compile", "--out", out)
    assert result.returncode == 0, result.stderr
    assert f"compiled pipeline to {out}" in result.stdout
    # compiled pipelines may hold two documents: the pipeline spec and the platform (Kubernetes) spec
    fresh = list(yaml.safe_load_all(out.read_text()))
    committed = list(yaml.safe_load_all(COMMITTED_PIPELINE.read_text()))
    assert fresh == committed, (
        "pipelines/training_pipeline.yaml is stale: it differs from what pipelines/training.py compiles "
        "to. Run `make compile` and commit the result."
    )


# --------------------------------------------------------------------------- components


@pytest.mark.parametrize("name", components.__all__)
def test_component_runs_in_project_image_without_runtime_installs(name: str, tmp_path: Path) -> None:
    component = getattr(components, name)
    container = component.component_spec.implementation.container
    assert container.image == f"tabpipe:{tabpipe.__version__}"
    command = " ".join([*container.command, *(container.args or [])])
    assert "pip install" not in command
    assert "pip" not in re.findall(r"\b\w+\b", command)
    args = list(container.args or [])
    assert args[args.index("--function_to_execute") + 1] == name

    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(component, str(path))
    text = path.read_text()
    assert "packages_to_install" not in text
    assert "pip install" not in text
    assert "ensurepip" not in text
    assert f"image: tabpipe:{tabpipe.__version__}" in text


def test_compiled_pipeline_has_no_runtime_installs() -> None:
    text = COMMITTED_PIPELINE.read_text()
    assert "packages_to_install" not in text
    assert "pip install" not in text
    images = set(re.findall(r"^\s*image:\s*(\S+)", text, flags=re.MULTILINE))
    assert images == {f"tabpipe:{tabpipe.__version__}"}


def test_importing_components_and_pipeline_stays_light() -> None:
    result = python(
        f"""
        import sys
        import components, pipelines.training
        print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"heavy modules imported at module scope: {result.stdout}"


def test_importing_tabpipe_creates_no_files(tmp_path: Path) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            # Every module of the package, found by walking it, so a new one is covered too.
            "import importlib, pkgutil, tabpipe, components, pipelines.training\n"
            "for m in pkgutil.walk_packages(tabpipe.__path__, 'tabpipe.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "print('ok')",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert sorted(p.name for p in cwd.iterdir()) == []


SECRET_PATTERNS = [
    r"AWS_SECRET\w*\s*[:=]\s*\S+",
    r"AWS_ACCESS_KEY_ID\s*[:=]\s*\S+",
    r"AKIA[0-9A-Z]{16}",
    r"(?i)password\s*[:=]\s*\S+",
    r"(?i)secret_?key\s*[:=]\s*\S+",
    r"(?i)\b\w*token\w*\s*[:=]\s*['\"]?[A-Za-z0-9_\-\.]{8,}",
    r"(?i)MLFLOW_TRACKING_(USERNAME|PASSWORD)\s*[:=]\s*\S+",
    r"(?i)minio(admin|123)",
    r"(?i)://[^/\s:@]+:[^/\s@]+@",  # credentials inside a URL
    r"(?i)name:\s*\w*(SECRET|PASSWORD|TOKEN|ACCESS_KEY)\w*\s*\n\s*value:\s*\S+",  # KFP env var with a value
]


@pytest.mark.parametrize("pattern", SECRET_PATTERNS)
def test_no_credentials_in_compiled_pipeline(pattern: str) -> None:
    # A Kubernetes Secret reference names the key to read (`secretKey: AWS_ACCESS_KEY_ID`), never a value:
    # the only ones allowed are the object store's two key names.
    text = re.sub(
        r"(?m)^\s*secretKey: (AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY)$", "", COMMITTED_PIPELINE.read_text()
    )
    found = re.findall(pattern, text)
    assert not found, f"possible credential in {COMMITTED_PIPELINE.name}: {found}"


@pytest.mark.parametrize(
    "planted",
    [
        "AWS_SECRET_ACCESS_KEY: abc123",
        "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
        "password: hunter2",
        "MINIO_SECRET_KEY=minio123",
        "auth_token: 'abcdef0123456789'",
        "uri: http://user:pw@minio:9000/bucket",
        "env:\n  - name: MLFLOW_TRACKING_PASSWORD\n    value: s3cr3t",
    ],
)
def test_secret_patterns_catch_a_planted_credential(planted: str) -> None:
    assert any(re.findall(p, planted) for p in SECRET_PATTERNS)


# --------------------------------------------------------------------------- stage guard


def test_stage_guard_turns_expected_failure_into_message_and_exit_1() -> None:
    result = python(
        """
        from tabpipe.errors import DataValidationError
        from tabpipe.guard import stage_guard

        def body():
            raise DataValidationError(["column 'URL_Length': 1 value(s) not in allowed set [-1, 0, 1]"])

        with stage_guard("validate", "http://127.0.0.1:9", "exp", "run1"):
            body()
        print("not reached")
        """
    )
    assert result.returncode == 1, result.stderr
    assert "stage 'validate' failed" in result.stderr
    assert "data validation failed (1 violation(s))" in result.stderr
    assert "column 'URL_Length': 1 value(s) not in allowed set [-1, 0, 1]" in result.stderr
    assert "Traceback" not in result.stderr
    assert "could not record the failure in MLflow" in result.stderr  # best effort, never masks the failure
    assert "not reached" not in result.stdout


def test_stage_guard_keeps_traceback_for_bugs() -> None:
    result = python(
        """
        from tabpipe.guard import stage_guard

        with stage_guard("train", "http://127.0.0.1:9", "exp", "run1"):
            {}["missing"]
        """
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "KeyError: 'missing'" in result.stderr
    assert "stage 'train' failed" not in result.stderr


def test_validate_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`tabpipe validate | head -1`: the reader stops early; no BrokenPipeError traceback."""
    command = (
        f"{sys.executable} -m tabpipe.cli validate --config {REPO / 'configs' / 'phishing.yaml'} | head -1"
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.startswith("# Data validation")
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
