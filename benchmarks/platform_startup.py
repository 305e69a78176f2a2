"""Start-up wall time and idle memory of the local platform (warm binary cache).

    python benchmarks/platform_startup.py [--runs 5] [--release NAME] [--settle 20]

Each run: deploy (start every component and wait until ready), let it idle
for --settle seconds, read each component's resident memory, destroy. Prints
every run and the medians, and writes JSON to results/bench-platform-startup.json.
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

from harness.providers import LocalProvider  # noqa: E402
from harness.releases import Catalog  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--release")
    ap.add_argument("--settle", type=float, default=20.0, help="idle seconds before reading memory")
    ap.add_argument("--out", default="results/bench-platform-startup.json")
    args = ap.parse_args()
    release = Catalog.load().get(args.release)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        for i in range(args.runs):
            p = LocalProvider(f"bench{i}", root=Path(tmp) / f"bench{i}", progress=lambda m: None)
            t0 = time.monotonic()
            p.deploy(release)
            up = time.monotonic() - t0
            ready = {n: c.get("ready_seconds") for n, c in p.state["components"].items()}
            time.sleep(args.settle)
            st = p.status()
            rss = {n: c["rss_bytes"] / 2**20 for n, c in st["components"].items()}
            p.destroy()
            runs.append({"up_s": round(up, 2), "ready_s": ready, "rss_mib": {k: round(v, 1) for k, v in rss.items()},
                         "rss_total_mib": round(sum(rss.values()), 1)})
            print(f"run {i + 1}: up {up:.2f}s  ready " + " ".join(f"{k} {v:.2f}s" for k, v in ready.items())
                  + f"  idle rss {sum(rss.values()):.0f} MiB (" + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
                  + ")", flush=True)
    med_up = statistics.median(r["up_s"] for r in runs)
    med_rss = statistics.median(r["rss_total_mib"] for r in runs)
    print(f"median over {len(runs)} runs: up {med_up:.2f}s, idle rss {med_rss:.0f} MiB "
          f"(release {release.name}, {os.cpu_count()} CPUs)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"release": release.name, "machine": {"cpus": os.cpu_count(),
                                                                     "platform": platform.platform()},
                               "median_up_s": med_up, "median_idle_rss_mib": med_rss, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
