"""Start-up, deploy and teardown of the local Kubernetes cluster (warm caches), and its idle memory.

    sudo python benchmarks/cluster_startup.py [--runs 3] [--release NAME] [--settle 20]

Each run: ``LocalKubeProvider.deploy`` (start the cluster, import the release's
images, deploy the platform, every StatefulSet rolled out), idle for --settle
seconds, read the resident memory of the node's programs and the pods' working
set, then destroy. Prints every run and the medians; JSON to
results/bench-cluster-startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.providers.localkube import LocalKubeProvider  # noqa: E402
from harness.releases import Catalog  # noqa: E402

POD_MEMORY = Path("/sys/fs/cgroup/memory/kubepods")


def _rss_mib(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _pods_working_set_mib() -> float:
    try:
        usage = int((POD_MEMORY / "memory.usage_in_bytes").read_text())
        inactive = next(int(line.split()[1]) for line in (POD_MEMORY / "memory.stat").read_text().splitlines()
                        if line.startswith("total_inactive_file "))
    except (OSError, StopIteration, ValueError):
        return 0.0
    return (usage - inactive) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--release")
    ap.add_argument("--settle", type=float, default=20.0, help="idle seconds before reading memory")
    ap.add_argument("--out", default="results/bench-cluster-startup.json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("the local cluster needs root (namespaces, mounts)", file=sys.stderr)
        return 2
    release = Catalog.load().get(args.release)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        for i in range(args.runs):
            marks: dict[str, float] = {}
            t0 = time.monotonic()

            def progress(msg: str, t0=t0, marks=marks) -> None:
                if "Ready" in msg and "node" in msg:
                    marks["node_ready_s"] = time.monotonic() - t0

            p = LocalKubeProvider(f"bench{i}", state_dir=Path(tmp) / f"bench{i}", progress=progress)
            try:
                p.deploy(release)
                deploy_s = time.monotonic() - t0
                time.sleep(args.settle)
                node_rss = sum(_rss_mib(pid) for pid in p.cluster.ns.members())
                pods = _pods_working_set_mib()
            finally:
                t1 = time.monotonic()
                p.destroy()
                down_s = time.monotonic() - t1
            run = {"node_ready_s": round(marks.get("node_ready_s", 0.0), 2), "deploy_s": round(deploy_s, 2),
                   "down_s": round(down_s, 2), "node_rss_mib": round(node_rss), "pods_mib": round(pods)}
            runs.append(run)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v}" for k, v in run.items()), flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median: " + ", ".join(f"{k} {v}" for k, v in med.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"release": release.name, "machine": platform.node(), "cpus": os.cpu_count(),
                               "runs": runs, "median": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
