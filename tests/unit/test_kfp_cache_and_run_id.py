"""The compiled pipeline can be served from KFP's cache, and every task still knows its run id.

KFP 2.17's driver resolves placeholders such as ``{{$.pipeline_job_uuid}}`` in a
task's input parameters to this run's values and then hashes every input
parameter into the cache fingerprint (backend/src/v2/driver/resolve.go,
driver/cache.go): one per-run value among the inputs and no task can ever be a
cache hit. The run id reaches the tasks instead as an environment variable mapped
from the pod's ``pipeline/runid`` label. These tests read the compiled spec,
the committed one and a fresh compile, generically: any per-run placeholder
anywhere in a task's inputs fails, whatever the parameter is called.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler, dsl

from tabpipe.run_id import RUN_ID_ENV, RUN_ID_FIELD_PATH, RUN_ID_POD_LABEL

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "pipelines" / "training_pipeline.yaml"

#: Every KFP placeholder whose value differs between runs: the job's id, names and times, the task's id.
PER_RUN_PLACEHOLDERS = sorted(
    {
        value
        for name, value in vars(dsl).items()
        if isinstance(value, str) and re.fullmatch(r"PIPELINE_JOB_\w+_PLACEHOLDER", name)
    }
    | {dsl.PIPELINE_TASK_ID_PLACEHOLDER}
)
#: The same by shape, so a placeholder a later KFP adds (``{{$.pipeline_job_...}}``) is caught too.
PER_RUN_PATTERN = re.compile(
    "|".join([*map(re.escape, PER_RUN_PLACEHOLDERS), r"\{\{\$\.pipeline_job_[a-z_]+\}\}"])
)


def _documents(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(path.read_text()))


@pytest.fixture(scope="module", params=["committed", "fresh"])
def documents(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    if request.param == "committed":
        return _documents(COMMITTED)
    from pipelines.training import compile_pipeline

    return _documents(compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml"))


def _dags(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every DAG of a pipeline spec: the root and each sub-DAG component (exit handler, conditions)."""
    yield "root", spec["root"].get("dag", {})
    for name, component in spec.get("components", {}).items():
        if "dag" in component:
            yield name, component["dag"]


def _tasks(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for _, dag in _dags(spec):
        yield from dag.get("tasks", {}).items()


def _strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{where}[{index}]")


def per_run_inputs(spec: dict[str, Any]) -> list[str]:
    """Where a task's inputs carry a per-run value: ``task.inputs...path = value``, for every task.

    Also the pipeline's own parameter defaults, which tasks receive unchanged.
    """
    found = [
        f"{name}.{where} = {value!r}"
        for name, task in _tasks(spec)
        for where, value in _strings(task.get("inputs", {}), "inputs")
        if PER_RUN_PATTERN.search(value)
    ]
    defaults = spec["root"].get("inputDefinitions", {})
    found += [
        f"root.{where} = {value!r}"
        for where, value in _strings(defaults, "inputDefinitions")
        if PER_RUN_PATTERN.search(value)
    ]
    return found


def test_the_placeholder_list_covers_the_run_id() -> None:
    assert "{{$.pipeline_job_uuid}}" in PER_RUN_PLACEHOLDERS
    assert "{{$.pipeline_job_name}}" in PER_RUN_PLACEHOLDERS
    assert "{{$.pipeline_task_uuid}}" in PER_RUN_PLACEHOLDERS
    assert "{{$.pipeline_job_create_time_utc}}" in PER_RUN_PLACEHOLDERS
    # Stable across runs, so not per-run: the task's own name, the pipeline root.
    assert not PER_RUN_PATTERN.search("{{$.pipeline_task_name}} {{$.pipeline_root}}")


def test_no_task_input_differs_per_run(documents: list[dict]) -> None:
    spec = documents[0]
    assert len(dict(_tasks(spec))) >= 8, "the walk found too few tasks to mean anything"
    found = per_run_inputs(spec)
    assert not found, (
        "per-run values among task inputs make every task miss KFP's cache "
        "(the run id belongs in the environment, see tabpipe/run_id.py):\n" + "\n".join(found)
    )


def test_no_per_run_placeholder_anywhere_in_the_pipeline_spec(documents: list[dict]) -> None:
    text = json.dumps(documents[0])
    assert not PER_RUN_PATTERN.search(text), PER_RUN_PATTERN.findall(text)


@pytest.mark.parametrize(
    "value",
    [
        dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        dsl.PIPELINE_TASK_ID_PLACEHOLDER,
        dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
        f"run-{dsl.PIPELINE_JOB_ID_PLACEHOLDER}",
    ],
)
def test_the_check_catches_a_per_run_input_whatever_its_name(value: str, tmp_path: Path) -> None:
    # (No `from __future__ import annotations` in this file: KFP reads these annotations as types.)
    @dsl.component(base_image="python:3.11")
    def echo(tag: str, stable: str) -> str:
        return tag + stable

    @dsl.pipeline(name="planted")
    def planted() -> None:
        echo(tag=value, stable="same every run")

    path = tmp_path / "planted.yaml"
    compiler.Compiler().compile(planted, str(path))
    found = per_run_inputs(_documents(path)[0])
    assert len(found) == 1 and found[0].startswith("echo.inputs.parameters.tag."), found


def test_every_task_reads_the_run_id_from_the_pod_label(documents: list[dict]) -> None:
    spec, platform = documents[0], documents[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    task_executors = {
        name: spec["components"][task["componentRef"]["name"]]["executorLabel"]
        for name, task in _tasks(spec)
        if "executorLabel" in spec["components"][task["componentRef"]["name"]]
    }
    assert {"ingest", "validate", "transform", "train", "evaluate", "register", "deploy"} <= set(
        task_executors
    )
    assert any("record-outcome" in name for name in task_executors)
    expected = {"name": RUN_ID_ENV, "fieldPath": RUN_ID_FIELD_PATH}
    missing = [
        task
        for task, executor in task_executors.items()
        if expected not in executors.get(executor, {}).get("fieldPathAsEnv", [])
    ]
    assert not missing, f"tasks without {RUN_ID_ENV} from {RUN_ID_FIELD_PATH}: {missing}"


def test_the_field_path_names_the_label_kfp_puts_on_run_pods() -> None:
    # KFP 2.17 backend/src/common/util/consts.go: LabelKeyWorkflowRunId = "pipeline/runid",
    # set on every pod of a run (argo_template.go) and of a recurring run (scheduled_workflow.go).
    assert RUN_ID_POD_LABEL == "pipeline/runid"
    assert RUN_ID_FIELD_PATH == "metadata.labels['pipeline/runid']"


def test_caching_is_on_for_the_stages_and_off_for_the_exit_handler(documents: list[dict]) -> None:
    tasks = dict(_tasks(documents[0]))
    executor_tasks = {
        name: task
        for name, task in tasks.items()
        if "executorLabel" in documents[0]["components"][task["componentRef"]["name"]]
    }
    cached = {
        name for name, task in executor_tasks.items() if task.get("cachingOptions", {}).get("enableCache")
    }
    assert cached == set(executor_tasks) - {"record-outcome"}
    assert "record-outcome" in executor_tasks


def test_components_take_no_run_id_parameter() -> None:
    import components

    for name in components.__all__:
        inputs = getattr(components, name).component_spec.inputs or {}
        assert "kfp_run_id" not in inputs, name


# --------------------------------------------------------------------------- the env var inside a task


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_stage_guard_yields_the_run_id_from_the_environment() -> None:
    env = {**os.environ, RUN_ID_ENV: "9f0c-run"}
    result = _python(
        """
        from tabpipe.guard import stage_guard

        with stage_guard("ingest", "http://127.0.0.1:9", "exp") as run_id:
            print("run id:", run_id)
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "run id: 9f0c-run"


def test_stage_without_a_run_id_fails_with_one_message() -> None:
    env = {k: v for k, v in os.environ.items() if k != RUN_ID_ENV}
    result = _python(
        """
        from tabpipe.guard import stage_guard

        with stage_guard("ingest", "http://127.0.0.1:9", "exp"):
            print("not reached")
        """,
        env,
    )
    assert result.returncode == 1
    assert "not reached" not in result.stdout
    assert "Traceback" not in result.stderr
    assert f"stage 'ingest' failed: {RUN_ID_ENV} is not set" in result.stderr
    assert "pipeline/runid" in result.stderr


def test_local_runs_set_the_variable_only_while_they_run() -> None:
    from tabpipe.run_id import current_run_id, new_local_run_id, run_id_in_environment

    before = os.environ.get(RUN_ID_ENV)
    first, second = new_local_run_id(), new_local_run_id()
    assert first != second and first.startswith("local-")
    with run_id_in_environment(first):
        assert current_run_id() == first
    assert os.environ.get(RUN_ID_ENV) == before
