"""The session summary: how many exact checks ran and how long written data
took to become visible, per signal. Tests record into their report's
``user_properties`` under these keys; the reports plugin aggregates them."""

from __future__ import annotations

import statistics

PROP_CHECK = "stackproof_check"
PROP_VISIBILITY = "stackproof_visibility"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summarize(checks: int, latencies: dict[str, list[float]]) -> dict:
    out: dict = {"checks": checks, "visibility_seconds": {}}
    for signal, vals in sorted(latencies.items()):
        if vals:
            out["visibility_seconds"][signal] = {
                "n": len(vals), "p50": round(statistics.median(vals), 4), "p95": round(percentile(vals, 95), 4),
                "max": round(max(vals), 4)}
    return out
