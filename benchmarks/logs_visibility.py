"""Write-to-visible latency of the logs store, by its flush interval.

    python benchmarks/logs_visibility.py [--pushes 20] [--intervals 5s 1s] [--release NAME]

For each ``-inmemoryDataFlushInterval`` (upstream's default 5 s, and the 1 s
the local platform runs with): start the release's VictoriaLogs on a free
loopback port with the platform's other flags, then push one line at a time
(Loki JSON) and poll its LogsQL query every 20 ms until the line is there.
Prints every interval's median, p90 and max in ms, and writes JSON to
results/bench-logs-visibility.json. The store alone, without the gateway: the
flag is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.binaries import BinaryResolver  # noqa: E402
from harness.components import LOGS_STORE, PlatformContext, by_role  # noqa: E402
from harness.ports import free_ports  # noqa: E402
from harness.releases import Catalog  # noqa: E402
from harness.tls import TLSFiles  # noqa: E402


def measure(binary: Path, flush: str, pushes: int, root: Path) -> list[float]:
    store = by_role(LOGS_STORE)
    port, = free_ports(1)
    ctx = PlatformContext(name="bench", root=root, ports={store.name: port}, tenants=[],
                          tls=TLSFiles(Path(), Path(), Path()))
    flags = [f for f in store.flags(ctx, str(root / flush)) if not f.startswith("-inmemoryDataFlushInterval=")]
    proc = subprocess.Popen([str(binary), *flags, f"-inmemoryDataFlushInterval={flush}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, hdr = f"http://127.0.0.1:{port}", {"AccountID": "1"}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        out = []
        for i in range(pushes):
            ts, job = time.time_ns(), f"vis-{flush}-{i}"
            body = {"streams": [{"stream": {"job": job}, "values": [[str(ts), f"line {i}"]]}]}
            r = requests.post(f"{base}/insert/loki/api/v1/push", json=body, headers=hdr, timeout=10)
            r.raise_for_status()
            t0 = time.monotonic()
            while not requests.get(f"{base}/select/logsql/query", headers=hdr, timeout=10,
                                   params={"query": f'_stream:{{job="{job}"}}'}).text.strip():
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"line {i} not visible after 30 s with flush {flush}")
                time.sleep(0.02)
            out.append((time.monotonic() - t0) * 1000)
            time.sleep(0.3 * (i % 4))  # pushes at different points of the flush cycle
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pushes", type=int, default=20)
    ap.add_argument("--intervals", nargs="+", default=["5s", "1s"])
    ap.add_argument("--release")
    ap.add_argument("--out", default="results/bench-logs-visibility.json")
    args = ap.parse_args()
    release = Catalog.load().get(args.release)
    store = by_role(LOGS_STORE)
    version = release.version(store.release_key)
    binary = BinaryResolver().resolve(store.spec, version).path
    results = {}
    with tempfile.TemporaryDirectory(prefix="sp-bench-vis-") as tmp:
        for flush in args.intervals:
            ms = measure(binary, flush, args.pushes, Path(tmp))
            q = statistics.quantiles(ms, n=10)
            results[flush] = {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(q[-1], 1),
                              "max_ms": round(max(ms), 1), "runs_ms": [round(x, 1) for x in ms]}
            print(f"{store.name} {version}, -inmemoryDataFlushInterval={flush}: write-to-visible median "
                  f"{results[flush]['median_ms']:.0f} ms, p90 {results[flush]['p90_ms']:.0f} ms, max "
                  f"{results[flush]['max_ms']:.0f} ms over {len(ms)} pushes", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"release": release.name, "store": f"{store.name} {version}",
                               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                               "intervals": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
