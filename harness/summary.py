"""The session summary: how many exact checks ran and how long written data
took to become visible, per signal. Tests record into their report's
``user_properties`` under these keys; the reports plugin aggregates them."""

from __future__ import annotations

import math
import statistics

PROP_CHECK = "stackproof_check"
PROP_VISIBILITY = "stackproof_visibility"
PROP_UPGRADE = "stackproof_upgrade"  # an upgrade run's report, written by the reports plugin
# a latency that is not write-to-visible: {"what": "metrics alert: condition true -> firing", "seconds": ...}
PROP_LATENCY = "stackproof_latency"
# one alert's notifications: {"signal", "tenant", "expected", "received", "duplicates", "missing"}
PROP_NOTIFICATIONS = "stackproof_notifications"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s), max(1, math.ceil(p / 100 * len(s)))) - 1]


def _figures(vals: list[float]) -> dict:
    return {"n": len(vals), "p50": round(statistics.median(vals), 4), "p95": round(percentile(vals, 95), 4),
            "max": round(max(vals), 4)}


def summarize(checks: int, latencies: dict[str, list[float]], other: dict[str, list[float]] | None = None,
              notifications: list[dict] | None = None) -> dict:
    out: dict = {"checks": checks, "visibility_seconds": {}}
    for signal, vals in sorted(latencies.items()):
        if vals:
            out["visibility_seconds"][signal] = _figures(vals)
    if other:
        out["latency_seconds"] = {what: _figures(vals) for what, vals in sorted(other.items()) if vals}
    if notifications:
        table: dict[str, dict[str, int]] = {}
        for n in notifications:
            row = table.setdefault(n["signal"], {"alerts": 0, "expected": 0, "received": 0, "duplicates": 0,
                                                 "missing": 0})
            row["alerts"] += 1
            for k in ("expected", "received", "duplicates", "missing"):
                row[k] += n[k]
        out["notifications"] = table
    return out
