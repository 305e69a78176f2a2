"""Helpers of the local cluster's tests: its images and a pod that runs a script."""

from __future__ import annotations

import os
import time

import pytest

from harness.cluster.cluster import LocalCluster

NS = "default"
# one cluster at a time on a machine (its addresses are fixed): every such test on one xdist worker
CLUSTER_MARKS = [pytest.mark.skipif(os.geteuid() != 0, reason="the local cluster needs root (namespaces, mounts)"),
                 pytest.mark.xdist_group("local-cluster")]


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


