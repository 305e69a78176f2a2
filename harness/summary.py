"""The session summary: how many exact checks ran and how long written data
took to become visible, per signal. Tests record into their report's
``user_properties`` under these keys; the reports plugin aggregates them."""

from __future__ import annotations

import math
import statistics

PROP_CHECK = "stackproof_check"
PROP_VISIBILITY = "stackproof_visibility"
PROP_UPGRADE = "stackproof_upgrade"  # an upgrade run's report, written by the reports plugin


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s), max(1, math.ceil(p / 100 * len(s)))) - 1]


def summarize(checks: int, latencies: dict[str, list[float]]) -> dict:
    out: dict = {"checks": checks, "visibility_seconds": {}}
    for signal, vals in sorted(latencies.items()):
        if vals:
            out["visibility_seconds"][signal] = {
                "n": len(vals), "p50": round(statistics.median(vals), 4), "p95": round(percentile(vals, 95), 4),
                "max": round(max(vals), 4)}
    return out
