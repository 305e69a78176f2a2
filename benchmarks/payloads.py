"""Remote-write payload generation, samples per second on one core: the naive
path (build a WriteRequest per request with the protobuf API, serialise,
snappy) side by side with loadgen's patch-in-place path (encode once, patch
timestamps and values with numpy, snappy with cramjam), in one run.

    python benchmarks/payloads.py [--series 2000] [--samples 1] [--seconds 2] [--repeats 5]

Prints both rates (medians of --repeats), their ratio, and writes JSON to
results/bench-payloads.json. Single-threaded: the rate is per core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.clients.metrics import encode_write_request  # noqa: E402
from loadgen.payloads import MetricsPayload  # noqa: E402


def rate(fn, samples_per_call: int, seconds: float) -> float:
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return calls * samples_per_call / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=1, help="samples per series per request")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="results/bench-payloads.json")
    a = ap.parse_args()
    labels = [{"__name__": "stackproof_load", "job": "bench", "instance": f"host-{i % 50}", "series": str(i)}
              for i in range(a.series)]
    n = a.series * a.samples
    t = [int(time.time() * 1000)]
    vals = np.random.default_rng(1).random(n)

    def naive():
        t[0] += 1
        return encode_write_request([(lb, [(t[0] + j, float(vals[i * a.samples + j])) for j in range(a.samples)])
                                     for i, lb in enumerate(labels)])

    payload = MetricsPayload(labels, a.samples, t0_ms=t[0])

    def fast():
        t[0] += 1
        return payload.next(t[0], vals)

    assert len(fast()) > 0 and len(naive()) > 0
    naive_r, fast_r = [], []
    for _ in range(a.repeats):
        naive_r.append(rate(naive, n, a.seconds))
        fast_r.append(rate(fast, n, a.seconds))
    nm, fm = statistics.median(naive_r), statistics.median(fast_r)
    print(f"{a.series} series x {a.samples} samples per request, {a.repeats} x {a.seconds:g}s each, one core:")
    print(f"  naive (rebuild WriteRequest per request): {nm:>12,.0f} samples/s")
    print(f"  loadgen (patch in place + cramjam snappy): {fm:>12,.0f} samples/s")
    print(f"  ratio: {fm / nm:.1f}x")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"series": a.series, "samples_per_series": a.samples, "naive_samples_per_s": nm,
                               "fast_samples_per_s": fm, "ratio": fm / nm, "naive_runs": naive_r, "fast_runs": fast_r,
                               "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
