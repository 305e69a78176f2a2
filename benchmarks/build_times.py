"""Build times and binary sizes of a release's components.

For each component: a *cold* build (empty Go build cache, Go modules already
downloaded), a *warm* build (the same Go build cache, an empty stackproof
binary cache: what a second release with shared dependencies, or a changed
recipe, costs), and a *cache hit* (what every later run pays).

    python benchmarks/build_times.py [--release NAME] [--components cortex victorialogs prometheus]

Prints a table and writes JSON to results/bench-build-times.json. Takes
about half an hour on 2 cores: it compiles everything from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.binaries import BinaryResolver  # noqa: E402
from harness.components import release_builds  # noqa: E402
from harness.releases import Catalog  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", help="release (default: the newest)")
    ap.add_argument("--components", nargs="*", default=None)
    ap.add_argument("--out", default="results/bench-build-times.json")
    args = ap.parse_args()
    release = Catalog.load().get(args.release)
    rows = []
    for c, version in release_builds(release):
        if args.components and c.name not in args.components:
            continue
        with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
            os.environ["GOCACHE"] = str(Path(tmp) / "gocache")
            times = {}
            for phase in ("cold", "warm"):
                resolver = BinaryResolver(Path(tmp) / f"cache-{phase}", progress=lambda m: None)
                t0 = time.monotonic()
                path = resolver.resolve(c.spec, version).path
                times[phase] = time.monotonic() - t0
            t0 = time.monotonic()
            resolver.resolve(c.spec, version)
            times["hit"] = time.monotonic() - t0
            size = path.stat().st_size
        row = {"component": c.name, "version": version, "cold_s": round(times["cold"], 1),
               "warm_s": round(times["warm"], 1), "hit_ms": round(times["hit"] * 1000, 2),
               "size_mb": round(size / 1e6, 1)}
        rows.append(row)
        print(f"{c.name:<11} {version:<9} cold {row['cold_s']:>6.1f}s  warm {row['warm_s']:>6.1f}s  "
              f"cache hit {row['hit_ms']:>6.2f}ms  size {row['size_mb']:>6.1f} MB", flush=True)
    os.environ.pop("GOCACHE", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"release": release.name, "machine": {"cpus": os.cpu_count(),
                                                                     "platform": platform.platform()},
                               "rows": rows}, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
