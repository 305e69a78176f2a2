"""How long stackproof takes to give up on something it cannot use: the figures the
tests no longer assert (tests/test_kube_deployer.py, tests/test_images.py check the
one-line messages; a wall time asserted on a shared 2-core machine is not a check).

    python benchmarks/failure_bounds.py [--runs 5]            # the Kubernetes deployer's bounds
    sudo python benchmarks/failure_bounds.py --containerd     # and a stray image pull in containerd

Each case runs --runs times; every run and the median are printed, JSON goes to
results/bench-failure-bounds.json:

- refused: every deployer call against an API port where nothing listens (api_timeout 2 s);
- unresolvable: a deploy against an API host name that no resolver knows (api_timeout 2 s);
- silent: a deploy against a server that accepts the connection and never answers (api_timeout 1 s);
- containerd pull: ``ctr images pull`` of a public image through the cluster's dead proxy
  (127.0.0.1:9), in a containerd of the harness's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.errors import StackproofError  # noqa: E402
from harness.ports import free_ports  # noqa: E402
from harness.providers.kube import KubeDeployer  # noqa: E402
from harness.releases import Catalog  # noqa: E402

S3 = {"type": "s3", "bucket": "sp-bench-bucket", "region": "eu-west-1"}


def kubeconfig(server: str) -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}


def timed(call) -> tuple[float, str]:
    """Seconds until ``call`` raised StackproofError, and its message."""
    t0 = time.monotonic()
    try:
        call()
    except StackproofError as exc:
        return time.monotonic() - t0, str(exc)
    raise SystemExit("the call did not fail: this benchmark measures failures")


def refused(release) -> tuple[float, str]:
    port = free_ports(1)[0]
    d = KubeDeployer(kubeconfig(f"https://127.0.0.1:{port}"), storage=S3, api_timeout=2)
    total, msg = 0.0, ""
    for call in (lambda: d.deploy(release), lambda: d.upgrade(release), lambda: d.delete(),
                 lambda: d.collect_artifacts(Path("/nonexistent"))):
        s, msg = timed(call)
        total += s
    return total, msg


def unresolvable(release) -> tuple[float, str]:
    """Under the tests' network guard (tests/netguard/), as the test meets it: the name is refused here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stackproof_netguard", Path(__file__).resolve().parent.parent
                                                  / "tests" / "netguard" / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    d = KubeDeployer(kubeconfig("https://stackproof-bench-cluster.invalid/"), storage=S3, api_timeout=2)
    return timed(lambda: d.deploy(release))


def silent(release) -> tuple[float, str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        d = KubeDeployer(kubeconfig(f"https://127.0.0.1:{srv.getsockname()[1]}"), storage=S3, api_timeout=1)
        return timed(lambda: d.deploy(release, timeout=600))
    finally:
        srv.close()


def containerd_pull(runs: int) -> list[float]:
    from harness import images
    from harness.cluster.containerd import Containerd

    import fcntl

    out = []
    # the lock the tests' containerd and clusters hold (tests/conftest.py one_cluster_at_a_time)
    with open(Path(tempfile.gettempdir()) / "stackproof-one-cluster.lock", "w") as lock, \
            tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ctd = Containerd(Path(tmp) / "ctd", sandbox_image=images.pause_image().ref)
        ctd.start()
        try:
            for _ in range(runs):
                t0 = time.monotonic()
                r = ctd.ctr("images", "pull", "docker.io/library/busybox:latest", check=False, timeout=120)
                out.append(time.monotonic() - t0)
                if r.returncode == 0 or "127.0.0.1:9" not in r.stderr:
                    raise SystemExit(f"the pull did not fail at the dead proxy: exit {r.returncode}, {r.stderr[-300:]}")
        finally:
            ctd.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--containerd", action="store_true", help="also a stray pull in containerd (root)")
    args = ap.parse_args()
    release = Catalog.load().get()
    figures: dict[str, list[float]] = {}
    for name, case in (("refused (4 calls)", refused), ("unresolvable", unresolvable), ("silent", silent)):
        runs = []
        for i in range(args.runs):
            seconds, msg = case(release)
            runs.append(seconds)
            print(f"{name} run {i + 1}: {seconds:.2f} s  ({msg})")
        figures[name] = runs
    if args.containerd:
        if os.geteuid() != 0:
            raise SystemExit("--containerd needs root (containerd's namespaces and mounts)")
        figures["containerd stray pull"] = containerd_pull(args.runs)
        for i, s in enumerate(figures["containerd stray pull"], 1):
            print(f"containerd stray pull run {i}: {s:.2f} s")
    medians = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "loadavg": os.getloadavg()}
    print("medians (s):", medians, "on", machine)
    out = Path("results") / "bench-failure-bounds.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": figures, "medians": medians, "machine": machine,
                               "generated": time.time()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
