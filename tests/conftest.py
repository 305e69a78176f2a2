"""Helpers for the harness's own tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import tempfile

import pytest

from harness.procs import proc_start_time

REPO = Path(__file__).resolve().parent.parent
NETGUARD = Path(__file__).resolve().parent / "netguard"

# no outside name is resolved in this process, nor in any Python process a test
# starts (they inherit PYTHONPATH): see netguard/sitecustomize.py
_spec = importlib.util.spec_from_file_location("stackproof_netguard", NETGUARD / "sitecustomize.py")
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))

os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(NETGUARD), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    """An isolated state root for local platforms started by this test."""
    d = tmp_path / "state"
    monkeypatch.setenv("STACKPROOF_STATE", str(d))
    return d


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``stackproof ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def pid_alive(pid: int) -> bool:
    """Running (not gone, not a zombie): the harness's own test."""
    return proc_start_time(pid) is not None


@pytest.fixture(scope="session")
def cluster_images():
    """The local cluster's own images (the tools and the pod sandbox), built once."""
    from harness import images

    return {"tools": images.build_image(images.tools_image()), "pause": images.build_image(images.pause_image())}


@pytest.fixture(scope="module")
def one_cluster_at_a_time():
    """Held by every test module that runs a containerd or a cluster on the host: a
    cluster's addresses are fixed, and a host snapshot must not see another's
    processes or mounts. A file lock, since pytest-xdist's loadgroup scheduling
    does not group tests under pytest 9 (it renames ``_nodeid``, which pytest 9
    no longer reads): whichever worker holds it, the others wait."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / "stackproof-one-cluster.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
