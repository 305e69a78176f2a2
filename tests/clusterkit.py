"""Helpers of the local cluster's tests: its images and a pod that runs a script."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from harness.cluster.cluster import LocalCluster

NS = "default"


def short_dir(prefix: str) -> Path:
    """A cluster's directory: short, since containerd's socket path must fit a unix socket's 108 bytes
    (pytest's tmp paths under xdist do not). The cluster removes it when it stops."""
    return Path(tempfile.mkdtemp(prefix=f"sp-{prefix}"))
# one cluster at a time on a machine (its addresses are fixed): see tests/conftest.py
CLUSTER_MARKS = [pytest.mark.skipif(os.geteuid() != 0, reason="the local cluster needs root (namespaces, mounts)"),
                 pytest.mark.usefixtures("one_cluster_at_a_time")]


def run_pod(c: LocalCluster, name: str, script: str, timeout: float = 60) -> tuple[str, str]:
    """Run ``script`` in a pod of the tools image; (phase, log) once it ended."""
    c.api("POST", f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "containers": [{
            "name": "c", "image": c.tools_ref, "imagePullPolicy": "Never", "command": ["sh", "-c", script]}]}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = c.api("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            log = c.api_text(f"/api/v1/namespaces/{NS}/pods/{name}/log")
            return phase, log
        time.sleep(0.2)
    raise AssertionError(f"pod {name} did not finish within {timeout}s: {pod.get('status')}")


