"""Several local-cluster runs in a row leave the host exactly as they found it."""

from __future__ import annotations

from harness.cluster.cluster import LocalCluster
from harness.cluster.node import host_snapshot, snapshot_diff
from tests.clusterkit import CLUSTER_MARKS, run_pod, short_dir

pytestmark = CLUSTER_MARKS


def test_two_runs_in_a_row_leave_the_host_as_it_was(cluster_images):
    """Start, run a pod, stop; start, stop: processes, mounts, links, routes,
    nftables and iptables rules, sysctls, cgroups and fixed paths as before."""
    before = host_snapshot()
    for run in (1, 2):
        c = LocalCluster(short_dir(f"run{run}-"))
        try:
            c.start(sandbox_image=cluster_images["pause"].ref, images=[b.archive for b in cluster_images.values()])
            c.tools_ref = cluster_images["tools"].ref
            if run == 1:
                assert run_pod(c, "once", "echo ok")[1].strip() == "ok"
        finally:
            done = c.stop()
        assert "node namespaces: removed" in done
        left = snapshot_diff(before, host_snapshot(), root=c.root)
        assert left == [], f"run {run} left behind:\n" + "\n".join(left)
