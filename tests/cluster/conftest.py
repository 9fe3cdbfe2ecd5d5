"""Cluster tests: a real control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK).

Every test here is marked ``cluster`` and runs under ``make test-cluster``. The binaries come
from ``make control-plane`` (a project-owned cache); in CI (``CI=true``) a missing binary fails
the session instead of skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import ControlPlane, binaries_missing, cache_dir

HERE = Path(__file__).parent
# kubectl of the control plane's version (make control-plane builds it) before any other on PATH.
os.environ["PATH"] = f"{cache_dir() / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    missing = binaries_missing()
    if missing:
        message = f"control plane not installed ({', '.join(missing)} missing): run `make control-plane`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    plane = ControlPlane(workdir=tmp_path_factory.mktemp("control-plane"), cache=cache_dir())
    try:
        plane.start()
    except BaseException:
        plane.stop()
        raise
    try:
        yield plane
    finally:
        plane.stop()
