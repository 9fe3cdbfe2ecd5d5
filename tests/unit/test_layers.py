"""The dependency graph only points down: no module imports from a higher layer.

Layers, lowest first (the README's architecture section draws them):

0. foundation: errors, task types, artifact keys, logging;
1. the data contract (schema, rules, table checks) and the estimator registry;
2. the pipeline config;
3. file I/O and the shared feature preprocessing;
4. model files and the serving spec;
5. ONNX export, MLflow tracking, the MLflow server, bundles;
6. stage logic (``tabpipe.stages.*``), serving, the deploy client, champion policy;
7. the cluster deploy targets (Seldon, KServe, plain Deployment);
8. stage adapters (files in, files out) and the stage guard;
9. KFP components; 10. the pipeline wiring; 11. submit; 12. the Docker runner; 13. the local
runner; 14. the CLI.

A module may import from a lower layer, or from its own package (for the stages,
its own stage). Imports under ``if TYPE_CHECKING:`` are ignored: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tabpipe", "components", "pipelines")

LAYERS: dict[str, int] = {
    "tabpipe": 0,
    "tabpipe.errors": 0,
    "tabpipe.task_type": 0,
    "tabpipe.artifacts": 0,
    "tabpipe.log": 0,
    "tabpipe.version": 0,
    # The pipeline run's id from the environment; needs only errors, used from the guard up.
    "tabpipe.run_id": 1,
    "tabpipe.contract": 1,
    "tabpipe.estimators": 1,
    "tabpipe.config": 2,
    # Below file I/O (not beside it) because io.open_source reads s3:// through it; it needs only errors.
    "tabpipe.objectstore": 2,
    "tabpipe.io": 3,
    # A cluster run's parameters: the config with image paths; the pipeline wiring compiles them in.
    "tabpipe.cluster_params": 3,
    "tabpipe.features": 3,
    "tabpipe.modelio": 4,
    "tabpipe.serving_spec": 4,
    "tabpipe.onnx": 5,
    "tabpipe.tracking": 5,
    "tabpipe.mlflow_server": 5,
    # The KFP API client (one-line errors), beside the MLflow client; submit and the CLI use it.
    "tabpipe.kfp_client": 5,
    "tabpipe.bundle": 5,
    "tabpipe.stages": 6,
    "tabpipe.serving": 6,
    # Above mlflow_server, whose start_detached/claim_or_refuse it reuses (as the serving launcher does).
    "tabpipe.minio_server": 6,
    "tabpipe.deploy": 6,
    "tabpipe.champion": 6,
    # Above the deploy client, whose smoke test it reuses against the new version in the cluster.
    "tabpipe.cluster_deploy": 7,
    "tabpipe.adapters": 8,
    "tabpipe.guard": 8,
    "components": 9,
    "pipelines": 10,
    "tabpipe.submit": 11,
    # Maps repository files to the image's paths as submit does, for the Docker runner's tasks.
    "tabpipe.docker_runner": 12,
    "tabpipe.local_run": 13,
    "tabpipe.cli": 14,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    """The layer of the longest declared prefix of ``module``."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer: add it to LAYERS (and to the README)")


def _package(module: str) -> str:
    parts = module.split(".")
    depth = 3 if parts[:2] == ["tabpipe", "stages"] else 2 if parts[0] == "tabpipe" else 1
    return ".".join(parts[:depth])


def _runtime_imports(path: Path) -> set[str]:
    """Modules of this project that ``path`` imports outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.level == 0:
                found.add(node.module)

    Visitor().visit(ast.parse(path.read_text()))
    return {name for name in found if name.split(".")[0] in PACKAGES}


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    upward = [
        f"{target} (layer {_layer(target)})"
        for target in sorted(_runtime_imports(path))
        if _layer(target) >= layer and _package(target) != _package(module) and target != "tabpipe"
    ]
    assert not upward, f"{module} (layer {layer}) imports from its layer or above: {upward}"
